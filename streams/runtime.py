"""The one stage runtime: consume a batch → ``process`` → send → commit, for every agent.

A stage is a :class:`StageHandler` (a pure ``process(batch) -> Outputs`` plus optional hooks); the
loop below runs it as a task of the worker's Faust app (same process, lifecycle, signals and
logging) with its own aiokafka consumer group ``<app_id>-<stage>``:

1. ``getmany`` a micro-batch (paused partitions excluded);
2. ``process(batch)`` → :class:`~prodcat.streams.stage.Outputs`; transient errors (broker, registry,
   model server, vector store) are retried with back-off (:func:`with_backoff`); any other
   exception isolates the breaking record by bisection (:mod:`prodcat.streams.bisection`) and
   dead-letters it as ``internal_error``, so a bug neither loses the batch nor crash-loops;
3. send every output; wait until the broker has acknowledged all of them;
4. commit, per partition, the offsets below the oldest input the stage still holds
   (``Outputs.held``), or past the batch when it holds none: at-least-once;
5. ``on_tick(now)`` (windows, job checks, held inputs that are ready), sent and committed the same way.

**Deferred inputs.** A stage may hold inputs unanswered; a later ``on_tick`` or ``process`` answers
them (an output whose ``source`` names the input, or ``Outputs.released``). Held inputs are not
committed, so a crash re-delivers them. On a rebalance the runtime forgets the revoked partitions'
progress and calls ``on_revoked(partitions)``: the stage drops what it holds of them (their new
owner re-reads them). **Bound**: a partition with ``max_pending`` held inputs is paused
(``consumer.pause``) until the stage releases some.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence, Set
from typing import Any, TypeVar

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    RebalanceInProgressError,
)

from prodcat.core.errors import TransientError
from prodcat.core.kafka_config import aiokafka_config
from prodcat.core.metrics import StageMetrics
from prodcat.core.settings import Settings
from prodcat.streams.batch_sender import BatchSender
from prodcat.streams.bisection import bisect_async
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.offsets import PartitionProgress, Progress
from prodcat.streams.stage import Input, Outputs, header_map, record_batch, source_headers
from prodcat.streams.topics import DEADLETTER_MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0
#: Errors of a commit whose partitions moved (or are moving) to another consumer.
COMMIT_REBALANCED = (CommitFailedError, RebalanceInProgressError, IllegalStateError)


class StageHandler:
    """A stage as the runtime sees it. Override :meth:`process`; the other hooks are optional."""

    #: Held inputs per partition at which the runtime stops fetching that partition.
    max_pending: int = 10_000

    def __init__(self, name: str, topic: str, dead_letters: DeadLetters) -> None:
        self.name = name
        self.topic = topic
        self.dead_letters = dead_letters

    def process(self, batch: Sequence[Input]) -> Outputs | Awaitable[Outputs]:
        """The outputs of ``batch`` (records in offset order per partition). Raise only
        TransientErrors for outages; a record the stage cannot use is a dead letter."""
        raise NotImplementedError

    def on_tick(self, now: float) -> Outputs | Awaitable[Outputs | None] | None:
        """Called after every poll (at least every ``batch_within_s``) with ``time.time()``."""
        return None

    def on_revoked(self, partitions: Set[TopicPartition]) -> None:
        """Drop what the stage holds of ``partitions``: another consumer re-reads them."""

    async def start(self) -> None:
        """Before the consumer joins its group (e.g. rebuild state, open HTTP sessions)."""

    async def stop(self) -> None:
        """After the consumer left its group (the worker stopping)."""

    def observe(
        self, metrics: StageMetrics, outputs: Outputs, seconds: float, oldest_ts: float | None
    ) -> None:
        """Count a call's outputs (default: one input per output; see ``record_batch``)."""
        record_batch(metrics, outputs, seconds, oldest_ts)


def stage_consumer(settings: Settings, stage: str, **overrides: Any) -> AIOKafkaConsumer:
    """A stage's consumer: its own group ``<app_id>-<stage>``, manual commits, from the earliest
    offset, the worker's session timeouts and batch size (``overrides`` for the rest)."""
    worker = settings.worker
    options: dict[str, Any] = {
        "group_id": f"{worker.app_id}-{stage}",
        "client_id": f"{worker.app_id}-{stage}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": int(worker.session_timeout_s * 1000),
        "heartbeat_interval_ms": int(worker.heartbeat_interval_s * 1000),
        "max_poll_records": worker.batch_size,
    }
    return AIOKafkaConsumer(**aiokafka_config(settings.kafka), **{**options, **overrides})


def stage_producer(settings: Settings, stage: str) -> AIOKafkaProducer:
    """The idempotent, acks=all producer a stage sends its outputs with."""
    return AIOKafkaProducer(
        **aiokafka_config(settings.kafka),
        acks="all",
        enable_idempotence=True,
        max_batch_size=1_000_000,
        max_request_size=DEADLETTER_MAX_MESSAGE_BYTES + 1_000_000,
        client_id=f"{settings.worker.app_id}-{stage}",
    )


async def with_backoff(stage: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """Retry through outages of the broker, registry, model server or vector store."""
    delay = RETRY_INITIAL_S
    while True:
        try:
            return await attempt()
        except (KafkaError, TransientError) as exc:
            logger.warning("%s: batch failed (%s); retrying in %.1fs", stage, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


async def _maybe_await(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await value
    return value


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, runtime: StageRuntime) -> None:
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.runtime.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.runtime.progress.assign(assigned)
        self.runtime.metrics.ready.set(1)


class StageRuntime:
    """Runs one :class:`StageHandler` over its topic until cancelled (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        stage: StageHandler,
        metrics: StageMetrics,
        *,
        batch_size: int | None = None,
        within_s: float | None = None,
    ) -> None:
        worker = settings.worker
        self.stage = stage
        self.metrics = metrics
        self.batch_size = batch_size or worker.batch_size
        self.within_s = within_s or worker.batch_within_s
        self.consumer = stage_consumer(
            settings,
            stage.name,
            max_poll_records=self.batch_size,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            fetch_max_wait_ms=int(self.within_s * 1000),
        )
        self.producer = stage_producer(settings, stage.name)
        self.sender = BatchSender(self.producer)
        self.progress = Progress()
        self.paused: set[TopicPartition] = set()

    async def run(self) -> None:
        await self.stage.start()
        try:
            self.consumer.subscribe([self.stage.topic], listener=_Listener(self))
            await self.producer.start()
            await self.consumer.start()
            timeout_ms = int(self.within_s * 1000)
            while True:
                fetched = await self.consumer.getmany(
                    timeout_ms=timeout_ms, max_records=self.batch_size
                )
                if fetched:
                    await self._batch(fetched)
                await self._tick()
        finally:
            await self.consumer.stop()
            await self.producer.stop()
            await self.stage.stop()

    def revoked(self, partitions: set[TopicPartition]) -> None:
        self.progress.revoke(partitions)
        self.paused -= partitions
        self.stage.on_revoked(partitions)

    async def _batch(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        started = time.perf_counter()
        owners = self.progress.snapshot(fetched)
        records = [m for messages in fetched.values() for m in messages]
        outputs = await self.process(records)
        await self._send(outputs)
        for tp, messages in fetched.items():
            part = owners.get(tp)
            if part is not None:
                self.progress.consumed(part, messages[-1].offset + 1)
        await self._settle(outputs, owners)
        oldest = min((r.timestamp for r in records if r.timestamp), default=None)
        self.stage.observe(
            self.metrics, outputs, time.perf_counter() - started, oldest / 1000 if oldest else None
        )
        assigned = self.consumer.assignment()
        for tp, messages in fetched.items():
            if tp in assigned:  # highwater() asserts the partition is (still) ours
                next_offset = messages[-1].offset + 1
                highwater = self.consumer.highwater(tp)
                self.metrics.set_lag(tp.topic, tp.partition, highwater, next_offset)

    async def process(self, batch: Sequence[Input]) -> Outputs:
        """The stage's outputs for ``batch``; a record that makes ``process`` raise (other than a
        transient error, which is retried) is isolated and dead-lettered as ``internal_error``."""

        async def attempt(part: Sequence[Input]) -> Outputs:
            return await with_backoff(
                self.stage.name, lambda: _maybe_await(self.stage.process(part))
            )

        return await bisect_async(
            batch, attempt, failure=Exception, isolate=self._internal_error, combine=Outputs.merge
        )

    def _internal_error(self, record: Input, exc: Exception) -> Outputs:
        headers = header_map(record.headers)
        out_headers, feed = source_headers(headers, record.topic, record.partition, record.offset)
        message = f"{type(exc).__name__}: {exc}"
        logger.error(
            "%s: processing %s/%d/%d failed unexpectedly",
            self.stage.name,
            record.topic,
            record.partition,
            record.offset,
            exc_info=exc,
        )
        now_ms = time.time_ns() // 1_000_000
        letter = self.stage.dead_letters.outgoing(
            record, headers, out_headers, feed, "internal_error", message, now_ms
        )
        return Outputs(dead=[letter])

    async def _tick(self) -> None:
        started = time.perf_counter()
        stage = self.stage
        try:
            outputs = await with_backoff(
                stage.name, lambda: _maybe_await(stage.on_tick(time.time()))
            )
        except Exception:
            logger.exception("%s: on_tick failed; trying again at the next tick", stage.name)
            return
        if outputs is None:
            return
        await self._send(outputs)
        await self._settle(outputs, {})
        if len(outputs):
            stage.observe(self.metrics, outputs, time.perf_counter() - started, None)

    async def _send(self, outputs: Outputs) -> None:
        if len(outputs):
            await with_backoff(self.stage.name, lambda: self.sender.send_all(outputs))

    async def _settle(
        self, outputs: Outputs, owners: dict[TopicPartition, PartitionProgress]
    ) -> None:
        """Note held and answered inputs, commit what may be committed, pause or resume."""
        progress = self.progress
        for pos in outputs.held:
            progress.hold(owners, pos)
        if progress.held_total:
            for out in outputs:
                if out.source is not None:
                    progress.release(out.source)
        for pos in outputs.released:
            progress.release(pos)
        await self._commit()
        self._pause_over_limit()

    async def _commit(self) -> None:
        offsets = self.progress.to_commit()
        if not offsets:
            return
        assigned = self.consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        try:
            await self.consumer.commit(offsets)
        except COMMIT_REBALANCED as exc:
            # The partitions moved; their new owner re-processes from the last commit.
            logger.warning(
                "%s: commit after a rebalance failed (%s); outputs may repeat", self.stage.name, exc
            )
            return
        self.progress.committed(offsets)

    def _pause_over_limit(self) -> None:
        over = self.progress.over(self.stage.max_pending)
        pause, resume = over - self.paused, self.paused - over
        if pause:
            logger.info(
                "%s: holding %d inputs; pausing %s",
                self.stage.name,
                self.progress.held_total,
                pause,
            )
            self.consumer.pause(*pause)
        if resume:
            self.consumer.resume(*resume)
        self.paused = over


def register_stage(
    app: faust.App,
    settings: Settings,
    metrics: StageMetrics,
    stage: StageHandler,
    *,
    batch_size: int | None = None,
    within_s: float | None = None,
) -> Any:
    """Run ``stage`` as a task of ``app`` (the worker's Faust app)."""

    async def consume() -> None:
        runtime = StageRuntime(settings, stage, metrics, batch_size=batch_size, within_s=within_s)
        await runtime.run()

    consume.__name__ = f"{stage.name}_stage"
    return app.task(consume)
