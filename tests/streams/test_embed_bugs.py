"""Issue 17, item 4: a non-transient vector-store error does not crash-loop the embed stage.
A product whose id Milvus cannot store (over 512 bytes) makes the store refuse the whole upsert
(a ``VectorStoreError``, not transient); under the stage runtime the batch gets its bounded
retries, the product is isolated by bisection and dead-lettered as ``internal_error``, and every
other product's vector is stored. Real components: the image fetcher on local files, the
embedder SavedModel in process, milvus-lite."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from prodcat.core.metrics import WorkerMetrics
from prodcat.core.settings import ImageSettings, MilvusSettings, ServingSettings, Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams import runtime as runtime_module
from prodcat.streams.embed_agent import EmbedAgent, build_stage
from prodcat.streams.normalize import normalize_event
from prodcat.streams.replay import dataset_events
from tests.serving.test_classify import _record

pytestmark = [pytest.mark.integration]


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "RETRY_INITIAL_S", 0.01)
    monkeypatch.setattr(runtime_module, "RETRY_MAX_S", 0.05)


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
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry).stage("embed")
    agent = EmbedAgent(build_stage(settings), settings.topics.normalized)
    runtime = runtime_module.StageRuntime(settings, agent, metrics)
    await agent.start()
    try:
        outputs = await runtime.process(records)  # type: ignore[arg-type]
        stored = agent.stage.store.count()
    finally:
        await agent.stop()
        await runtime.consumer.stop()
        await runtime.producer.stop()
    assert len(outputs.oks) == 5 and len(outputs.dead) == 1
    (dead,) = outputs.dead
    assert dead.error_kind == "internal_error" and dead.source is not None
    assert dead.source.offset == 3
    letter = serde_for("DeadLetter").decode(dead.value or b"")
    assert "VectorStoreError" in letter["message"] and "product_id" in letter["message"]
    assert stored == 5
    retries = registry.get_sample_value(
        "prodcat_stage_retries_total", {"stage": "embed", "error": "VectorStoreError"}
    )
    assert retries == runtime_module.BUG_RETRIES
