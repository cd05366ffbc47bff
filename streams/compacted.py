"""Materialise a compacted topic: the live value of every key, read from the beginning to the end.

The training snapshot (``labels`` joined with ``products.normalized``) and ``prodcat labels rules``
read the topics this way: the latest record per key wins, a tombstone deletes the key. The end
offsets reached are returned too, so a caller can say what a snapshot covered.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from prodcat.core.kafka_config import librdkafka_config, watermarks
from prodcat.core.settings import KafkaSettings
from prodcat.streams.exceptions import StreamsError, TopicError


@dataclass
class LiveRecords:
    """The live values of a compacted topic by key (tombstoned keys absent) and where it ended."""

    topic: str
    values: dict[bytes, bytes] = field(default_factory=dict)
    keyless: int = 0
    end_offsets: dict[int, int] = field(default_factory=dict)


def topic_partitions(consumer: Consumer, topic: str, bootstrap: str) -> list[int]:
    """The partitions of ``topic``; :class:`TopicError` (saying how to create it) if it is absent."""
    meta = consumer.list_topics(topic, timeout=10)
    if topic not in meta.topics or meta.topics[topic].error is not None:
        raise TopicError(
            f"topic {topic} does not exist on {bootstrap} (create it with `prodcat topics create`)"
        )
    return sorted(meta.topics[topic].partitions)


def time_range(
    consumer: Consumer, topic: str, partitions: Iterable[int], since_ms: int | None
) -> tuple[dict[int, int], dict[int, int]]:
    """Per partition, the first offset written at or after ``since_ms`` (None: the first there
    is) and the end now: what :func:`read_until_end` reads."""
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    for partition in partitions:
        starts[partition], ends[partition] = watermarks(consumer, TopicPartition(topic, partition))
    if since_ms is not None:
        found = consumer.offsets_for_times(
            [TopicPartition(topic, p, since_ms) for p in starts], timeout=10
        )
        for tp in found:
            starts[tp.partition] = (
                ends[tp.partition] if tp.offset in (-1, OFFSET_END) else tp.offset
            )
    return starts, ends


def read_until_end(
    consumer: Consumer,
    topic: str,
    starts: dict[int, int],
    ends: dict[int, int],
    timeout_s: float,
) -> Iterator[Message]:
    """Every message of ``topic`` from ``starts`` (offsets per partition) up to ``ends`` (the high
    watermarks when the read began; later messages are left alone), in partition order within
    each partition. Partitions whose start is not below their end are not read."""
    pending = {p for p, end in ends.items() if p in starts and (starts[p] < 0 or starts[p] < end)}
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in sorted(pending)])
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            raise StreamsError(f"reading {topic} took longer than {timeout_s:.0f}s")
        for msg in consumer.consume(10_000, timeout=0.5):
            err = msg.error()
            partition, offset = msg.partition() or 0, msg.offset() or 0
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    if offset >= ends.get(partition, 0):
                        pending.discard(partition)
                    continue
                if err.retriable():  # e.g. a leader not elected yet on a new topic
                    continue
                raise StreamsError(f"reading {topic}: {err}")
            if partition not in pending or offset >= ends[partition]:  # written after the start
                pending.discard(partition)
                continue
            yield msg
            if offset + 1 >= ends[partition]:
                pending.discard(partition)


def read_compacted(kafka: KafkaSettings, topic: str, *, timeout_s: float = 120.0) -> LiveRecords:
    """Every partition of ``topic`` from the beginning up to its end when the read started."""
    consumer = Consumer(
        librdkafka_config(
            kafka,
            **{
                "group.id": f"prodcat-snapshot-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.max.bytes": 32 * 1024 * 1024,
            },
        )
    )
    live = LiveRecords(topic)
    try:
        meta = consumer.list_topics(topic, timeout=10)
        if topic not in meta.topics or meta.topics[topic].error is not None:
            raise TopicError(f"topic {topic} does not exist on {kafka.bootstrap_servers}")
        ends: dict[int, int] = {}
        for partition in sorted(meta.topics[topic].partitions):
            low, high = watermarks(consumer, TopicPartition(topic, partition))
            if high > low:
                ends[partition] = high
            live.end_offsets[partition] = high
        starts = {p: OFFSET_BEGINNING for p in ends}
        for msg in read_until_end(consumer, topic, starts, ends, timeout_s):
            key, value = msg.key(), msg.value()
            if key is None:
                live.keyless += 1
            elif value is None:
                live.values.pop(key, None)
            else:
                live.values[key] = value
    except KafkaException as exc:
        raise StreamsError(f"reading {topic}: {exc}") from exc
    finally:
        consumer.close()
    return live
