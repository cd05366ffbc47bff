"""Outages of the services a stage depends on, under load (issue 18's chaos suite): the model
server (TF Serving's protocol, ``prodcat serve grpc``) stopped mid-stream, the Milvus server
stopped (SIGSTOP) mid-stream, and the schema registry stopped mid-stream. The stage waits the
outage out with back-off: nothing is dead-lettered because of it, every input is answered once it
ends, the worker never exits.

The outage lasts ``PRODCAT_CHAOS_OUTAGE_S`` seconds (10 in ``make test``; ``make chaos`` sets 60).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from prodcat import localmilvus
from prodcat.core.settings import SerdeSettings, ServingSettings, Settings
from prodcat.serving.vector_store import VectorStore
from prodcat.streams.normalize_agent import SOURCE_HEADER
from prodcat.streams.readback import read_topics
from prodcat.streams.replay import dataset_events, replay
from prodcat.streams.worker_process import scrape_metric
from tests.conftest import TrainedClassifier, free_port
from tests.fake_registry import FakeSchemaRegistry, serve_registry
from tests.streams.kafka_io import another_worker, produce, product_records, publish_thumbnails

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

OUTAGE_S = float(os.environ.get("PRODCAT_CHAOS_OUTAGE_S", "10"))


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
    # Milvus stops answering mid-stream: frozen (SIGSTOP) for a short outage; for a long one it is
    # stopped and started again on its address, because a standalone server frozen for a minute
    # panics when it wakes (its own etcd session has lapsed), which is not prodcat's to survive.
    frozen = OUTAGE_S <= 30
    if frozen:
        server.pause()
    else:
        server.stop(keep_lock=True)  # it restarts below: no other may take etcd's port
    paused_at = _metric(settings, "prodcat_events_out_total", "embed")
    time.sleep(OUTAGE_S)
    during = _metric(settings, "prodcat_events_out_total", "embed") - paused_at
    if frozen:
        server.resume()
    else:
        server.restart()
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


def test_normalize_waits_out_a_schema_registry_outage_under_load(
    pipeline_settings: Settings, run_worker, data_dir: Path
) -> None:
    """The schema registry stops mid-stream while events keep arriving, and a second worker starts
    during the outage. The running worker has its schemas cached and goes on; the new one can
    neither read the feed profiles nor encode until the registry is back, so it waits (it never
    skips a profile or dead-letters a product for it). Every input is answered, none is
    dead-lettered, no worker exits."""
    port = free_port()
    settings = pipeline_settings.model_copy(
        update={"serde": SerdeSettings(registry_url=f"http://127.0.0.1:{port}")}
    )
    registry = FakeSchemaRegistry()
    events = list(dataset_events(data_dir, ["flipkart"], limit=3000))
    sender = threading.Thread(
        target=replay,
        args=(settings.kafka, settings.topics.raw, iter(events)),
        kwargs={"rate": 150.0, "progress": False},
    )
    topics = [settings.topics.normalized, settings.topics.deadletter]

    def answered() -> set[bytes]:
        records = read_topics(settings.kafka, topics, expected=None, timeout_s=5)
        return {r.headers[SOURCE_HEADER] for r in records}

    with serve_registry(port, registry):
        first = run_worker(settings, ["normalize"])
        sender.start()
        _wait(lambda: _metric(settings, "prodcat_events_out_total", "normalize") >= 300,
              120, "the first products")  # fmt: skip
    stopped, out_at_stop = (
        time.monotonic(),
        _metric(settings, "prodcat_events_out_total", "normalize"),
    )
    other = another_worker(settings)
    joiner = run_worker(other, ["normalize"])  # joins while the registry is down
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
    assert _metric(other, "prodcat_events_out_total", "normalize") == 0  # no schema: it waits
    assert _metric(settings, "prodcat_events_out_total", "normalize") > out_at_stop  # cached: on
    with serve_registry(port, registry):
        back = time.monotonic()
        sender.join(60)
        _wait(lambda: len(answered()) >= len(events), 300, "every input answered")
        recovered_s = time.monotonic() - back
    records = read_topics(settings.kafka, topics, expected=None, timeout_s=5)
    dead = [r for r in records if r.topic == settings.topics.deadletter]
    assert dead == [], [r.headers for r in dead[:3]]
    assert len({r.headers[SOURCE_HEADER] for r in records}) == len(events)
    assert first.poll() is None and joiner.poll() is None
    print(f"\nschema registry stopped {OUTAGE_S:.0f} s under load, a worker joining meanwhile: "
          f"{len(events)} inputs, {len(records) - len(events)} duplicates, 0 dead letters, "
          f"all answered {recovered_s:.0f} s after it came back")  # fmt: skip
