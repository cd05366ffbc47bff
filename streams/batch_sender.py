"""Send many records at once with aiokafka's batch API, partitioned like the Java client.

``AIOKafkaProducer.send`` costs tens of microseconds per record (metadata wait, partitioner, accumulator,
a debug log call); a micro-batch of thousands of outputs instead fills one ``BatchBuilder`` per
partition and submits each with ``send_batch``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from prodcat.streams.delivery_errors import MissingTopicError
from prodcat.streams.partitioning import partitions_for

#: Pauses between the metadata requests that decide a topic does not exist (about 2 s in all).
MISSING_TOPIC_CHECKS_S = (0.1, 0.3, 0.6, 1.0)
#: For this long after, sends to that topic fail at once (then the broker is asked again).
MISSING_TOPIC_TTL_S = 10.0


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
        self._missing: dict[str, float] = {}  # topic -> when it was found missing (monotonic)

    async def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            partitions = await self._partitions_of(topic)
            count = self._partitions[topic] = len(partitions)
        return count

    async def _partitions_of(self, topic: str) -> set[int]:
        """The partitions of ``topic``. aiokafka alone waits its whole request timeout (40 s) for
        a topic that does not exist, on every send; here the metadata is asked for again a few
        times (a topic just created may be a refresh away), and when the broker answers every
        time without it, :class:`MissingTopicError` says so at once. A broker that does not
        answer leaves it to aiokafka's own wait (an outage: retried)."""
        client = self.producer.client
        partitions: set[int] | None = client.cluster.partitions_for_topic(topic)
        if partitions is not None:
            return partitions
        found_missing = self._missing.get(topic)
        if found_missing is not None and time.monotonic() - found_missing < MISSING_TOPIC_TTL_S:
            raise MissingTopicError(topic)
        client.add_topic(topic)
        for delay in MISSING_TOPIC_CHECKS_S:
            answered = await client.force_metadata_update()
            partitions = client.cluster.partitions_for_topic(topic)
            if partitions is not None:
                return partitions
            if not answered or topic in client.cluster.unauthorized_topics:
                return set(await self.producer.partitions_for(topic))
            await asyncio.sleep(delay)
        self._missing[topic] = time.monotonic()
        raise MissingTopicError(topic)

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
        missing: list[tuple[list[OutgoingRecord], BaseException]] = []
        for topic, topic_records in by_topic.items():
            try:
                n = await self._partition_count(topic)
            except MissingTopicError as exc:  # the other topics' records still go
                missing.append((topic_records, exc))
                continue
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
        return missing + [
            (group, result)
            for group, result in zip(groups, results, strict=True)
            if isinstance(result, BaseException)
        ]
