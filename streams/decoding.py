"""Decoding a micro-batch of Avro records once, for every stage that consumes a typed topic.

Each consumed record becomes a :class:`Decoded` (a tombstone has ``value`` None) or, when its bytes
do not decode, a dead letter (``decode_error``) at its index. An unreachable schema registry is not
the record's fault: :class:`~prodcat.schemas.exceptions.RegistryError` propagates and the batch is retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prodcat.schemas.exceptions import RegistryError, SerdeError
from prodcat.schemas.serde import AvroSerde, decode_as
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.stage import Headers, Outgoing, header_map, position, source_headers

R = TypeVar("R")


@dataclass(slots=True)
class Decoded(Generic[R]):
    """One consumed record: where it came from, and its value (None for a tombstone), an ``R``
    of :mod:`prodcat.schemas.records`."""

    index: int
    record: Any
    headers: dict[str, bytes]
    out_headers: Headers
    feed: str | None
    value: R | None

    def output(
        self, topic: str | None, value: bytes | None = None, *, skipped: str | None = None
    ) -> Outgoing:
        """This record's output under its own key and source headers (``topic`` None: consumed
        without a Kafka record, e.g. written to Milvus, or ``skipped`` for a reason)."""
        return Outgoing(
            topic,
            self.record.key,
            value,
            self.out_headers,
            self.feed,
            None,
            skipped,
            position(self.record),
        )

    def dead(self, dead_letters: DeadLetters, kind: str, message: str, now_ms: int) -> Outgoing:
        return dead_letters.outgoing(
            self.record, self.headers, self.out_headers, self.feed, kind, message, now_ms
        )


def decode_records(
    records: Sequence[Any],
    serde: AvroSerde,
    dead_letters: DeadLetters,
    now_ms: int,
    record_type: type[R],
) -> tuple[list[Decoded[R]], dict[int, Outgoing]]:
    """The records that decode (or are tombstones), and dead letters by index for the others.

    ``record_type`` is the TypedDict of ``serde``'s record (:func:`~prodcat.schemas.decode_as`).
    """
    decoded: list[Decoded[R]] = []
    dead: dict[int, Outgoing] = {}
    for i, record in enumerate(records):
        headers = header_map(record.headers)
        out_headers, feed = source_headers(headers, record.topic, record.partition, record.offset)
        item: Decoded[R] = Decoded(i, record, headers, out_headers, feed, None)
        if record.value is not None:
            try:
                item.value = decode_as(serde, record.value, record_type)
            except RegistryError:
                raise
            except SerdeError as exc:
                dead[i] = item.dead(dead_letters, "decode_error", str(exc), now_ms)
                continue
        decoded.append(item)
    return decoded, dead
