"""What every stage shares: input positions, the outgoing record, a call's outputs, metrics accounting.

A stage turns a micro-batch of consumed records into :class:`Outputs` (results and dead letters as two
lists, bytewax-style, plus the inputs it holds back for now); :mod:`prodcat.streams.runtime` runs it:
consume → process → send → commit after every send is acknowledged (at-least-once).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from prodcat.core.metrics import StageMetrics

#: Header on every output naming the input it came from: ``topic/partition/offset``.
SOURCE_HEADER = "prodcat-source"
FEED_HEADER = "feed"

Headers = list[tuple[str, bytes]]


class Position(NamedTuple):
    """Where a consumed record lies: the input an output answers, or one a stage holds back."""

    topic: str
    partition: int
    offset: int


class Input(Protocol):
    """A consumed record (aiokafka ``ConsumerRecord`` has these attributes); nothing here depends
    on one client's classes."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...
    @property
    def timestamp(self) -> int | None: ...


def position(record: Input) -> Position:
    return Position(record.topic, record.partition, record.offset)


@dataclass(slots=True)
class Outgoing:
    """One record to send for one input: a result, a dead letter (``error_kind`` set), or nothing.

    ``topic`` None means the input was consumed without a Kafka output (e.g. a vector written to
    Milvus, or a product without images); it is still counted. ``source`` names the input it
    answers (None for an output of no single input, e.g. an annotation request of a window).
    Treat it as immutable: it is not declared frozen because a frozen dataclass is built four times
    slower, and stages build one per input.
    """

    topic: str | None
    key: bytes | None
    value: bytes | None
    headers: Headers
    feed: str | None
    error_kind: str | None
    skipped: str | None = None
    source: Position | None = None


@dataclass(slots=True)
class Outputs:
    """What one ``process`` or ``on_tick`` call produced.

    ``oks`` and ``dead`` are sent (dead letters are the ones with ``error_kind``). ``held`` are
    inputs of this call left unanswered for now: their offsets are not committed until a later call
    answers them, with an output whose ``source`` names them or by listing them in ``released``
    (finished with nothing to send). Every other input of a ``process`` call counts as answered.
    """

    oks: list[Outgoing] = field(default_factory=list)
    dead: list[Outgoing] = field(default_factory=list)
    held: list[Position] = field(default_factory=list)
    released: list[Position] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        outgoing: Iterable[Outgoing],
        *,
        held: Iterable[Position] = (),
        released: Iterable[Position] = (),
    ) -> Outputs:
        """Split ``outgoing`` into results and dead letters."""
        out = cls(held=list(held), released=list(released))
        for record in outgoing:
            (out.oks if record.error_kind is None else out.dead).append(record)
        return out

    def __iter__(self) -> Iterator[Outgoing]:
        yield from self.oks
        yield from self.dead

    def __len__(self) -> int:
        return len(self.oks) + len(self.dead)

    def merge(self, other: Outputs) -> Outputs:
        return Outputs(
            self.oks + other.oks,
            self.dead + other.dead,
            self.held + other.held,
            self.released + other.released,
        )


def header_map(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
) -> dict[str, bytes]:
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {str(k): bytes(v) if v is not None else b"" for k, v in items}


def source_headers(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
    topic: str,
    partition: int,
    offset: int,
) -> tuple[Headers, str | None]:
    """Output headers (source position, feed passed through) and the feed name. ``headers`` is
    a :func:`header_map` or the record's own pairs (read without building a map: the last
    ``feed`` header wins, as in the map)."""
    out: Headers = [(SOURCE_HEADER, f"{topic}/{partition}/{offset}".encode())]
    feed_raw: bytes | None = None
    if isinstance(headers, Mapping):
        feed_raw = headers.get(FEED_HEADER)
    elif headers:
        for name, value in headers:
            if name == FEED_HEADER:
                feed_raw = bytes(value) if value is not None else b""
    if feed_raw:
        out.append((FEED_HEADER, feed_raw))
    return out, feed_raw.decode("utf-8", "replace") if feed_raw else None


def record_batch(
    metrics: StageMetrics, outgoing: Iterable[Outgoing], seconds: float, oldest_ts: float | None
) -> None:
    """Count a processed batch: inputs, outputs, dead letters by reason, skips, latency."""
    stage = metrics.stage
    counts: dict[tuple[str | None, str | None, str | None], int] = {}
    total = 0
    for out in outgoing:
        slot = (out.feed, out.error_kind, out.skipped)
        counts[slot] = counts.get(slot, 0) + 1
        total += 1
    for (name, kind, skipped), count in counts.items():
        feed = metrics.feed_label(name)
        metrics.events_in.labels(stage, feed).inc(count)
        if kind is not None:
            metrics.dead_letters.labels(stage, feed, kind).inc(count)
        elif skipped is not None:
            metrics.skipped.labels(stage, skipped).inc(count)
        else:
            metrics.events_out.labels(stage, feed).inc(count)
    metrics.batch_seconds.observe(seconds)
    metrics.batch_size.observe(total)
    if oldest_ts is not None:
        metrics.event_latency.observe(max(0.0, time.time() - oldest_ts))
