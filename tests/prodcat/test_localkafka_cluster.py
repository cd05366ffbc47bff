"""A local three-node KRaft cluster: replicated topics survive the loss of their leader."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from prodcat import localkafka
from prodcat.core.settings import KafkaSettings, LocalKafkaSettings
from prodcat.streams.topics import TopicSpec, ensure_topics

pytestmark = [pytest.mark.integration]


def _free_base(span: int = 6) -> int:
    """A port whose next ``span`` ports are free (a cluster's nodes use port + 2i)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = sock.getsockname()[1]
        if base + span < 65535 and all(_free(base + i) for i in range(span)):
            return base
    raise RuntimeError("no free port range")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_three_node_cluster_keeps_serving_when_a_leader_dies(tmp_path: Path) -> None:
    base = _free_base()
    cfg = LocalKafkaSettings(
        home=tmp_path / "cluster", port=base, controller_port=base + 1, brokers=3, heap="512m"
    )
    status = localkafka.start(cfg)
    try:
        bootstrap = status.bootstrap
        assert len(bootstrap.split(",")) == 3
        admin = AdminClient({"bootstrap.servers": bootstrap})
        assert len(admin.list_topics(timeout=10).brokers) == 3

        # prodcat's own topics on this cluster, with default settings: 3 replicas, 2 in sync.
        own = TopicSpec(f"own-{uuid.uuid4().hex[:6]}", 2, {"cleanup.policy": "compact"})
        assert ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), [own]) == {
            own.name: "created"
        }
        deadline = time.monotonic() + 30
        while True:  # the new topic's partitions reach every broker's metadata in a moment
            meta = admin.list_topics(own.name, timeout=10).topics[own.name]
            if len(meta.partitions) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert {len(p.replicas) for p in meta.partitions.values()} == {3}
        resource = ConfigResource("topic", own.name)
        configs = next(iter(admin.describe_configs([resource]).values())).result(timeout=10)
        assert configs["min.insync.replicas"].value == "2"
        topic = f"replicated-{uuid.uuid4().hex[:6]}"
        spec = NewTopic(topic, 1, replication_factor=3, config={"min.insync.replicas": "2"})
        admin.create_topics([spec])[topic].result(timeout=30)
        producer = Producer(
            {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True}
        )
        for i in range(50):
            producer.produce(topic, b"before-%d" % i)
        assert producer.flush(30) == 0

        leader = admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader
        pid = localkafka.node_pid(cfg, leader - 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the partition's leader, without warning
        deadline = time.monotonic() + 10
        while localkafka.node_pid(cfg, leader - 1) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not localkafka.status(cfg).running

        deadline = time.monotonic() + 60
        for i in range(50):
            producer.produce(topic, b"after-%d" % i)
        while producer.flush(1) and time.monotonic() < deadline:
            pass
        assert producer.flush(30) == 0  # a new leader took over; two in-sync replicas remain
        new_leader = admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader
        assert new_leader not in (-1, leader)

        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                             "auto.offset.reset": "earliest"})  # fmt: skip
        consumer.subscribe([topic])
        values: list[bytes] = []
        while len(values) < 100 and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                values.append(msg.value() or b"")
        consumer.close()
        assert sorted(values) == sorted([b"before-%d" % i for i in range(50)]
                                        + [b"after-%d" % i for i in range(50)])  # fmt: skip

        localkafka.start(cfg)  # brings back the killed node only
        assert localkafka.status(cfg).running
        assert len(admin.list_topics(timeout=10).brokers) == 3
    finally:
        assert localkafka.stop(cfg)
    assert not localkafka.status(cfg).running
