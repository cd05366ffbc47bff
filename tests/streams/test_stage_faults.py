"""Stage-level faults on the real broker (issue 17, short forms): the classify stage's workers are
SIGKILLed mid-stream three times, then a second worker joins and leaves (two rebalances) while
the first keeps going. Every input offset ends as a prediction or a dead letter (by the source
header), duplicates stay within the batches in flight at each fault, and the surviving worker
never exits."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from prodcat.core.settings import Settings
from prodcat.streams.readback import read_topics
from prodcat.streams.stage import SOURCE_HEADER
from prodcat.streams.worker_process import scrape_metric, stop_worker
from tests.conftest import TrainedClassifier, free_port
from tests.streams.kafka_io import produce, product_records, with_model_copy

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
    other = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"metrics_port": free_port()})}
    )
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
