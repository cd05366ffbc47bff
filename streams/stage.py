"""What every stage shares: the outgoing record, metrics accounting, and how it consumes.

A stage is a ``handle(records) -> outputs`` function (sync, or async for stages that do I/O such as
fetching images) over micro-batches of consumer records. ``register_stage`` runs it either as a
batch-consumer task (``prodcat.streams.batch_consumer``) or as a Faust agent over ``stream.take_events``,
as ``WorkerSettings.consumer`` says; in both, a batch's input offsets are committed or acked only
after every one of its outputs is acknowledged by the broker (at-least-once).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust

from prodcat.core.metrics import StageMetrics
from prodcat.core.settings import Settings
from prodcat.streams.batch_consumer import (
    handle_and_send,
    run_batches,
    stage_producer,
    with_backoff,
)
from prodcat.streams.batch_sender import BatchSender

#: Header on every output naming the input it came from: ``topic/partition/offset``.
SOURCE_HEADER = "prodcat-source"
FEED_HEADER = "feed"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to send for one input: a result, a dead letter (``error_kind`` set), or nothing.

    ``topic`` None means the input was consumed without a Kafka output (e.g. a vector written to
    Milvus, or a product without images); it is still counted.
    """

    topic: str | None
    key: bytes | None
    value: bytes | None
    headers: Headers
    feed: str | None
    error_kind: str | None
    skipped: str | None = None


def header_map(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
) -> dict[str, bytes]:
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {str(k): bytes(v) if v is not None else b"" for k, v in items}


def source_headers(
    headers: Mapping[str, bytes], topic: str, partition: int, offset: int
) -> tuple[Headers, str | None]:
    """Output headers (source position, feed passed through) and the feed name."""
    out: Headers = [(SOURCE_HEADER, f"{topic}/{partition}/{offset}".encode())]
    feed_raw = headers.get(FEED_HEADER)
    if feed_raw:
        out.append((FEED_HEADER, feed_raw))
    return out, feed_raw.decode("utf-8", "replace") if feed_raw else None


Handle = Callable[[Sequence[Any]], Sequence[Outgoing] | Awaitable[Sequence[Outgoing]]]


def register_stage(
    app: faust.App,
    settings: Settings,
    metrics: StageMetrics,
    *,
    stage: str,
    topic: str,
    handle: Handle,
    batch_size: int | None = None,
    within_s: float | None = None,
) -> Any:
    """Run ``handle`` over ``topic`` in this worker: a batch-consumer task or a Faust agent."""
    size = batch_size or settings.worker.batch_size
    within = within_s or settings.worker.batch_within_s
    if settings.worker.consumer == "batch":

        async def consume_batches() -> None:
            await run_batches(
                settings,
                stage=stage,
                topic=topic,
                handle=handle,
                observe=functools.partial(record_batch, metrics),
                metrics=metrics,
                batch_size=size,
                within_s=within,
            )

        consume_batches.__name__ = f"{stage}_batches"
        return app.task(consume_batches)

    source = app.topic(topic, key_serializer="raw", value_serializer="raw")

    async def _ready(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        metrics.ready.set(1)

    app.on_partitions_assigned.connect(_ready)

    async def consume(stream: Any) -> None:
        producer = stage_producer(settings, stage)
        await producer.start()
        sender = BatchSender(producer)
        try:
            async for events in stream.take_events(size, within):
                started = time.perf_counter()
                messages = [event.message for event in events]
                # Outputs must be durable before take_events acks the inputs of this batch.
                outgoing = await with_backoff(
                    stage, functools.partial(handle_and_send, handle, sender, messages)
                )
                oldest = min((m.timestamp for m in messages if m.timestamp), default=None)
                record_batch(metrics, outgoing, time.perf_counter() - started, oldest)
                next_offsets = {m.tp: m.offset + 1 for m in messages}
                for tp, next_offset in next_offsets.items():
                    metrics.set_lag(tp.topic, tp.partition, app.consumer.highwater(tp), next_offset)
        finally:
            await producer.stop()

    return app.agent(source, name=stage)(consume)


def record_batch(
    metrics: StageMetrics, outgoing: Sequence[Outgoing], seconds: float, oldest_ts: float | None
) -> None:
    """Count a processed batch: inputs, outputs, dead letters by reason, skips, latency."""
    stage = metrics.stage
    counts: dict[tuple[str, str | None, str | None], int] = {}
    for out in outgoing:
        slot = (metrics.feed_label(out.feed), out.error_kind, out.skipped)
        counts[slot] = counts.get(slot, 0) + 1
    for (feed, kind, skipped), count in counts.items():
        metrics.events_in.labels(stage, feed).inc(count)
        if kind is not None:
            metrics.dead_letters.labels(stage, feed, kind).inc(count)
        elif skipped is not None:
            metrics.skipped.labels(stage, skipped).inc(count)
        else:
            metrics.events_out.labels(stage, feed).inc(count)
    metrics.batch_seconds.observe(seconds)
    metrics.batch_size.observe(len(outgoing))
    if oldest_ts is not None:
        metrics.event_latency.observe(max(0.0, time.time() - oldest_ts))
