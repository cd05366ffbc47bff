"""Exactly-once delivery for a stage: its outputs and its input offsets in one Kafka transaction.

``PRODCAT_WORKER__GUARANTEE=exactly_once``. Each input partition a worker owns gets its own
transactional producer, ``transactional.id = <app_id>-<stage>-<topic>-<partition>``: when the
partition moves to another worker, the new owner's producer registers the same id, which fences
the old one (its next send or commit fails with ``ProducerFenced``, and an open transaction of it is
aborted by the broker). So a worker that lost a partition, even one paused past its session
timeout, can no longer add a record or an offset for it. (aiokafka's offset commit in a transaction
does not carry the consumer group's generation, so fencing by group generation, KIP-447, is not
available; the per-partition id is the classic alternative.)

One transaction per input partition and delivery holds exactly the outputs that answer the offsets
it commits: outputs of inputs at or past the partition's commit point (the oldest input the stage
still holds) wait here until a later delivery moves the commit point past them. Downstream consumers
read with ``isolation.level=read_committed`` (the stage runtime's consumers do in this mode; the
confluent-kafka readers do by default), so an aborted or unfinished transaction is never seen.

What is not exactly-once: outputs of no input (a stage's windows, a feed's profile) are sent
at-least-once; effects outside Kafka (Milvus upserts, model files) are idempotent instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any, cast

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from prodcat.core.kafka_config import aiokafka_config
from prodcat.core.settings import Settings
from prodcat.streams.batch_sender import BatchSender
from prodcat.streams.delivery_errors import Verdict, classify
from prodcat.streams.stage import Outgoing
from prodcat.streams.topics import DEADLETTER_MAX_MESSAGE_BYTES

__all__ = ["PartitionTransactions", "transactional_id"]

logger = logging.getLogger(__name__)

#: How long a dropped producer may take to stop before its connections are closed regardless.
STOP_TIMEOUT_S = 5.0
#: The longest one transaction (begin, send, offsets, commit) may take before it counts as failed.
TXN_TIMEOUT_S = 30.0


def transactional_id(app_id: str, stage: str, tp: TopicPartition) -> str:
    return f"{app_id}-{stage}-{tp.topic}-{tp.partition}"


class PartitionTransactions:
    """The transactional producers of one stage's owned input partitions, and the outputs each
    partition's next transaction will carry."""

    def __init__(self, settings: Settings, stage: str, group_id: str) -> None:
        self.settings = settings
        self.stage = stage
        self.group_id = group_id
        self._producers: dict[TopicPartition, tuple[AIOKafkaProducer, BatchSender]] = {}
        self._waiting: dict[TopicPartition, list[Outgoing]] = {}
        self._stopping: set[asyncio.Future[None]] = set()

    def add(self, tp: TopicPartition, outputs: Iterable[Outgoing]) -> None:
        """Outputs answering inputs of ``tp``, to go in the transaction that commits past them."""
        self._waiting.setdefault(tp, []).extend(outputs)

    def ready(self, tp: TopicPartition, commit_point: int) -> list[Outgoing]:
        """The waiting outputs of inputs before ``commit_point`` (the rest keep waiting)."""
        waiting = self._waiting.get(tp, [])
        now = [o for o in waiting if o.source is not None and o.source.offset < commit_point]
        later = [o for o in waiting if o.source is None or o.source.offset >= commit_point]
        if later:
            self._waiting[tp] = later
        else:
            self._waiting.pop(tp, None)
        return now

    async def _producer(self, tp: TopicPartition) -> tuple[AIOKafkaProducer, BatchSender]:
        made = self._producers.get(tp)
        if made is None:
            worker = self.settings.worker
            producer = AIOKafkaProducer(
                **aiokafka_config(self.settings.kafka),
                acks="all",
                enable_idempotence=True,
                transactional_id=transactional_id(worker.app_id, self.stage, tp),
                max_batch_size=1_000_000,
                max_request_size=DEADLETTER_MAX_MESSAGE_BYTES + 1_000_000,
                client_id=f"{worker.app_id}-{self.stage}-txn",
            )
            try:  # registers the id: fences a previous owner of the partition
                await producer.start()
            except BaseException:
                await self._stop(tp, producer)
                raise
            made = self._producers[tp] = (producer, BatchSender(producer))
        return made

    async def commit(
        self, tp: TopicPartition, records: Sequence[Outgoing], next_offset: int
    ) -> list[tuple[list[Outgoing], BaseException]]:
        """Send ``records`` and commit ``next_offset`` for ``tp`` in one transaction. When a
        batch of records is refused, the transaction is aborted and the refusals are returned (the
        caller decides, and commits again); any other error aborts and is raised.

        A fenced producer's background sender ends with ``ProducerFenced`` and leaves an awaited
        commit unanswered for ever; so the transaction also ends when the sender does (its error
        raised), or after ``TXN_TIMEOUT_S``."""
        producer, sender = await self._producer(tp)
        body = asyncio.ensure_future(self._transact(producer, sender, tp, records, next_offset))
        watched: set[asyncio.Future[Any]] = {body}
        background = getattr(getattr(producer, "_sender", None), "sender_task", None)
        if isinstance(background, asyncio.Future):
            watched.add(background)
        try:
            done, _ = await asyncio.wait(
                watched, timeout=TXN_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
            if body in done:
                return body.result()
            body.cancel()
            if background is not None and background in done and not background.cancelled():
                raise background.exception() or KafkaError("the producer's sender stopped")
            raise TimeoutError(f"the transaction of {tp} took over {TXN_TIMEOUT_S:g}s")
        except BaseException:
            body.cancel()
            await self._abandon(tp)
            raise

    async def _transact(
        self,
        producer: AIOKafkaProducer,
        sender: BatchSender,
        tp: TopicPartition,
        records: Sequence[Outgoing],
        next_offset: int,
    ) -> list[tuple[list[Outgoing], BaseException]]:
        await producer.begin_transaction()
        failed = await sender.send_reporting(records)
        if failed:
            await producer.abort_transaction()
            for _group, error in failed:
                if classify(error) is not Verdict.PERMANENT:
                    raise error
            return [(cast(list[Outgoing], group), error) for group, error in failed]
        await producer.send_offsets_to_transaction({tp: next_offset}, self.group_id)
        await producer.commit_transaction()
        return []

    async def _abandon(self, tp: TopicPartition) -> None:
        """Abort what ``tp``'s producer has open (or drop the producer when it cannot)."""
        made = self._producers.get(tp)
        if made is None:
            return
        producer = made[0]
        try:
            await asyncio.wait_for(producer.abort_transaction(), STOP_TIMEOUT_S)
        except Exception as exc:  # fenced, or in an error state: a fresh producer next time
            logger.warning("%s: dropping the producer of %s (%s)", self.stage, tp, exc)
            await self.forget([tp])

    async def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the producers and waiting outputs of partitions this worker no longer owns (or
        must re-read). Their producers are stopped in the background, each within
        ``STOP_TIMEOUT_S``: a fenced producer may never flush what it holds, and a rebalance
        must not wait for it."""
        for tp in partitions:
            self._waiting.pop(tp, None)
            made = self._producers.pop(tp, None)
            if made is not None:
                task = asyncio.ensure_future(self._stop(tp, made[0]))
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)

    async def _stop(self, tp: TopicPartition, producer: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(producer.stop(), STOP_TIMEOUT_S)
        except Exception as exc:  # fenced, timed out: close its connections regardless
            logger.warning("%s: stopping the producer of %s: %r", self.stage, tp, exc)
            sender = getattr(producer, "_sender", None)
            task = getattr(sender, "sender_task", None)
            if isinstance(task, asyncio.Future) and not task.done():
                task.cancel()
            try:
                await asyncio.wait_for(producer.client.close(), STOP_TIMEOUT_S)
            except Exception as close_exc:
                logger.warning("%s: closing the producer of %s: %r", self.stage, tp, close_exc)
        _read_sender_error(producer)

    async def close(self) -> None:
        await self.forget(list(self._producers))
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)


def _read_sender_error(producer: AIOKafkaProducer) -> None:
    """A fenced producer's background sender ends with ProducerFenced, which its ``stop`` does
    not read: read it here, or its finaliser logs it later at a random point."""
    task = getattr(getattr(producer, "_sender", None), "_sender_task", None)
    if isinstance(task, asyncio.Future) and task.done() and not task.cancelled():
        error = task.exception()
        if error is not None:
            logger.info("the stopped producer's sender had ended with %r", error)
