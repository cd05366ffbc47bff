"""Dead-letter records: the original bytes, where they came from, and why they were rejected."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prodcat.schemas.records import DeadLetter
from prodcat.schemas.serde import AvroSerde, serde_for
from prodcat.streams.stage import Headers, Outgoing, Position

if TYPE_CHECKING:
    from prodcat.core.settings import Settings

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 2000


def dead_letter(
    *,
    stage: str,
    error_kind: str,
    message: str,
    key: bytes | None,
    value: bytes | None,
    headers: Mapping[str, bytes],
    feed: str | None,
    topic: str,
    partition: int,
    offset: int,
    worker: str | None,
    now_ms: int,
) -> DeadLetter:
    """A ``DeadLetter`` record (schemas/dead_letter.avsc) for one rejected input."""
    return {
        "stage": stage,
        "error_kind": error_kind,
        "message": message[:MAX_MESSAGE_CHARS],
        "original_key": key,
        "original_value": value,
        "original_headers": dict(headers),
        "feed": feed,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "worker": worker,
        "failed_at": now_ms,
    }


class DeadLetters:
    """Builds a stage's dead-letter outputs: the original message, where it came from, and why."""

    def __init__(self, topic: str, serde: AvroSerde, *, stage: str, worker: str | None) -> None:
        self.topic = topic
        self.serde = serde
        self.stage = stage
        self.worker = worker

    @classmethod
    def for_stage(cls, settings: Settings, stage: str) -> DeadLetters:
        """The dead letters of ``stage`` in this worker: the configured topic and framing, and
        the worker named ``<host>:<app id>``."""
        topic = settings.topics.deadletter
        return cls(
            topic,
            serde_for("DeadLetter", settings.serde.registry_url, topic=topic),
            stage=stage,
            worker=f"{socket.gethostname()}:{settings.worker.app_id}",
        )

    def outgoing(
        self,
        record: Any,
        headers: Mapping[str, bytes],
        out_headers: Headers,
        feed: str | None,
        kind: str,
        message: str,
        now_ms: int,
    ) -> Outgoing:
        """``record`` is an aiokafka ConsumerRecord or a Faust Message (same attribute names)."""
        logger.warning(
            "%s: dead-lettering %s/%d/%d (%s): %s",
            self.stage,
            record.topic,
            record.partition,
            record.offset,
            kind,
            message[:200],
        )
        value = dead_letter(
            stage=self.stage,
            error_kind=kind,
            message=message,
            key=record.key,
            value=record.value,
            headers=headers,
            feed=feed,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            worker=self.worker,
            now_ms=now_ms,
        )
        source = Position(record.topic, record.partition, record.offset)
        return Outgoing(
            self.topic, record.key, self.serde.encode(value), out_headers, feed, kind, None, source
        )
