"""Records as flat mappings of source paths to leaf values, and getters for those paths.

A source path names a leaf of a record. Keys are joined with ``.``; ``[]`` after a key steps
into a list of objects (its first element when flattening, each element for getters built with
``every=True``); ``{}`` after a key decodes the JSON (or Python-repr) text held in a string cell
(a CSV cell holding ``{"productUrl": ...}``). Characters that would be read as syntax are
escaped with a backslash. Examples: ``basic.productShortName``, ``prices[].salesPrice``,
``product_urls{}.absoluteProductUrl``, ``g:title``.

A leaf is a scalar (str, int, float, bool, None) or a list of scalars. Flattening is bounded in
depth and in leaves, so any record gives a small mapping.
"""

from __future__ import annotations

import ast
import enum
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = [
    "MAX_LEAVES",
    "Op",
    "Step",
    "decode_text",
    "flatten",
    "getter",
    "parse_path",
    "render_path",
    "top_key",
]

MAX_LEAVES: Final = 512
MAX_DEPTH: Final = 10
_MAX_DECODE: Final = 20_000
_MAX_ITEMS: Final = 64
_SPECIAL: Final = frozenset("\\.[{")

try:  # orjson is several times faster; json is the fallback
    import orjson

    def _loads(text: str) -> Any:
        return orjson.loads(text)

except ImportError:  # pragma: no cover - depends on the environment

    def _loads(text: str) -> Any:
        return json.loads(text)


class Op(enum.Enum):
    """A path step that is not a key."""

    ITEMS = "[]"
    DECODE = "{}"


Step = str | Op


def _escape(key: str) -> str:
    if not _SPECIAL.intersection(key):
        return key
    return "".join("\\" + char if char in _SPECIAL else char for char in key)


def render_path(steps: tuple[Step, ...]) -> str:
    """The text form of ``steps``."""
    parts: list[str] = []
    for step in steps:
        if isinstance(step, Op):
            parts.append(step.value)
        else:
            parts.append(("." if parts else "") + _escape(step))
    return "".join(parts)


def parse_path(path: str) -> tuple[Step, ...]:
    """The steps of a source path (the inverse of :func:`render_path`)."""
    steps: list[Step] = []
    key: list[str] = []
    pending = True  # a key is expected (at the start and after a dot)
    i = 0
    while i < len(path):
        char = path[i]
        if char == "\\" and i + 1 < len(path):
            key.append(path[i + 1])
            i += 2
            continue
        if char == "." and not key and not pending:
            pending = True
        elif char == ".":
            steps.append("".join(key))
            key, pending = [], True
        elif char in "[{" and path[i + 1 : i + 2] == ("]" if char == "[" else "}"):
            if key or pending:
                steps.append("".join(key))
            key, pending = [], False
            steps.append(Op.ITEMS if char == "[" else Op.DECODE)
            i += 1
        else:
            key.append(char)
        i += 1
    if key or pending:
        steps.append("".join(key))
    return tuple(steps)


def top_key(path: str) -> str:
    """The first key of a source path."""
    first = parse_path(path)[0]
    return first if isinstance(first, str) else ""


_LITERALS: dict[str, Any] = {}
_LITERALS_MAX: Final = 4096


def _literal(text: str) -> Any:
    """A Python-repr literal (slow to parse, so repeated cells are cached)."""
    if text in _LITERALS:
        return _LITERALS[text]
    try:
        decoded = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        decoded = None
    if len(text) <= 4096:
        if len(_LITERALS) >= _LITERALS_MAX:
            _LITERALS.clear()
        _LITERALS[text] = decoded
    return decoded


def decode_text(text: str) -> Any:
    """The list or object written as JSON or Python-repr text in ``text``, else None."""
    stripped = text.strip()
    if len(stripped) < 2 or len(stripped) > _MAX_DECODE:
        return None
    if not (
        (stripped[0] == "{" and stripped[-1] == "}") or (stripped[0] == "[" and stripped[-1] == "]")
    ):
        return None
    try:
        decoded = _loads(stripped)
    except ValueError:
        if "'" not in stripped:
            return None
        decoded = _literal(stripped)
    return decoded if isinstance(decoded, dict | list) else None


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


class _Flattener:
    def __init__(self, decode: bool, limit: int) -> None:
        self.out: dict[str, Any] = {}
        self.decode = decode
        self.limit = limit

    def visit(self, prefix: str, value: Any, depth: int) -> None:
        if len(self.out) >= self.limit:
            return
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                return
            for key, item in value.items():
                name = _escape(key) if isinstance(key, str) else str(key)
                self.visit(f"{prefix}.{name}" if prefix else name, item, depth + 1)
                if len(self.out) >= self.limit:
                    return
        elif isinstance(value, list):
            if not value:
                self.out[prefix] = []
            elif isinstance(value[0], dict):
                self.visit(prefix + "[]", value[0], depth + 1)
            elif not isinstance(value[0], list):
                self.out[prefix] = [item for item in value[:_MAX_ITEMS] if _scalar(item)]
        elif isinstance(value, str) and self.decode and value[:1] in "[{ " and value:
            decoded = decode_text(value)
            if decoded is None:
                self.out[prefix] = value
            else:
                self.visit(prefix + "{}", decoded, depth + 1)
        elif _scalar(value):
            self.out[prefix] = value


def flatten(
    record: Mapping[str, Any], *, decode: bool = True, max_leaves: int = MAX_LEAVES
) -> dict[str, Any]:
    """Source path -> leaf value for ``record``, in key order, at most ``max_leaves`` leaves.

    Lists of objects contribute their first element; with ``decode``, string cells holding JSON or
    Python-repr lists and objects are opened (``{}`` in the path).
    """
    flattener = _Flattener(decode, max_leaves)
    flattener.visit("", dict(record), 0)
    return flattener.out


def _step(value: Any, step: Step) -> Any:
    if step is Op.DECODE:
        if isinstance(value, str):
            decoded = decode_text(value)
            return value if decoded is None else decoded
        return value
    if step is Op.ITEMS:
        return value[0] if isinstance(value, list) and value else None
    return value.get(step) if isinstance(value, dict) else None


def _every(value: Any, steps: tuple[Step, ...], out: list[Any]) -> None:
    for index, step in enumerate(steps):
        if value is None:
            return
        if step is Op.ITEMS:
            if isinstance(value, list):
                for item in value[:_MAX_ITEMS]:
                    _every(item, steps[index + 1 :], out)
            return
        value = _step(value, step)
    if isinstance(value, list):
        out.extend(value[:_MAX_ITEMS])
    elif value is not None:
        out.append(value)


def getter(path: str, *, every: bool = False) -> Callable[[Mapping[str, Any]], Any]:
    """A function that reads ``path`` from a parsed record (None where it is absent).

    With ``every``, it returns a list of the leaf values under every element of every list on the
    way (a list leaf is spread into it).
    """
    steps = parse_path(path)
    if every:

        def get_every(record: Mapping[str, Any]) -> list[Any]:
            out: list[Any] = []
            _every(record, steps, out)
            return out

        return get_every
    if len(steps) == 1 and isinstance(steps[0], str):
        key = steps[0]

        def get_key(record: Mapping[str, Any]) -> Any:
            return record.get(key)

        return get_key
    if all(isinstance(step, str) for step in steps):
        keys = [step for step in steps if isinstance(step, str)]

        def get_keys(record: Mapping[str, Any]) -> Any:
            value: Any = record
            for key in keys:
                if not isinstance(value, dict):
                    return None
                value = value.get(key)
            return value

        return get_keys

    def get_path(record: Mapping[str, Any]) -> Any:
        value: Any = record
        for step in steps:
            value = _step(value, step)
            if value is None:
                return None
        return value

    return get_path
