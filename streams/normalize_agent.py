"""The normalisation agent: ``products.raw`` (bytes, any JSON) → ``products.normalized`` (Avro).

The agent is thin: it takes micro-batches of raw events, turns each into an outgoing record with
``NormalizeStage.process`` (pure, testable without Kafka), sends them all, and waits until the broker
has acknowledged every output before the batch's input offsets are acked. A crash therefore replays
at most the unacknowledged batch (at-least-once): every input ends as a product or a dead letter.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust

from prodcat.settings import Settings, TopicNames
from schemas.exceptions import RegistryError, SerdeError
from schemas.serde import AvroSerde, serde_for
from streams.batch_consumer import handle_and_send, run_batches, stage_producer, with_backoff
from streams.batch_sender import BatchSender
from streams.deadletter import dead_letter
from streams.exceptions import NormalizationError
from streams.metrics import StageMetrics
from streams.normalize import normalize_event

logger = logging.getLogger(__name__)

STAGE = "normalize"
#: Header on every output naming the input it came from: ``topic/partition/offset``.
SOURCE_HEADER = "prodcat-source"
FEED_HEADER = "feed"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to send for one input: a product, or a dead letter with its reason."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    feed: str | None
    error_kind: str | None


def header_map(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
) -> dict[str, bytes]:
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {str(k): bytes(v) if v is not None else b"" for k, v in items}


class NormalizeStage:
    """Turns one raw input message into its outgoing record.

    Never raises because of the input; only an unreachable schema registry (RegistryError) escapes.
    """

    def __init__(
        self,
        topics: TopicNames,
        products: AvroSerde,
        dead_letters: AvroSerde,
        worker: str | None = None,
    ) -> None:
        self.topics = topics
        self.products = products
        self.dead_letters = dead_letters
        self.worker = worker

    def process(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
        topic: str,
        partition: int,
        offset: int,
        now_ms: int,
    ) -> Outgoing:
        hdrs = header_map(headers)
        feed_raw = hdrs.get(FEED_HEADER)
        feed = feed_raw.decode("utf-8", "replace") if feed_raw else None
        source = (SOURCE_HEADER, f"{topic}/{partition}/{offset}".encode())
        out_headers: Headers = [source]
        if feed_raw:
            out_headers.append((FEED_HEADER, feed_raw))
        try:
            product = normalize_event(value or b"", feed=feed, key=key, seen_at_ms=now_ms)
            encoded = self.products.encode(product)
        except NormalizationError as exc:
            kind, message = exc.kind, str(exc)
        except RegistryError:
            raise  # infrastructure, not input: the batch is retried, nothing is dead-lettered
        except SerdeError as exc:
            kind, message = "encode_error", str(exc)
            logger.error(
                "normalised record failed its schema at %s/%d/%d: %s", topic, partition, offset, exc
            )
        except Exception as exc:  # a bug must not stop the stream: dead-letter and log it
            kind, message = "internal_error", f"{type(exc).__name__}: {exc}"
            logger.exception(
                "normalisation failed unexpectedly at %s/%d/%d", topic, partition, offset
            )
        else:
            return Outgoing(
                self.topics.normalized,
                product["product_id"].encode(),
                encoded,
                out_headers,
                feed,
                None,
            )
        record = dead_letter(
            stage=STAGE,
            error_kind=kind,
            message=message,
            key=key,
            value=value,
            headers=hdrs,
            feed=feed,
            topic=topic,
            partition=partition,
            offset=offset,
            worker=self.worker,
            now_ms=now_ms,
        )
        return Outgoing(
            self.topics.deadletter, key, self.dead_letters.encode(record), out_headers, feed, kind
        )


def build_stage(settings: Settings) -> NormalizeStage:
    registry = settings.serde.registry_url
    return NormalizeStage(
        settings.topics,
        serde_for("Product", registry, topic=settings.topics.normalized),
        serde_for("DeadLetter", registry, topic=settings.topics.deadletter),
        worker=f"{socket.gethostname()}:{settings.worker.app_id}",
    )


def register_normalize(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    """Declare normalisation on ``app``: a batch-consumer task, or a Faust agent (settings)."""
    stage = build_stage(settings)

    def handle(records: Sequence[Any]) -> Sequence[Outgoing]:
        """aiokafka ConsumerRecords or Faust Messages (same attribute names) → outputs."""
        now_ms = time.time_ns() // 1_000_000
        return [
            stage.process(
                key=r.key,
                value=r.value,
                headers=r.headers,
                topic=r.topic,
                partition=r.partition,
                offset=r.offset,
                now_ms=now_ms,
            )
            for r in records
        ]

    if settings.worker.consumer == "batch":

        async def normalize_batches() -> None:
            await run_batches(
                settings,
                stage=STAGE,
                topic=settings.topics.raw,
                handle=handle,
                observe=lambda out, secs, oldest: _record(metrics, out, secs, oldest),
                metrics=metrics,
            )

        return app.task(normalize_batches)
    return _register_agent(app, settings, metrics, handle)


def _register_agent(
    app: faust.App,
    settings: Settings,
    metrics: StageMetrics,
    handle: Callable[[Sequence[Any]], Sequence[Outgoing]],
) -> Any:
    source = app.topic(settings.topics.raw, key_serializer="raw", value_serializer="raw")
    batch_size, within = settings.worker.batch_size, settings.worker.batch_within_s

    async def _ready(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        metrics.ready.set(1)

    app.on_partitions_assigned.connect(_ready)

    async def normalize(stream: Any) -> None:
        producer = stage_producer(settings, STAGE)
        await producer.start()
        sender = BatchSender(producer)
        try:
            async for events in stream.take_events(batch_size, within):
                started = time.perf_counter()
                messages = [event.message for event in events]
                # Outputs must be durable before take_events acks the inputs of this batch.
                outgoing = await with_backoff(
                    STAGE, functools.partial(handle_and_send, handle, sender, messages)
                )
                oldest = min((m.timestamp for m in messages if m.timestamp), default=None)
                _record(metrics, outgoing, time.perf_counter() - started, oldest)
                next_offsets = {m.tp: m.offset + 1 for m in messages}
                for tp, next_offset in next_offsets.items():
                    metrics.set_lag(tp.topic, tp.partition, app.consumer.highwater(tp), next_offset)
        finally:
            await producer.stop()

    return app.agent(source, name=STAGE)(normalize)


def _record(
    metrics: StageMetrics, outgoing: Sequence[Outgoing], seconds: float, oldest_ts: float | None
) -> None:
    counts: dict[tuple[str, str | None], int] = {}
    for out in outgoing:
        slot = (metrics.feed_label(out.feed), out.error_kind)
        counts[slot] = counts.get(slot, 0) + 1
    for (feed, kind), count in counts.items():
        metrics.events_in.labels(STAGE, feed).inc(count)
        if kind is None:
            metrics.events_out.labels(STAGE, feed).inc(count)
        else:
            metrics.dead_letters.labels(STAGE, feed, kind).inc(count)
    metrics.batch_seconds.observe(seconds)
    metrics.batch_size.observe(len(outgoing))
    if oldest_ts is not None:
        metrics.event_latency.observe(max(0.0, time.time() - oldest_ts))
