"""Dead-letter records: the original bytes, where they came from, and why they were rejected."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
) -> dict[str, Any]:
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
