"""Issue 17, item 4: failures of the model stages that are not bad input do not crash-loop a
partition. Under the stage runtime a batch that keeps failing gets ``BUG_RETRIES`` retries
(counted), then the record that breaks it is isolated by bisection and dead-lettered as
``internal_error`` with the exception and its original bytes, and every other record goes on.

* classify: TensorFlow errors other than invalid-argument (an out-of-memory batch, an internal
  kernel error) from a model server failing every batch that holds one product;
* embed: a Milvus refusal (a product id over Milvus's 512 bytes makes it refuse the whole upsert,
  a ``VectorStoreError``, not transient), with the real image fetcher on local files, the embedder
  SavedModel in process and milvus-lite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf
from prometheus_client import CollectorRegistry

from prodcat.core.metrics import WorkerMetrics
from prodcat.core.settings import ImageSettings, MilvusSettings, ServingSettings, Settings
from prodcat.schemas.serde import serde_for
from prodcat.serving.backends import ModelOutput
from prodcat.streams import runtime as runtime_module
from prodcat.streams.classify_agent import ClassifyAgent, ClassifyStage
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.embed_agent import EmbedAgent, build_stage
from prodcat.streams.normalize import normalize_event
from prodcat.streams.replay import dataset_events
from prodcat.streams.runtime import StageHandler
from prodcat.streams.stage import Outputs
from tests.serving.test_classify import _Cards, _output, _record


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "RETRY_INITIAL_S", 0.01)
    monkeypatch.setattr(runtime_module, "RETRY_MAX_S", 0.05)


async def _process(
    settings: Settings, handler: StageHandler, records: list[Any]
) -> tuple[Outputs, CollectorRegistry]:
    """One batch through the runtime's ``process`` (retries, bisection), as a worker would; the
    outputs and the metrics' registry."""
    registry = CollectorRegistry()
    runtime = runtime_module.StageRuntime(
        settings, handler, WorkerMetrics(registry).stage(handler.name)
    )
    await handler.start()
    try:
        outputs = await runtime.process(records)
    finally:
        await handler.stop()
        await runtime.consumer.stop()
        await runtime.producer.stop()
    return outputs, registry


def _isolated(
    result: tuple[Outputs, CollectorRegistry],
    records: list[Any],
    offset: int,
    kind: str,
    stage: str,
) -> None:
    """Every record but the one at ``offset`` went on; that one is an internal error naming
    ``kind``, after the bounded retries."""
    outputs, registry = result
    assert len(outputs.oks) == len(records) - 1 and len(outputs.dead) == 1
    (dead,) = outputs.dead
    assert dead.error_kind == "internal_error" and dead.source is not None
    assert dead.source.offset == offset
    letter = serde_for("DeadLetter").decode(dead.value or b"")
    assert kind in letter["message"] and letter["original_value"] == records[offset].value
    retries = registry.get_sample_value(
        "prodcat_stage_retries_total", {"stage": stage, "error": kind}
    )
    assert retries == runtime_module.BUG_RETRIES


class _Failing:
    """A model server that fails every batch holding the title ``BOOM`` with ``error``."""

    name = "clf"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def predict(self, inputs: dict[str, Any]) -> ModelOutput:
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
    stage = ClassifyStage(
        topic="products.predictions",
        products=products,
        predictions=serde_for("Prediction"),
        dead_letters=DeadLetters.for_stage(pipeline_settings, "classify"),
        backend=_Failing(error),  # type: ignore[arg-type]
        cards=_Cards(),
        serving=ServingSettings(batch_size=8),
    )
    agent = ClassifyAgent(stage, pipeline_settings.topics.normalized)
    result = await _process(pipeline_settings, agent, records)
    _isolated(result, records, 2, type(error).__name__, "classify")


@pytest.mark.integration
async def test_a_vector_store_refusal_is_isolated_not_a_crash_loop(
    pipeline_settings: Settings, data_dir: Path, tmp_path: Path, embedder_model_base: Path
) -> None:
    settings = pipeline_settings.model_copy(
        update={
            "serving": ServingSettings(model_base=embedder_model_base),
            "images": ImageSettings(file_roots=((data_dir / "myntra" / "images").resolve(),)),
            "milvus": MilvusSettings(uri=str(tmp_path / "milvus" / "vectors.db")),
        }
    )
    products = [
        normalize_event(e.value, feed="thumbnails", key=e.key, seen_at_ms=0)
        for e in dataset_events(data_dir, ["thumbnails"], limit=6)
    ]
    products[3]["product_id"] = "x" * 600  # Milvus keeps ids of at most 512 bytes
    serde = serde_for("Product")
    records = [_record(i, serde.encode(p)) for i, p in enumerate(products)]
    stage = build_stage(settings)
    agent = EmbedAgent(stage, settings.topics.normalized)
    result = await _process(settings, agent, records)
    _isolated(result, records, 3, "VectorStoreError", "embed")
    # the store was closed with the agent: count what it kept with a new one
    from prodcat.serving.product_vectors import ProductVectors

    vectors = ProductVectors(settings.milvus)
    try:
        assert vectors.count() == {"images": 5, "texts": 5}
    finally:
        vectors.close()
