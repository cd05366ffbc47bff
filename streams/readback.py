"""Read records back from topics (demo summary, tests, benchmarks): every partition from the start."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from prodcat.core.kafka_config import librdkafka_config
from prodcat.core.settings import KafkaSettings


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp_ms: int


def read_topics(
    kafka: KafkaSettings,
    topics: Sequence[str],
    *,
    expected: int | None = None,
    timeout_s: float = 60.0,
    idle_s: float = 2.0,
) -> list[Record]:
    """All records of ``topics`` from offset 0: until ``expected`` are read, or ``idle_s`` passes
    with nothing new after reaching the end (when ``expected`` is None), or ``timeout_s``."""
    consumer = Consumer(
        librdkafka_config(
            kafka,
            **{
                "group.id": "prodcat-readback",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.max.bytes": 16 * 1024 * 1024,
            },
        )
    )
    try:
        meta = consumer.list_topics(timeout=10)
        parts = [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in topics
            for p in sorted(meta.topics[t].partitions)
        ]
        consumer.assign(parts)
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        at_eof: set[tuple[str | None, int | None]] = set()
        while time.monotonic() < deadline:
            if expected is not None and len(records) >= expected:
                break
            if (
                expected is None
                and len(at_eof) == len(parts)
                and (time.monotonic() - last_new > idle_s)
            ):
                break
            for msg in consumer.consume(10_000, timeout=0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add((msg.topic(), msg.partition()))
                        continue
                    raise RuntimeError(f"read-back error: {err}")
                at_eof.discard((msg.topic(), msg.partition()))
                last_new = time.monotonic()
                records.append(_record(msg))
        return records
    finally:
        consumer.close()


def _record(msg: Any) -> Record:
    headers = {k: v if isinstance(v, bytes) else (v or "").encode() for k, v in msg.headers() or []}
    return Record(
        msg.topic(),
        msg.partition(),
        msg.offset(),
        msg.key(),
        msg.value(),
        headers,
        msg.timestamp()[1],
    )
