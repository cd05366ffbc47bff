"""Stage-level faults on the real broker (issue 17, short forms): the classify stage's workers are
SIGKILLed mid-stream three times, then a second worker joins and leaves (two rebalances) while
the first keeps going. Every input offset ends as a prediction or a dead letter (by the source
header), duplicates stay within the batches in flight at each fault, and the surviving worker
never exits. The same for the embed stage on a real Milvus server (its output is the vector), the
sampler (no product requested twice) and the drift stage (every bad prediction dead-lettered)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from prodcat.core.kafka_config import librdkafka_config, watermarks
from prodcat.core.settings import Settings
from prodcat.schemas.serde import serde_for
from prodcat.serving.vector_store import VectorStore
from prodcat.streams.readback import read_topics
from prodcat.streams.stage import SOURCE_HEADER
from prodcat.streams.worker_process import scrape_metric, stop_worker
from tests.conftest import TrainedClassifier
from tests.streams.kafka_io import (
    another_worker,
    committed_offsets,
    produce,
    product_records,
    publish_thumbnails,
    with_model_copy,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCH = 40


def _covered(settings: Settings) -> tuple[set[bytes], int]:
    outputs = read_topics(
        settings.kafka,
        [settings.topics.predictions, settings.topics.deadletter],
        expected=None,
        timeout_s=20,
    )
    return {r.headers[SOURCE_HEADER] for r in outputs}, len(outputs)


def test_classify_survives_kills_and_workers_joining_and_leaving(
    pipeline_settings: Settings,
    run_worker,
    data_dir: Path,
    tmp_path: Path,
    trained_classifier: TrainedClassifier,
) -> None:
    settings = with_model_copy(
        pipeline_settings, tmp_path, trained_classifier.model_base, batch_size=BATCH
    )
    settings = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"batch_size": BATCH})}
    )
    products = product_records(data_dir, 0, 3000)
    produce(settings, settings.topics.normalized, products, {"feed": b"t"})
    raw = read_topics(settings.kafka, [settings.topics.normalized], expected=len(products))
    inputs = {f"{r.topic}/{r.partition}/{r.offset}".encode() for r in raw}
    assert len(inputs) == len(products)
    host, port = settings.worker.metrics_host, settings.worker.metrics_port

    kills = 0
    for _ in range(3):  # SIGKILL mid-stream: no chance to commit or clean up
        proc = run_worker(settings, ["classify"], stage="classify")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if scrape_metric(host, port, "prodcat_events_in_total", stage="classify") >= 2 * BATCH:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        kills += 1
    covered, _ = _covered(settings)
    assert 0 < len(covered) < len(inputs), "the kills must land mid-stream"

    survivor = run_worker(settings, ["classify"], stage="classify")
    other = another_worker(settings)
    joiner = run_worker(other, ["classify"], stage="classify")  # a rebalance: it joins...
    time.sleep(3)
    stop_worker(joiner)  # ...and leaves: another rebalance

    deadline = time.monotonic() + 180
    count = 0
    while time.monotonic() < deadline:
        covered, count = _covered(settings)
        if covered >= inputs:
            break
        time.sleep(2)
    assert covered == inputs, f"{len(inputs - covered)} inputs unaccounted for"
    duplicates = count - len(covered)
    # At least once: at most the uncommitted batches of each fault are answered again (a worker
    # holds a few batches between commits).
    assert duplicates <= (kills + 2) * 8 * BATCH, duplicates
    assert survivor.poll() is None and joiner.returncode == 0
    print(f"{kills} kills, a join and a leave: {duplicates} duplicates of {len(inputs)} inputs")


def test_a_classify_worker_stopped_past_its_session_timeout_leaves_no_stale_prediction(
    pipeline_settings: Settings,
    run_worker,
    data_dir: Path,
    tmp_path: Path,
    trained_classifier: TrainedClassifier,
) -> None:
    """SIGSTOP for the classify stage (issue 17): worker A is stopped mid-stream, B takes its
    partitions after the session timeout and answers every input, then A wakes with its batch.
    Every product comes twice, the second version with another content hash, so a stale
    prediction A sent after B's would be the latest on the compacted predictions topic: none is
    (A cannot prove it still owns its partitions and drops its batch), and neither worker exits."""
    settings = with_model_copy(
        pipeline_settings, tmp_path, trained_classifier.model_base, batch_size=BATCH
    )
    settings = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"batch_size": BATCH})}
    )
    serde = serde_for("Product")
    first = product_records(data_dir, 0, 600)
    revised = []
    for key, value in first:
        product = serde.decode(value or b"")
        product["content_hash"] = "revised"
        revised.append((key, serde.encode(product)))
    produce(settings, settings.topics.normalized, first + revised, {"feed": b"t"})
    raw = read_topics(settings.kafka, [settings.topics.normalized], expected=2 * len(first))
    inputs = {f"{r.topic}/{r.partition}/{r.offset}".encode() for r in raw}
    host, port = settings.worker.metrics_host, settings.worker.metrics_port

    worker_a = run_worker(settings, ["classify"], stage="classify")
    deadline = time.monotonic() + 60
    while scrape_metric(host, port, "prodcat_events_in_total", stage="classify") < 4 * BATCH:
        assert time.monotonic() < deadline, "worker A did not consume"
        time.sleep(0.02)
    worker_a.send_signal(signal.SIGSTOP)
    worker_b = run_worker(another_worker(settings), ["classify"], stage="classify")
    deadline = time.monotonic() + 180
    while (covered := _covered(settings)[0]) < inputs:
        assert time.monotonic() < deadline, f"{len(inputs - covered)} inputs unanswered"
        time.sleep(2)
    worker_a.send_signal(signal.SIGCONT)  # the zombie wakes with its batch
    deadline = time.monotonic() + 60
    while scrape_metric(host, port, "prodcat_worker_ready", stage="classify") < 1:
        assert time.monotonic() < deadline, "worker A did not run again"
        time.sleep(0.2)
    time.sleep(3)  # what A had in flight has been sent or dropped by now
    assert worker_a.poll() is None and worker_b.poll() is None, "a worker exited"
    predictions = serde_for("Prediction")
    latest: dict[bytes | None, tuple[int, int, str | None]] = {}
    for record in read_topics(settings.kafka, [settings.topics.predictions], expected=None):
        if record.key not in latest or record.offset > latest[record.key][1]:
            hashed = predictions.decode(record.value or b"")["content_hash"]
            latest[record.key] = (record.partition, record.offset, hashed)
    stale = [key for key, (_, _, hashed) in latest.items() if hashed != "revised"]
    dropped = scrape_metric(host, port, "prodcat_events_skipped_total", reason="revoked")
    print(f"\nclassify: {len(inputs)} inputs, worker A stopped past its session timeout and "
          f"replaced: {len(stale)} stale of {len(latest)} latest predictions; A dropped "
          f"{dropped:.0f} revoked outputs")  # fmt: skip
    assert len(latest) == len(first)
    assert len(stale) <= BATCH, f"{len(stale)} stale latest predictions"  # a stop mid-send at most


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_embed_workers_share_a_milvus_server_through_kills_and_a_join(
    embed_on_milvus_server: Settings, run_worker, data_dir: Path
) -> None:
    """Embed workers on a real Milvus server (several processes may share it): SIGKILLed
    mid-stream twice, then a second worker joins and leaves; every product's vector is in Milvus
    once (upserts by product id), and the survivor never exits."""
    settings = embed_on_milvus_server
    products = publish_thumbnails(settings, data_dir, 600)
    host, port = settings.worker.metrics_host, settings.worker.metrics_port
    for _ in range(2):
        proc = run_worker(settings, ["embed"], stage="embed")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if scrape_metric(host, port, "prodcat_events_in_total", stage="embed") >= 32:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    store = VectorStore(settings.milvus)
    killed_at = store.count()
    assert 0 < killed_at < len(products), "the kills must land mid-stream"

    survivor = run_worker(settings, ["embed"], stage="embed")
    other = another_worker(settings)
    joiner = run_worker(other, ["embed"], stage="embed")
    time.sleep(3)
    stop_worker(joiner)
    deadline = time.monotonic() + 240
    while store.count() < len(products):
        assert time.monotonic() < deadline, f"{store.count()} of {len(products)} vectors"
        time.sleep(2)
    assert store.count() == len(products)
    for p in products[:3]:
        assert store.search_by_id(p["product_id"], 1)[0].product_id == p["product_id"]
    assert survivor.poll() is None and joiner.returncode == 0
    store.close()


def test_a_killed_sampler_never_requests_a_product_twice(
    pipeline_settings: Settings, run_worker
) -> None:
    """The sampler SIGKILLed after its first windows: the restarted one rebuilds what is pending
    from ``annotation.requests`` and asks about none of those products again, even when a new
    model version predicts them all again."""
    from prodcat.core.settings import SamplerSettings
    from tests.training.test_sampler import prediction

    sampler = SamplerSettings(strategy="margin", random_share=0.0, batch_size=10, window_s=1.0,
                              max_per_minute=600, pending_ttl_s=3600, diversity_radius=0.0)  # fmt: skip
    settings = pipeline_settings.model_copy(update={"sampler": sampler})
    serde = serde_for("Prediction")
    ids = [f"S{i:03d}" for i in range(60)]

    def wave(version: int) -> list[tuple[bytes, bytes]]:
        now = time.time_ns() // 1_000_000
        return [(pid.encode(), serde.encode(prediction(pid, [0.5 + i / 200, 0.5 - i / 200],
                                                       version=version, at=now)))
                for i, pid in enumerate(ids)]  # fmt: skip

    def requested() -> list[str]:
        records = read_topics(settings.kafka, [settings.topics.annotation_requests],
                              expected=None, timeout_s=10)  # fmt: skip
        decoded = serde_for("AnnotationRequest")
        return [decoded.decode(r.value)["product_id"] for r in records if r.value]

    first = run_worker(settings, ["sample"], stage="sample")
    produce(settings, settings.topics.predictions, wave(1))
    deadline = time.monotonic() + 60
    while not requested():
        assert time.monotonic() < deadline, "no request from the first sampler"
        time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    before = requested()

    again = run_worker(settings, ["sample"], stage="sample")
    produce(settings, settings.topics.predictions, wave(2))  # every product predicted again
    time.sleep(sampler.window_s * 4 + 3)
    after = requested()
    assert len(after) == len(set(after)), "a product was requested twice"
    assert set(before) <= set(after) and len(after) > len(before)  # the new windows asked others
    assert again.poll() is None


def _committed_to_end(settings: Settings, group: str, topic: str) -> bool:
    """Whether ``group`` has committed every partition of ``topic`` up to its end."""
    committed = committed_offsets(settings, group, topic)
    consumer = Consumer(librdkafka_config(settings.kafka, **{"group.id": group}))
    try:
        return all(
            offset == watermarks(consumer, TopicPartition(topic, p))[1]
            for p, offset in committed.items()
        )
    finally:
        consumer.close()


def test_drift_workers_killed_mid_stream_dead_letter_every_bad_prediction(
    pipeline_settings: Settings, run_worker, tmp_path: Path
) -> None:
    """The drift stage's outputs are gauges and dead letters: its workers SIGKILLed mid-stream
    three times, the survivor still dead-letters every bad prediction (by the source header),
    commits to the end of the topic and scores windows; only partial windows are lost."""
    from prodcat.core.settings import DriftSettings
    from tests.streams.test_drift_stage import matching, reference, write_reference

    model_base = tmp_path / "models"
    write_reference(model_base, "clf", 1, reference())
    settings = pipeline_settings.model_copy(
        update={
            "serving": pipeline_settings.serving.model_copy(update={"model_base": model_base}),
            "drift": DriftSettings(window_predictions=200, min_window=100, window_s=3600),
            "worker": pipeline_settings.worker.model_copy(update={"batch_size": BATCH}),
        }
    )
    serde = serde_for("Prediction")
    records = [(str(p["product_id"]).encode(), serde.encode(p)) for p in matching(3000, seed=5)]
    for i in range(0, len(records), 50):  # every 50th record is not a prediction
        records[i] = (records[i][0], b"\x00not a prediction")
    topic = settings.topics.predictions
    produce(settings, topic, records)
    written = read_topics(settings.kafka, [topic], expected=len(records))
    bad = {f"{r.topic}/{r.partition}/{r.offset}".encode() for r in written
           if r.value == b"\x00not a prediction"}  # fmt: skip
    assert len(bad) == len(records) // 50
    host, port = settings.worker.metrics_host, settings.worker.metrics_port

    for _ in range(3):  # SIGKILL mid-stream
        proc = run_worker(settings, ["drift"], stage="drift")
        deadline = time.monotonic() + 60
        while scrape_metric(host, port, "prodcat_events_in_total", stage="drift") < 2 * BATCH:
            assert time.monotonic() < deadline, "the worker did not consume"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    group = f"{settings.worker.app_id}-drift"
    assert not _committed_to_end(settings, group, topic), "the kills must land mid-stream"

    survivor = run_worker(settings, ["drift"], stage="drift")
    deadline = time.monotonic() + 120
    while not _committed_to_end(settings, group, topic):
        assert time.monotonic() < deadline, "the survivor did not commit to the end"
        time.sleep(1)
    letters = read_topics(settings.kafka, [settings.topics.deadletter], expected=None, timeout_s=20)
    answered = [r.headers[SOURCE_HEADER] for r in letters]
    assert set(answered) == bad
    assert len(answered) - len(bad) <= 3 * 4 * BATCH // 50 + 3  # re-read batches' bad ones
    taken = scrape_metric(host, port, "prodcat_events_in_total", stage="drift") - scrape_metric(
        host, port, "prodcat_dead_letters_total", stage="drift"
    )
    windows = scrape_metric(host, port, "prodcat_drift_windows_total", model="clf")
    assert windows == taken // 200 and windows >= 1, (windows, taken)
    assert survivor.poll() is None
