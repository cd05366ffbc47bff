"""Send many records at once with aiokafka's batch API, partitioned like the Java client.

``AIOKafkaProducer.send`` costs tens of microseconds per record (metadata wait, partitioner, accumulator,
a debug log call); a micro-batch of thousands of outputs instead fills one ``BatchBuilder`` per
partition and submits each with ``send_batch``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from prodcat.streams.partitioning import partitions_for


class OutgoingRecord(Protocol):
    @property
    def topic(self) -> str | None: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class BatchSender:
    """Partitions records by murmur2(key) (keyless ones round-robin) and awaits every acknowledgement."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._partitions: dict[str, int] = {}
        self._round_robin = itertools.count()

    async def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            partitions = await self.producer.partitions_for(topic)
            count = self._partitions[topic] = len(partitions)
        return count

    async def send_all(self, records: Iterable[OutgoingRecord]) -> None:
        """Send ``records``; return once the broker has acknowledged all of them (raise otherwise)."""
        for _records, error in await self.send_reporting(records):
            raise error

    async def send_reporting(
        self, records: Iterable[OutgoingRecord]
    ) -> list[tuple[list[OutgoingRecord], BaseException]]:
        """Send ``records``; once every batch is acknowledged or failed, the failed batches'
        records with their error (empty when all were acknowledged)."""
        by_topic: dict[str, list[OutgoingRecord]] = {}
        for record in records:
            if record.topic is not None:  # None: consumed without a Kafka output
                by_topic.setdefault(record.topic, []).append(record)
        builders: dict[tuple[str, int], Any] = {}
        members: dict[tuple[str, int], list[OutgoingRecord]] = {}
        futures: list[asyncio.Future[Any]] = []
        groups: list[list[OutgoingRecord]] = []
        for topic, topic_records in by_topic.items():
            n = await self._partition_count(topic)
            keyed = [r.key for r in topic_records if r.key]
            hashed = iter(partitions_for(keyed, n))
            for record in topic_records:
                key = record.key
                partition = next(hashed) if key else next(self._round_robin) % n
                slot = (topic, partition)
                builder = builders.get(slot)
                if builder is None:
                    builder = builders[slot] = self.producer.create_batch()
                    members[slot] = []
                headers = record.headers
                if not isinstance(headers, list):
                    headers = list(headers)
                if (
                    builder.append(key=key, value=record.value, timestamp=None, headers=headers)
                    is None
                ):
                    # Full: submit it and start another (a record larger than a batch still fits alone).
                    futures.append(
                        await self.producer.send_batch(builder, topic, partition=partition)
                    )
                    groups.append(members[slot])
                    builder = builders[slot] = self.producer.create_batch()
                    members[slot] = []
                    builder.append(key=key, value=record.value, timestamp=None, headers=headers)
                members[slot].append(record)
        for (topic, partition), builder in builders.items():
            if builder.record_count():
                futures.append(await self.producer.send_batch(builder, topic, partition=partition))
                groups.append(members[(topic, partition)])
        results = await asyncio.gather(*futures, return_exceptions=True)
        return [
            (group, result)
            for group, result in zip(groups, results, strict=True)
            if isinstance(result, BaseException)
        ]
