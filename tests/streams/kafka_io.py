"""Helpers the integration tests share: publishing records and labelled Flipkart products."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from prodcat.core.ids import path_id
from prodcat.core.kafka_config import producer_config
from prodcat.core.settings import Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.normalize import normalize_event
from prodcat.streams.replay import dataset_events
from prodcat.training.dataset import load_flipkart, protocol_label
from tests.conftest import free_port


def produce(
    settings: Settings,
    topic: str,
    records: Sequence[tuple[bytes, bytes | None]],
    headers: Mapping[str, bytes] | None = None,
) -> None:
    """Publish ``(key, value)`` records (None: a tombstone) and wait until all are acknowledged."""
    producer = Producer(producer_config(settings.kafka))
    for key, value in records:
        producer.produce(topic, key=key, value=value, headers=dict(headers or {}))
    assert producer.flush(30) == 0


@cache
def flipkart_products(data_dir: Path, count: int) -> list[tuple[dict[str, Any], str | None]]:
    """The first ``count`` Flipkart products, normalised, with their level-2 class id."""
    truth = {e.product_id: protocol_label(e.raw_path, 2) for e in load_flipkart(data_dir)[:count]}
    out = []
    for event in dataset_events(data_dir, ["flipkart"], limit=count):
        product = normalize_event(event.value, feed="flipkart", key=event.key, seen_at_ms=0)
        label = truth.get(product["source_id"])
        out.append((product, path_id(label.split(" > ")) if label else None))
    return out


def product_records(data_dir: Path, start: int, count: int) -> list[tuple[bytes, bytes | None]]:
    """Flipkart rows ``start`` .. ``start + count`` normalised: (product id, Avro Product)."""
    from prodcat.schemas.serde import serde_for
    from prodcat.streams.replay import dataset_events

    serde = serde_for("Product")
    out: list[tuple[bytes, bytes | None]] = []
    for i, event in enumerate(dataset_events(data_dir, ["flipkart"], limit=start + count)):
        if i >= start:
            product = normalize_event(event.value, feed="flipkart", key=event.key, seen_at_ms=0)
            out.append((product["product_id"].encode(), serde.encode(product)))
    return out


def another_worker(settings: Settings) -> Settings:
    """``settings`` for a second worker process on this machine: its own metrics port."""
    worker = settings.worker.model_copy(update={"metrics_port": free_port()})
    return settings.model_copy(update={"worker": worker})


def with_model_copy(
    settings: Settings, tmp_path: Path, model_base: Path, **serving: Any
) -> Settings:
    """``settings`` serving a copy of ``model_base`` under ``tmp_path / "models"`` (model batches
    of 64, no committee, unless ``serving`` says otherwise)."""
    import shutil

    from prodcat.core.settings import ServingSettings

    base = tmp_path / "models"
    shutil.copytree(model_base, base)
    chosen = ServingSettings(model_base=base, **{"batch_size": 64, "committee_size": 1, **serving})
    return settings.model_copy(update={"serving": chosen})


def publish_thumbnails(settings: Settings, data_dir: Path, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` thumbnail products, normalised and sent to the normalized topic."""
    serde = serde_for("Product")
    products = [
        normalize_event(e.value, feed="thumbnails", key=e.key, seen_at_ms=0)
        for e in dataset_events(data_dir, ["thumbnails"], limit=limit)
    ]
    produce(settings, settings.topics.normalized,
            [(p["product_id"].encode(), serde.encode(p)) for p in products])  # fmt: skip
    return products


def committed_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """``group``'s committed offset of each partition of ``topic``, read by a new client each try
    (one whose coordinator lookup went stale keeps answering NOT_COORDINATOR on a loaded
    machine)."""
    import time

    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from prodcat.core.kafka_config import librdkafka_config

    for attempt in range(20):
        consumer = Consumer(librdkafka_config(settings.kafka, **{"group.id": group}))
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            found = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
            return {tp.partition: tp.offset for tp in found}
        except KafkaException:
            if attempt == 19:
                raise
            time.sleep(0.5)
        finally:
            consumer.close()
    raise AssertionError("unreachable")
