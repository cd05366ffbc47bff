"""Chaos on a three-broker cluster (issue 18, short form): the normalise stage under load while
the leader of its input partitions is SIGKILLed. Every input offset ends as a product or a dead
letter (by the source header), duplicates stay within the batches in flight at the fault, and
the worker never exits. ``make chaos`` runs this module."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from prodcat import localkafka
from prodcat.core.settings import (
    KafkaSettings,
    LocalKafkaSettings,
    TopicNames,
    WorkerSettings,
    load_settings,
)
from prodcat.streams.readback import read_topics
from prodcat.streams.replay import dataset_events, replay
from prodcat.streams.stage import SOURCE_HEADER
from prodcat.streams.topics import ensure_topics, topic_specs
from prodcat.streams.worker_process import scrape_metric
from tests.conftest import free_port
from tests.prodcat.test_localkafka_cluster import _free_base

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]


def test_normalize_survives_the_loss_of_its_partition_leader(
    tmp_path: Path, data_dir: Path, run_worker
) -> None:
    base = _free_base()
    cluster = LocalKafkaSettings(
        home=tmp_path / "cluster", port=base, controller_port=base + 1, brokers=3, heap="512m"
    )
    bootstrap = localkafka.start(cluster).bootstrap
    try:
        uid = uuid.uuid4().hex[:8]
        names = TopicNames(**{f: f"c{uid}.{getattr(TopicNames(), f)}" for f in TopicNames.model_fields
                              if f != "partitions"}, partitions=2)  # fmt: skip
        settings = load_settings(
            data_dir=data_dir,
            kafka=KafkaSettings(bootstrap_servers=bootstrap),
            topics=names,
            worker=WorkerSettings(
                app_id=f"chaos-{uid}",
                metrics_port=free_port(),
                session_timeout_s=6,
                heartbeat_interval_s=1,
                commit_interval_s=0.5,
                log_level="WARNING",
                state_dir=tmp_path / "faust",
                batch_size=200,
            ),
        )
        ensure_topics(settings.kafka, topic_specs(names))  # 3 replicas, 2 in sync
        sent = replay(settings.kafka, names.raw, dataset_events(data_dir, ["flipkart"]),
                      progress=False).sent  # fmt: skip
        proc = run_worker(settings, ["normalize"])
        deadline = time.monotonic() + 120
        while (
            scrape_metric(
                "127.0.0.1",
                settings.worker.metrics_port,
                "prodcat_events_in_total",
                stage="normalize",
            )
            < 2_000
        ):
            assert time.monotonic() < deadline, "the worker did not start consuming"
            time.sleep(0.05)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        leader = admin.list_topics(names.raw, timeout=10).topics[names.raw].partitions[0].leader
        pid = localkafka.node_pid(cluster, leader - 1)
        assert pid is not None
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)  # the input's partition leader, without warning

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
        recovered_s = time.monotonic() - killed_at
        assert covered == inputs, f"{len(inputs - covered)} of {sent} inputs unaccounted for"
        duplicates = count - len(covered)
        assert duplicates <= 4 * settings.worker.batch_size, duplicates
        assert proc.poll() is None, "the worker exited"
        print(f"\nleader {leader} killed: {sent} inputs, 0 lost, {duplicates} duplicates, "
              f"all accounted for {recovered_s:.0f} s after the kill")  # fmt: skip
    finally:
        localkafka.stop(cluster)
