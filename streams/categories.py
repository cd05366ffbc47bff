"""Category paths: delimited strings, JSON-ish list strings, lists, and nested category objects.

A delimited string is split on the strongest delimiter present, in the order ``>>``, ``>``,
the arrows U+203A, U+00BB and U+2192, ``|``, ``//``, ``/``. A slash is ambiguous ("T-Shirts/Tops"
is one level): when a string holds a spaced slash (``" / "``) only spaced slashes split it. A
list whose items hold delimiters is a list of paths and the first one is taken (e.g.
``["Clothing >> Women's Clothing >> ..."]``); otherwise its items are the levels. Levels are
cleaned like titles; empty levels are dropped and a path holds at most :data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any, Final

from prodcat.streams.fields import norm_key
from prodcat.streams.text import clean_text, truncate

__all__ = ["MAX_DEPTH", "compose_path", "parse_path"]

MAX_DEPTH: Final = 10
_MAX_LEVEL_LEN: Final = 256
_MAX_TEXT: Final = 10_000
_MAX_NESTING: Final = 3
_DELIMITERS: Final = (">>", ">", "\u203a", "»", "→", "|", "//")
_SPACED_SLASH: Final = " / "
_NAME_KEYS: Final = (
    "typename",
    "name",
    "displayname",
    "categoryname",
    "title",
    "label",
    "value",
    "text",
)
_PATH_KEYS: Final = ("path", "levels", "breadcrumbs", "categories", "items")
# Keys of nested category objects (Myntra's masterCategory/subCategory/articleType) and their
# place in a composed path, root first.
_COMPOSABLE: Final = re.compile(
    r"^(master|main|top|root|parent|primary|sub|subsub|secondary|tertiary|article|product|leaf)?"
    r"(category|categ|cat|type)(level)?(\d{0,2})$"
)
_LEVEL_RANK: Final = {
    "master": 0,
    "main": 0,
    "top": 0,
    "root": 0,
    "parent": 0,
    "primary": 0,
    "": 1,
    "sub": 2,
    "secondary": 2,
    "subsub": 3,
    "tertiary": 3,
    "article": 4,
    "product": 4,
    "leaf": 4,
}


def _levels(parts: list[str]) -> list[str]:
    levels: list[str] = []
    for part in parts:
        level = truncate(clean_text(part, compat=True), _MAX_LEVEL_LEN)
        if level:
            levels.append(level)
            if len(levels) == MAX_DEPTH:
                break
    return levels


def _delimiter(text: str) -> str | None:
    for delimiter in _DELIMITERS:
        if delimiter in text:
            return delimiter
    if _SPACED_SLASH in text:
        return _SPACED_SLASH
    return "/" if "/" in text else None


def _split(text: str) -> list[str]:
    if "&" in text:
        text = html.unescape(text)
    delimiter = _delimiter(text)
    return _levels(text.split(delimiter) if delimiter else [text])


def _name_of(obj: dict[str, Any]) -> str | None:
    fields = {norm_key(key): value for key, value in list(obj.items())[:32]}
    for key in _NAME_KEYS:
        value = fields.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _from_list(items: list[Any], nesting: int) -> list[str]:
    strings = [item for item in items[: MAX_DEPTH * 4] if isinstance(item, str)]
    for item in strings:
        if "://" not in item and _delimiter(item):
            return _split(item)
    if strings:
        return _levels(strings)
    names = [_name_of(item) for item in items[: MAX_DEPTH * 4] if isinstance(item, dict)]
    found = [name for name in names if name]
    if found:
        return _levels(found)
    for item in items[:MAX_DEPTH]:
        levels = parse_path(item, _nesting=nesting + 1)
        if levels:
            return levels
    return []


def _from_text(text: str, nesting: int) -> list[str]:
    text = text.strip()
    if not text or len(text) > _MAX_TEXT or "://" in text:
        return []
    if text[0] == "[" and text[-1] == "]":
        try:
            decoded = json.loads(text)
        except (ValueError, RecursionError):
            decoded = None
        if isinstance(decoded, list):
            return _from_list(decoded, nesting)
        text = text.strip("[]\"' ")
    return _split(text)


def parse_path(value: Any, *, _nesting: int = 0) -> list[str]:
    """Category levels, root first, from whatever a feed put under its category key."""
    if _nesting > _MAX_NESTING:
        return []
    if isinstance(value, str):
        return _from_text(value, _nesting)
    if isinstance(value, list):
        return _from_list(value, _nesting)
    if isinstance(value, dict):
        fields = {norm_key(key): item for key, item in list(value.items())[:32]}
        for key in _PATH_KEYS:
            if key in fields:
                levels = parse_path(fields[key], _nesting=_nesting + 1)
                if levels:
                    return levels
        name = _name_of(value)
        return _split(name) if name else []
    return []


def compose_path(product: dict[str, Any]) -> tuple[list[str], list[str]]:
    """A path composed from nested category objects of the product, and the keys it used.

    Objects under keys like ``masterCategory``, ``subCategory`` and ``articleType`` give one level
    each (their ``typeName``/``name``); plain strings count only under category keys
    (``mainCategory``, ``category2``). Levels are ordered master, category, sub, article.
    """
    ranked: list[tuple[int, int, int, str, str]] = []
    for seq, (key, value) in enumerate(list(product.items())[:256]):
        match = _COMPOSABLE.match(norm_key(key))
        if match is None:
            continue
        prefix, stem, _, digits = match.groups()
        if isinstance(value, dict):
            name = _name_of(value)
        elif isinstance(value, str) and stem != "type":
            name = value
        else:
            name = None
        if name:
            rank = _LEVEL_RANK[prefix or ""]
            ranked.append((rank, int(digits or 0), seq, key, name))
    ranked.sort()
    levels = _levels([item[4] for item in ranked])
    return levels, [item[3] for item in ranked] if levels else []
