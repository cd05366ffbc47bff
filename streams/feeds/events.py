"""Raw product events: the JSON object in the bytes, or the dead-letter reason why not.

orjson parses the common case; anything it rejects is parsed again with :mod:`json` to tell
the reason apart (``not_utf8``, ``empty``, ``not_json``), with a UTF-8 BOM skipped and integers
of any size accepted, as :func:`prodcat.streams.normalize.normalize_event` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from prodcat.streams.exceptions import NormalizationError

__all__ = ["MAX_EVENT_BYTES", "is_blank", "json_type", "parse_event"]

MAX_EVENT_BYTES: Final = 1_000_000
_MAX_BLANK_NODES: Final = 10_000

try:
    import orjson

    _fast_loads: Callable[[bytes | bytearray | memoryview], Any] | None = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = None


def _big_int(digits: str) -> int | float:
    return int(digits) if len(digits) <= 4000 else float(digits)


def _slow_parse(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NormalizationError("not_utf8", f"invalid UTF-8 at byte {exc.start}") from exc
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise NormalizationError("empty", "empty payload")
    try:
        return json.loads(text, parse_int=_big_int)
    except json.JSONDecodeError as exc:
        message = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise NormalizationError("not_json", message) from exc
    except RecursionError as exc:
        raise NormalizationError("invalid", "JSON nested too deeply") from exc
    except ValueError as exc:
        raise NormalizationError("invalid", "JSON cannot be read") from exc


def parse_event(raw: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The JSON object in a raw event; :class:`NormalizationError` for anything else."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise NormalizationError("invalid", f"expected bytes, got {type(raw).__name__}")
    if len(raw) > MAX_EVENT_BYTES:
        raise NormalizationError("too_large", f"{len(raw)} bytes (limit {MAX_EVENT_BYTES})")
    data: Any
    try:
        if _fast_loads is None:
            raise ValueError("no orjson")
        data = _fast_loads(raw)
    except (ValueError, TypeError):
        data = _slow_parse(bytes(raw))
    if not isinstance(data, dict):
        raise NormalizationError("not_object", f"JSON {json_type(data)} is not an object")
    return data


_JSON_TYPES: Final = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (``object``, ``array``, ``number``, ...)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def is_blank(value: Any) -> bool:
    """Whether a value holds no non-blank scalar (bounded: a huge value counts as non-blank)."""
    stack, nodes = [value], 0
    while stack:
        nodes += 1
        if nodes > _MAX_BLANK_NODES:
            return False
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if item.strip():
                return False
        elif item is not None:
            return False
    return True
