"""Issue 17, item 4: TensorFlow errors other than invalid-argument (an out-of-memory batch, an
internal error) do not crash-loop the classify stage. Under the stage runtime the batch gets its
bounded retries, the product that keeps failing is isolated by bisection and dead-lettered as
``internal_error`` with the exception, and every other product is predicted."""

from __future__ import annotations

from typing import Any

import pytest
import tensorflow as tf
from prometheus_client import CollectorRegistry

from prodcat.core.metrics import WorkerMetrics
from prodcat.core.settings import ServingSettings, Settings
from prodcat.schemas.serde import serde_for
from prodcat.serving.backends import ModelOutput
from prodcat.streams import runtime as runtime_module
from prodcat.streams.classify_agent import ClassifyAgent, ClassifyStage
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.normalize import normalize_event
from tests.serving.test_classify import _Cards, _output, _record


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "RETRY_INITIAL_S", 0.01)
    monkeypatch.setattr(runtime_module, "RETRY_MAX_S", 0.05)


class _Failing:
    """A model server that fails every batch holding the title ``BOOM`` with ``error``."""

    name = "clf"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def predict(self, inputs: dict[str, Any]) -> ModelOutput:
        self.calls += 1
        titles = inputs["title"].tolist()
        if any("BOOM" in t for t in titles):
            raise self.error
        n = len(titles)
        return _output([[0.6, 0.3, 0.1]] * n, [[0.7, 0.1]] * n)

    def close(self) -> None:
        return None


@pytest.mark.parametrize(
    "error",
    [
        tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor"),
        tf.errors.InternalError(None, None, "a kernel failed"),
    ],
    ids=["resource_exhausted", "internal"],
)
async def test_a_tensorflow_error_is_isolated_not_a_crash_loop(
    pipeline_settings: Settings, error: Exception
) -> None:
    products = serde_for("Product")
    titles = [b"Shirt", b"Shoe", b"BOOM", b"Sock", b"Hat", b"Mug"]
    records = [
        _record(i, products.encode(normalize_event(b'{"title": "%s %d"}' % (t, i), feed="shop",
                                                   key=None, seen_at_ms=0)))
        for i, t in enumerate(titles)
    ]  # fmt: skip
    backend = _Failing(error)
    stage = ClassifyStage(
        topic="products.predictions",
        products=products,
        predictions=serde_for("Prediction"),
        dead_letters=DeadLetters.for_stage(pipeline_settings, "classify"),
        backend=backend,  # type: ignore[arg-type]
        cards=_Cards(),
        serving=ServingSettings(batch_size=8),
    )
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry).stage("classify")
    agent = ClassifyAgent(stage, pipeline_settings.topics.normalized)
    runtime = runtime_module.StageRuntime(pipeline_settings, agent, metrics)
    try:
        outputs = await runtime.process(records)  # type: ignore[arg-type]
    finally:
        await runtime.consumer.stop()
        await runtime.producer.stop()
    assert len(outputs.oks) == 5 and len(outputs.dead) == 1
    (dead,) = outputs.dead
    assert dead.error_kind == "internal_error" and dead.source is not None
    assert dead.source.offset == 2
    letter = serde_for("DeadLetter").decode(dead.value or b"")
    kind = type(error).__name__
    assert kind in letter["message"] and letter["original_value"] == records[2].value
    retries = registry.get_sample_value(
        "prodcat_stage_retries_total", {"stage": "classify", "error": kind}
    )
    assert retries == runtime_module.BUG_RETRIES  # bounded, then bisection
    assert backend.calls < 6 + 2 * runtime_module.BUG_RETRIES + 8  # not a loop
