"""Backfill on a real broker with a real SavedModel: every product of the plan scored through the
classify stage, filters, and a job that resumes after a SIGKILL without re-scoring what it
committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from prodcat.core.ids import path_id
from prodcat.core.settings import Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.backfill import (
    BACKFILL_HEADER,
    BackfillPlan,
    backfill,
    category_id,
    group_id,
)
from prodcat.streams.exceptions import StreamsError
from prodcat.streams.readback import Record, read_topics
from prodcat.streams.stage import FEED_HEADER, SOURCE_HEADER
from prodcat.streams.worker_process import worker_env
from tests.conftest import TrainedClassifier
from tests.streams.kafka_io import committed_offsets, produce, product_records, with_model_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _predictions(settings: Settings, expected: int | None = None) -> list[Record]:
    return read_topics(
        settings.kafka, [settings.topics.predictions], expected=expected, timeout_s=60, idle_s=1.0
    )


def _source(record: Record) -> tuple[int, int]:
    _topic, partition, offset = record.headers[SOURCE_HEADER].decode().rsplit("/", 2)
    return int(partition), int(offset)


def _committed(settings: Settings, job: str) -> dict[int, int]:
    """The job's committed offsets."""
    return committed_offsets(settings, group_id(settings, job), settings.topics.normalized)


def test_a_killed_job_resumes_without_rescoring_what_it_committed(
    pipeline_settings: Settings,
    data_dir: Path,
    tmp_path: Path,
    trained_classifier: TrainedClassifier,
) -> None:
    settings = with_model_copy(pipeline_settings, tmp_path, trained_classifier.model_base)
    products = product_records(data_dir, 0, 400)
    produce(settings, settings.topics.normalized, products, {FEED_HEADER: b"shop"})

    command = [sys.executable, "-m", "prodcat", "backfill", "--job", "j1", "--rate", "40"]
    with (tmp_path / "backfill.log").open("wb") as log:
        proc = subprocess.Popen(
            [*command, "--batch-size", "10", "--no-progress"],
            env=worker_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while sum(max(0, o) for o in _committed(settings, "j1").values()) < 60:
            assert proc.poll() is None, (tmp_path / "backfill.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "backfill.log").read_text()[-3000:]
            time.sleep(0.5)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    at_kill = _committed(settings, "j1")
    first = _predictions(settings)
    assert 60 <= len(first) < len(products), "killed mid-way"

    # Products that arrive after the job started are the live stage's, not the job's.
    later = product_records(data_dir, 400, 30)
    produce(settings, settings.topics.normalized, later, {FEED_HEADER: b"shop"})

    report = backfill(settings, job="j1", rate=0, progress=False)
    assert report.resumed
    everything = _predictions(settings)
    assert all(r.headers[BACKFILL_HEADER] == b"j1" for r in everything)
    scored = Counter(_source(r) for r in everything)
    committed_before = {
        (p, o) for p, o in scored if o < at_kill.get(p, 0)
    }  # the positions the killed run had committed
    assert committed_before, "the killed run committed some batches"
    assert all(scored[pos] == 1 for pos in committed_before), "re-scored after its commit"
    # Every product of the plan scored; at most the uncommitted batch (10) scored twice.
    assert len(scored) == len(products)
    assert sum(scored.values()) - len(scored) <= 10
    keys = Counter(r.key for r in everything)
    assert set(keys) == {key for key, _ in products}
    assert not set(keys) & {key for key, _ in later}
    assert report.scored == len(everything) - len(first)

    # Finished: once more is nothing more.
    again = backfill(settings, job="j1", rate=0, progress=False)
    assert (again.resumed, again.read, again.scored) == (True, 0, 0)


def test_filters_by_feed_and_by_predicted_category(
    pipeline_settings: Settings,
    data_dir: Path,
    tmp_path: Path,
    trained_classifier: TrainedClassifier,
) -> None:
    settings = with_model_copy(pipeline_settings, tmp_path, trained_classifier.model_base)
    products = product_records(data_dir, 0, 150)
    produce(settings, settings.topics.normalized, products[:100], {FEED_HEADER: b"shop_a"})
    produce(settings, settings.topics.normalized, products[100:], {FEED_HEADER: b"shop_b"})

    only_b = backfill(settings, job="b", feeds=["shop_b"], rate=0, progress=False)
    assert (only_b.read, only_b.scored, only_b.skipped["other feed"]) == (150, 50, 100)
    out = _predictions(settings, expected=50)
    assert len(out) == 50 and {r.headers[FEED_HEADER] for r in out} == {b"shop_b"}

    # A job's filters are part of its plan: resuming with others is refused, with what to do.
    with pytest.raises(StreamsError, match="start a new job"):
        backfill(settings, job="b", feeds=["shop_a"], rate=0, progress=False)

    everything = backfill(settings, job="all", rate=0, progress=False)
    assert everything.scored == 150
    serde = serde_for("Prediction")
    latest = {}
    for record in _predictions(settings, expected=200):
        latest[record.key] = serde.decode(record.value or b"")["exclusive_top_k"][0]["path"]
    top = Counter(path[0] for path in latest.values()).most_common(1)[0][0]
    under = {key for key, path in latest.items() if path[0] == top}
    assert 0 < len(under) < 150

    by_path = backfill(settings, job="cat", category=top, rate=0, progress=False)
    assert (by_path.scored, by_path.skipped["other category"]) == (len(under), 150 - len(under))
    by_id = backfill(settings, job="cat-id", category=path_id([top]), rate=0, progress=False)
    assert by_id.scored == len(under)


def test_a_plan_round_trips_through_commit_metadata() -> None:
    plan = BackfillPlan("j", {0: 3, 1: 0}, {0: 10, 1: 4}, ("a",), 1_000, "c_0123456789ab")
    back = BackfillPlan.from_metadata(plan.metadata(), {0: 3, 1: 0})
    assert back == plan
    assert back.same_filters(["a"], 1_000, "c_0123456789ab")
    assert not back.same_filters([], None, None)
    assert category_id("c_0123456789ab") == "c_0123456789ab"
    assert category_id("Clothing > Shorts ") == path_id(["Clothing", "Shorts"])
    with pytest.raises(StreamsError, match="category id"):
        category_id(" > ")
