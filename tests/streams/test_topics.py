"""Topics are created by the project with explicit partitions and configs, idempotently, and
existing ones are checked against their spec."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from prodcat.core.kafka_config import librdkafka_config
from prodcat.core.settings import KafkaSettings, TopicNames
from prodcat.streams.exceptions import TopicError
from prodcat.streams.topics import TopicSpec, ensure_topics, topic_specs


def test_specs_follow_the_design() -> None:
    specs = {s.name: s for s in topic_specs(TopicNames(partitions=6))}
    assert {n for n, s in specs.items() if s.compacted} == {
        "products.normalized",
        "products.predictions",
        "labels",
        "similarity.judgements",
        "feeds.profiles",
        "taxonomy",
        "products.deadletter.replays",
        "feeds.mappings",
        "labels.suspect",
        "labels.second",
    }
    assert specs["products.raw"].partitions == 6
    assert specs["labels.suspect"].partitions == specs["labels.second"].partitions == 6
    assert specs["products.deadletter.replays"].partitions == 1
    assert specs["feeds.mappings"].partitions == 1
    assert specs["models.events"].partitions == 1
    assert specs["feeds.profiles"].partitions == 1
    assert specs["taxonomy"].partitions == 1
    assert int(specs["taxonomy"].config["max.message.bytes"]) >= 16 * 1024 * 1024
    assert int(specs["products.deadletter"].config["max.message.bytes"]) > int(
        specs["products.raw"].config["max.message.bytes"]
    )


@pytest.mark.integration
def test_ensure_topics_creates_then_reports_existing(kafka_bootstrap: str) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    uid = uuid.uuid4().hex[:8]
    names = TopicNames(
        raw=f"{uid}.raw",
        normalized=f"{uid}.normalized",
        labels=f"{uid}.labels",
        deadletter=f"{uid}.dl",
        predictions=f"{uid}.pred",
        annotation_requests=f"{uid}.ann",
        model_events=f"{uid}.models",
        judgements=f"{uid}.judgements",
        taxonomy=f"{uid}.taxonomy",
        partitions=3,
    )
    specs = topic_specs(names)
    assert set(ensure_topics(kafka, specs).values()) == {"created"}
    assert set(ensure_topics(kafka, specs).values()) == {"exists"}

    admin = AdminClient(librdkafka_config(kafka))
    meta = admin.list_topics(timeout=10)
    assert len(meta.topics[names.raw].partitions) == 3
    resources = [ConfigResource("topic", names.normalized), ConfigResource("topic", names.raw)]
    configs = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
    assert configs[names.normalized]["cleanup.policy"].value == "compact"
    assert configs[names.raw]["cleanup.policy"].value == "delete"

    fewer = topic_specs(names.model_copy(update={"partitions": 5}))
    with pytest.raises(TopicError, match="expected 5"):
        ensure_topics(kafka, fewer)


@pytest.mark.integration
def test_existing_topics_are_checked_against_their_spec(kafka_bootstrap: str) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    uid = uuid.uuid4().hex[:8]
    admin = AdminClient(librdkafka_config(kafka))
    wrong = {
        f"{uid}.compacted-deletes": {"cleanup.policy": "delete"},
        f"{uid}.small": {"max.message.bytes": "1048576"},
        f"{uid}.fine": {"cleanup.policy": "compact", "min.insync.replicas": "1"},
    }
    futures = admin.create_topics(
        [
            NewTopic(name, num_partitions=1, replication_factor=1, config=c)
            for name, c in wrong.items()
        ]
    )
    for future in futures.values():
        future.result(timeout=30)

    compacted = TopicSpec(f"{uid}.compacted-deletes", 1, {"cleanup.policy": "compact"})
    with pytest.raises(TopicError, match=r"cleanup\.policy=delete, expected compact"):
        ensure_topics(kafka, [compacted])
    large = TopicSpec(f"{uid}.small", 1, {"max.message.bytes": str(10 * 1024 * 1024)})
    with pytest.raises(
        TopicError, match=r"max\.message\.bytes=1048576, expected at least 10485760"
    ):
        ensure_topics(kafka, [large])

    fine = TopicSpec(f"{uid}.fine", 1, {"cleanup.policy": "compact"})
    assert ensure_topics(kafka, [fine]) == {fine.name: "exists"}
    durable = kafka.model_copy(update={"replication_factor": 3, "min_insync_replicas": 2})
    (state,) = ensure_topics(durable, [fine]).values()
    assert state.startswith("exists; ")
    assert "replication factor 1 < 3" in state and "min.insync.replicas 1 < 2" in state


def test_new_topics_default_to_three_replicas_two_in_sync_where_the_cluster_allows() -> None:
    from prodcat.core.settings import KafkaSettings
    from prodcat.streams.topics import durability

    kafka = KafkaSettings()
    assert durability(kafka, 1) == (1, None)  # one broker: one replica, the broker's min.insync
    assert durability(kafka, 2) == (2, None)
    assert durability(kafka, 3) == (3, 2)
    assert durability(kafka, 9) == (3, 2)
    assert durability(kafka.model_copy(update={"replication_factor": 2}), 9) == (2, None)
    assert durability(kafka.model_copy(update={"min_insync_replicas": 1}), 3) == (3, 1)
