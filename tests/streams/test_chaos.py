"""Chaos on a three-broker cluster (issue 18, short forms): the normalise stage under load while
(1) the leader of its input partitions is SIGKILLed, (2) brokers are restarted in turn
(``PRODCAT_CHAOS_RESTARTS``: one in ``make test``, all three in ``make chaos``), (3) its workers
scale 1 -> 3 -> 1, (4) a worker is SIGKILLed ``PRODCAT_CHAOS_KILLS`` times (3 in ``make test``, 10
in ``make chaos``) and restarted each time. Every input offset ends as a product
or a dead letter (by the source header), duplicates stay within the batches in flight at each
fault (none at all with ``PRODCAT_WORKER__GUARANTEE=exactly_once``: ``make chaos`` runs every case
in both modes), and no worker exits unasked. ``make chaos`` runs this module."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from prodcat import localkafka
from prodcat.core.settings import (
    LocalKafkaSettings,
    Settings,
)
from prodcat.streams.readback import read_topics
from prodcat.streams.replay import dataset_events, replay
from prodcat.streams.stage import SOURCE_HEADER
from prodcat.streams.worker_process import scrape_metric
from tests.conftest import isolated_settings
from tests.prodcat.test_localkafka_cluster import _free_base
from tests.streams.kafka_io import another_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]


EVENTS = 20_000
KILLS = int(os.environ.get("PRODCAT_CHAOS_KILLS", "3"))
RESTARTS = int(os.environ.get("PRODCAT_CHAOS_RESTARTS", "1"))
#: ``make chaos`` runs each case with transactions as well (there no input may be answered twice)
BOTH_GUARANTEES = os.environ.get("PRODCAT_CHAOS_EXACTLY_ONCE") == "1"

GUARANTEES = pytest.mark.parametrize(
    "guarantee",
    [
        "at_least_once",
        pytest.param(
            "exactly_once",
            marks=pytest.mark.skipif(not BOTH_GUARANTEES, reason="make chaos"),
        ),
    ],
)


@dataclass
class Cluster:
    settings: Settings
    local: LocalKafkaSettings
    bootstrap: str


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaSettings]:
    """One local three-broker KRaft cluster for the module's cases (each on topics of its own)."""
    base = _free_base()
    local = LocalKafkaSettings(home=tmp_path_factory.mktemp("cluster"), port=base,
                               controller_port=base + 1, brokers=3, heap="512m")  # fmt: skip
    localkafka.start(local)
    try:
        yield local
    finally:
        localkafka.stop(local)


@contextmanager
def cluster(
    local: LocalKafkaSettings, tmp_path: Path, data_dir: Path, guarantee: str = "at_least_once"
) -> Iterator[Cluster]:
    """The three-broker cluster, every node serving (a node an earlier case killed is started
    again first), and prodcat's topics on it under new names (3 replicas, 2 in sync)."""
    bootstrap = localkafka.start(local).bootstrap
    settings = isolated_settings(bootstrap, data_dir, tmp_path / "faust", partitions=2,
                                 batch_size=200, guarantee=guarantee)  # fmt: skip
    yield Cluster(settings, local, bootstrap)


def _consumed(settings: Settings) -> float:
    return scrape_metric(
        "127.0.0.1", settings.worker.metrics_port, "prodcat_events_in_total", stage="normalize"
    )


def _wait_consumed(settings: Settings, at_least: float, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while _consumed(settings) < at_least:
        assert time.monotonic() < deadline, f"the worker did not consume {at_least:.0f} inputs"
        time.sleep(0.05)


def _paced_replay(
    settings: Settings, data_dir: Path, rate: float, count: int = EVENTS
) -> tuple[threading.Thread, list[int]]:
    """Replay ``count`` Flipkart events at ``rate``/s in a thread; the count sent lands in the list."""
    sent: list[int] = []

    def run() -> None:
        events = islice(dataset_events(data_dir, ["flipkart"]), count)
        sent.append(replay(settings.kafka, settings.topics.raw, events, rate=rate,
                           progress=False).sent)  # fmt: skip

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, sent


def _allowed(settings: Settings, faults: int) -> int:
    """Duplicates a run may have: none with transactions; at least once, the batches in flight
    (up to four per fault) read again by a partition's next owner."""
    if settings.worker.guarantee == "exactly_once":
        return 0
    return faults * 4 * settings.worker.batch_size


def _accounted(settings: Settings, sent: int, since: float) -> tuple[int, float]:
    """Wait until every input offset has its output; (duplicates, seconds after ``since``)."""
    names = settings.topics
    raw = read_topics(settings.kafka, [names.raw], expected=sent, timeout_s=120)
    inputs = {f"{r.topic}/{r.partition}/{r.offset}".encode() for r in raw}
    assert len(inputs) == sent
    deadline = time.monotonic() + 300
    covered: set[bytes] = set()
    count = 0
    while time.monotonic() < deadline:
        outputs = read_topics(settings.kafka, [names.normalized, names.deadletter],
                              expected=None, timeout_s=30)  # fmt: skip
        covered = {r.headers[SOURCE_HEADER] for r in outputs}
        count = len(outputs)
        if covered >= inputs:
            break
        time.sleep(2)
    assert covered == inputs, f"{len(inputs - covered)} of {sent} inputs unaccounted for"
    return count - len(covered), time.monotonic() - since


@GUARANTEES
def test_normalize_survives_the_loss_of_its_partition_leader(
    brokers: LocalKafkaSettings, tmp_path: Path, data_dir: Path, run_worker, guarantee: str
) -> None:
    with cluster(brokers, tmp_path, data_dir, guarantee) as c:
        settings, names = c.settings, c.settings.topics
        sent = replay(settings.kafka, names.raw, dataset_events(data_dir, ["flipkart"]),
                      progress=False).sent  # fmt: skip
        proc = run_worker(settings, ["normalize"])
        _wait_consumed(settings, 2_000)
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        leader = admin.list_topics(names.raw, timeout=10).topics[names.raw].partitions[0].leader
        pid = localkafka.node_pid(c.local, leader - 1)
        assert pid is not None
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)  # the input's partition leader, without warning

        duplicates, recovered_s = _accounted(settings, sent, killed_at)
        assert duplicates <= _allowed(settings, faults=1), duplicates
        assert proc.poll() is None, "the worker exited"
        print(f"\n{guarantee}: leader {leader} killed: {sent} inputs, 0 lost, {duplicates} duplicates, "
              f"all accounted for {recovered_s:.0f} s after the kill")  # fmt: skip


@GUARANTEES
def test_normalize_survives_a_rolling_restart_of_every_broker(
    brokers: LocalKafkaSettings, tmp_path: Path, data_dir: Path, run_worker, guarantee: str
) -> None:
    """``RESTARTS`` brokers stopped (SIGTERM) and started again in turn, the next only once the
    cluster has all three back, while events arrive at a steady rate."""
    with cluster(brokers, tmp_path, data_dir, guarantee) as c:
        settings = c.settings
        proc = run_worker(settings, ["normalize"])
        # each restart takes ~18 s under this load: the events outlast the restarts
        count = min(EVENTS, 6_000 * RESTARTS + 2_000)
        thread, sent = _paced_replay(settings, data_dir, rate=400, count=count)
        _wait_consumed(settings, 500)
        started = time.monotonic()
        for node in range(RESTARTS):
            assert localkafka.stop_node(c.local, node)  # SIGTERM, waits until it has exited
            localkafka.start(c.local)  # only the stopped node starts; waits for all three
            assert proc.poll() is None, f"the worker exited while broker {node + 1} restarted"
        restarts_s = time.monotonic() - started
        thread.join(timeout=120)
        assert sent, "the replay did not finish"
        duplicates, recovered_s = _accounted(settings, sent[0], started)
        assert duplicates <= _allowed(settings, faults=RESTARTS), duplicates
        assert proc.poll() is None, "the worker exited"
        print(f"\n{guarantee}: {RESTARTS} of 3 brokers restarted in turn ({restarts_s:.0f} s): "
              f"{sent[0]} inputs, 0 lost, {duplicates} duplicates, all accounted for "
              f"{recovered_s:.0f} s after it began")  # fmt: skip


@GUARANTEES
def test_normalize_scales_one_to_three_workers_and_back(
    brokers: LocalKafkaSettings, tmp_path: Path, data_dir: Path, run_worker, guarantee: str
) -> None:
    """Two workers join during load (the partitions spread), then leave (SIGTERM): every input
    is answered, duplicates stay within the batches in flight at the rebalances."""
    with cluster(brokers, tmp_path, data_dir, guarantee) as c:
        settings = c.settings
        first = run_worker(settings, ["normalize"])
        # the joins, 8 s shared and the leaves take ~20 s: the events outlast them
        thread, sent = _paced_replay(settings, data_dir, rate=500, count=12_000)
        _wait_consumed(settings, 1_000)
        started = time.monotonic()
        others = []
        for _ in range(2):
            other = another_worker(settings)
            others.append(run_worker(other, ["normalize"]))
        time.sleep(8)  # the group rebalances over three members and they share the load
        for proc in others:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, "a leaving worker did not stop cleanly"
        thread.join(timeout=120)
        assert sent, "the replay did not finish"
        duplicates, recovered_s = _accounted(settings, sent[0], started)
        assert duplicates <= _allowed(settings, faults=2), duplicates
        assert first.poll() is None, "the first worker exited"
        print(f"\n{guarantee}: workers 1 -> 3 -> 1: {sent[0]} inputs, 0 lost, {duplicates} duplicates, "
              f"all accounted for {recovered_s:.0f} s after the scale-out")  # fmt: skip


@GUARANTEES
def test_normalize_survives_a_worker_sigkilled_again_and_again(
    brokers: LocalKafkaSettings, tmp_path: Path, data_dir: Path, run_worker, guarantee: str
) -> None:
    """Beside a steady worker, a second one is SIGKILLed mid-stream ``KILLS`` times, restarted
    after each kill (every kill and every start is a rebalance): every input is answered, the
    duplicates stay within the batches in flight at each kill, the steady worker never exits."""
    with cluster(brokers, tmp_path, data_dir, guarantee) as c:
        settings = c.settings
        steady = run_worker(settings, ["normalize"])
        count = 2_000 * KILLS  # ~13 s of events per kill: a start and a kill take ~8 s
        thread, sent = _paced_replay(settings, data_dir, rate=150, count=count)
        _wait_consumed(settings, 500)
        started = time.monotonic()
        for _ in range(KILLS):
            other = another_worker(settings)
            victim = run_worker(other, ["normalize"])
            before = _consumed(other)
            deadline = time.monotonic() + 60
            while _consumed(other) < before + 50 and time.monotonic() < deadline:
                time.sleep(0.05)  # it has partitions and is mid-stream
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
        thread.join(timeout=300)
        assert sent, "the replay did not finish"
        duplicates, recovered_s = _accounted(settings, sent[0], started)
        assert duplicates <= _allowed(settings, faults=KILLS), duplicates
        assert steady.poll() is None, "the steady worker exited"
        print(f"\n{guarantee}: a worker SIGKILLed {KILLS} times: {sent[0]} inputs, 0 lost, {duplicates} "
              f"duplicates, all accounted for {recovered_s:.0f} s after the first kill")  # fmt: skip
