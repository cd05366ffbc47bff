"""Batch consumption for a stage: aiokafka ``getmany`` → handle a micro-batch → send → commit.

Runs as a task of the worker's Faust app (same process, lifecycle, signals and logging) with its own
consumer group ``<app_id>-<stage>``. Offsets are committed only after every output of the batch is
acknowledged by the broker, so a crash replays at most the uncommitted batches (at-least-once).
Compared with a Faust agent over ``stream.take_events``, it skips Faust's per-event machinery
(conductor, ``Event`` objects, stream processors, the consumer thread): see docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError

from prodcat.core.errors import TransientError
from prodcat.core.kafka_config import aiokafka_config
from prodcat.core.metrics import StageMetrics
from prodcat.core.settings import Settings
from prodcat.streams.batch_sender import BatchSender, OutgoingRecord
from prodcat.streams.topics import DEADLETTER_MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

Out = TypeVar("Out", bound=OutgoingRecord)
Out_co = TypeVar("Out_co")
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0


class ReadyListener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    """Sets the stage's ready gauge once the group has assigned it partitions."""

    def __init__(self, metrics: StageMetrics) -> None:
        self.metrics = metrics

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.metrics.ready.set(1)


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


async def run_batches(
    settings: Settings,
    *,
    stage: str,
    topic: str,
    handle: Callable[[Sequence[Any]], Sequence[Out] | Awaitable[Sequence[Out]]],
    observe: Callable[[Sequence[Out], float, float | None], None],
    metrics: StageMetrics,
    batch_size: int | None = None,
    within_s: float | None = None,
) -> None:
    """Consume ``topic`` in micro-batches until cancelled (the worker stopping)."""
    worker = settings.worker
    batch_size = batch_size or worker.batch_size
    within_s = within_s or worker.batch_within_s
    consumer = stage_consumer(
        settings,
        stage,
        max_poll_records=batch_size,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        fetch_max_wait_ms=int(within_s * 1000),
    )
    producer = stage_producer(settings, stage)
    consumer.subscribe([topic], listener=ReadyListener(metrics))
    await producer.start()
    await consumer.start()
    sender = BatchSender(producer)
    timeout_ms = int(within_s * 1000)
    try:
        while True:
            fetched = await consumer.getmany(timeout_ms=timeout_ms, max_records=batch_size)
            if not fetched:
                continue
            started = time.perf_counter()
            records = [m for messages in fetched.values() for m in messages]
            outgoing = await with_backoff(
                stage, functools.partial(handle_and_send, handle, sender, records)
            )
            offsets = {tp: messages[-1].offset + 1 for tp, messages in fetched.items()}
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, RebalanceInProgressError) as exc:
                # The partitions moved; their new owner re-processes from the last commit.
                logger.warning("commit after a rebalance failed (%s); outputs may repeat", exc)
            oldest = min((r.timestamp for r in records if r.timestamp), default=None)
            observe(outgoing, time.perf_counter() - started, oldest / 1000 if oldest else None)
            for tp, next_offset in offsets.items():
                metrics.set_lag(tp.topic, tp.partition, consumer.highwater(tp), next_offset)
    finally:
        await consumer.stop()
        await producer.stop()


async def handle_and_send(
    handle: Callable[[Sequence[Any]], Sequence[Out] | Awaitable[Sequence[Out]]],
    sender: BatchSender,
    records: Sequence[Any],
) -> Sequence[Out]:
    """Turn a micro-batch into outputs and send them; returns once all are acknowledged."""
    result = handle(records)
    outgoing = await result if inspect.isawaitable(result) else result
    await sender.send_all(out for out in outgoing if out.topic is not None)
    return outgoing


async def with_backoff(stage: str, attempt: Callable[[], Awaitable[Out_co]]) -> Out_co:
    """Retry a batch through outages of the broker, registry, model server or vector store."""
    delay = RETRY_INITIAL_S
    while True:
        try:
            return await attempt()
        except (KafkaError, TransientError) as exc:
            logger.warning("%s: batch failed (%s); retrying in %.1fs", stage, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
