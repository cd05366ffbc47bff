"""Outages of the services a stage depends on, under load (issue 18's chaos suite): the model
server (TF Serving's protocol, ``prodcat serve grpc``) stopped mid-stream, and the Milvus server
stopped (SIGSTOP) mid-stream. The stage waits the outage out with back-off: nothing is
dead-lettered because of it, every input is answered once it ends, the worker never exits.

The outage lasts ``PRODCAT_CHAOS_OUTAGE_S`` seconds (20 in ``make test``; ``make chaos`` sets 60).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from prodcat import localmilvus
from prodcat.core.settings import ServingSettings, Settings
from prodcat.serving.vector_store import VectorStore
from prodcat.streams.readback import read_topics
from prodcat.streams.worker_process import scrape_metric
from tests.conftest import TrainedClassifier, free_port
from tests.streams.kafka_io import produce, product_records, publish_thumbnails

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

OUTAGE_S = float(os.environ.get("PRODCAT_CHAOS_OUTAGE_S", "20"))


def _metric(settings: Settings, name: str, stage: str) -> float:
    worker = settings.worker
    return scrape_metric(worker.metrics_host, worker.metrics_port, name, stage=stage)


def _wait(check, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_classify_waits_out_a_model_server_outage_under_load(
    pipeline_settings: Settings, run_worker, data_dir: Path, trained_classifier: TrainedClassifier
) -> None:
    from prodcat.serving.grpc_server import serve

    port = free_port()
    serving = ServingSettings(backend="tfserving", target=f"127.0.0.1:{port}",
                              model_base=trained_classifier.model_base, deadline_s=2, retries=1,
                              batch_size=64)  # fmt: skip
    settings = pipeline_settings.model_copy(
        update={
            "serving": serving,
            "worker": pipeline_settings.worker.model_copy(update={"batch_size": 64}),
        }
    )
    products = product_records(data_dir, 0, 4000)
    server, servicer, _ = serve(trained_classifier.model_base, port=port)
    try:
        run_worker(settings, ["classify"], stage="classify")
        produce(settings, settings.topics.normalized, products, {"feed": b"t"})
        _wait(lambda: _metric(settings, "prodcat_events_out_total", "classify") >= 500,
              60, "the first predictions")  # fmt: skip
    finally:
        server.stop(grace=None)  # the model server goes away mid-stream
        servicer.close()
    stopped_at = _metric(settings, "prodcat_events_out_total", "classify")
    time.sleep(OUTAGE_S)
    during = _metric(settings, "prodcat_events_out_total", "classify") - stopped_at
    server, servicer, _ = serve(trained_classifier.model_base, port=port)
    back = time.monotonic()
    try:
        _wait(lambda: _metric(settings, "prodcat_events_out_total", "classify") >= len(products),
              180, "every prediction")  # fmt: skip
        recovered_s = time.monotonic() - back
    finally:
        server.stop(grace=None)
        servicer.close()
    outputs = read_topics(settings.kafka, [settings.topics.predictions, settings.topics.deadletter],
                          expected=len(products), timeout_s=60)  # fmt: skip
    assert all(r.topic == settings.topics.predictions for r in outputs), "an outage dead-lettered"
    assert {r.key for r in outputs} == {k for k, _ in products}
    assert during <= 64 * 4, f"{during:.0f} predictions made while the model server was down"
    assert _metric(settings, "prodcat_stage_retries_total", "classify") > 0
    print(f"\nmodel server down {OUTAGE_S:.0f} s under load: {len(products)} inputs, "
          f"{len(outputs)} predictions, 0 dead letters, all answered {recovered_s:.0f} s after "
          "it came back")  # fmt: skip


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_embed_waits_out_a_milvus_server_outage_under_load(
    embed_on_milvus_server: Settings,
    milvus_server: localmilvus.LocalMilvus,
    run_worker,
    data_dir: Path,
) -> None:
    settings, server = embed_on_milvus_server, milvus_server
    run_worker(settings, ["embed"], stage="embed")
    products = publish_thumbnails(settings, data_dir, 1200)
    _wait(lambda: _metric(settings, "prodcat_events_out_total", "embed") >= 100,
          120, "the first vectors")  # fmt: skip
    server.pause()  # Milvus stops answering mid-stream
    paused_at = _metric(settings, "prodcat_events_out_total", "embed")
    time.sleep(OUTAGE_S)
    during = _metric(settings, "prodcat_events_out_total", "embed") - paused_at
    server.resume()
    back = time.monotonic()
    _wait(lambda: _metric(settings, "prodcat_events_out_total", "embed") >= len(products),
          300, "every vector")  # fmt: skip
    recovered_s = time.monotonic() - back
    assert _metric(settings, "prodcat_dead_letters_total", "embed") == 0
    # nothing stored while Milvus was stopped (a write waits up to its 60 s deadline, then
    # the batch is retried with back-off): at most the batch already past Milvus
    assert during <= 16, f"{during:.0f} vectors stored while Milvus was stopped"
    store = VectorStore(settings.milvus)
    try:  # a new client sees the last upserts once the server has made them visible
        _wait(lambda: store.count() >= len(products), 60, "every vector to be visible")
        assert store.count() == len(products)
    finally:
        store.close()
    print(f"\nMilvus server stopped {OUTAGE_S:.0f} s under load: {len(products)} inputs, "
          f"every vector stored, 0 dead letters, all done {recovered_s:.0f} s after it "
          "came back")  # fmt: skip
