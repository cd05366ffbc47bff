"""Category paths: splitting a delimited path the way a feed writes it, and cleaning levels.

A feed writes its delimiter consistently, and that is what tells a delimiter from the same
character inside a level name: when the feed writes ``A/B/C`` (no spaces), the ``/`` in
``Vinho do Porto Vintage / LBV`` (spaced) is part of a name, and so is one followed by ``+`` or
by a number after a number (``Fraldas 13-18kg/+18kg``, ``Fraldas 4-11kg/9-15kg``); when it writes
``A > B``, a bare ``>`` is part of a name.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Final

from prodcat.streams.feeds.stats import PLACEHOLDERS
from prodcat.streams.text import clean_text, scalar_text, truncate

__all__ = ["MAX_DEPTH", "clean_levels", "dominant_split", "split_levels"]

MAX_DEPTH: Final = 10
_MAX_LEVEL_LEN: Final = 256
_MAX_TEXT: Final = 10_000
_DOMINANT: Final = 0.85
# A level ending in a number (and maybe a unit) followed by a piece starting with a number is one
# name holding a range or alternatives: "Nappies <2kg/2-5kg".
_QUANTITY_END: Final = re.compile(r"\d\s?[^\W\d_]{0,3}$")


@lru_cache(maxsize=64)
def _pattern(delimiter: str, split: str) -> re.Pattern[str]:
    escaped = re.escape(delimiter)
    if len(delimiter) == 1:  # ">" must not match inside ">>"
        escaped = rf"(?<!{escaped}){escaped}(?!{escaped})"
    if split == "spaced":
        return re.compile(rf"\s+{escaped}\s+")
    if split == "tight":
        return re.compile(rf"(?<=\S){escaped}(?=\S)")
    return re.compile(rf"\s*{escaped}\s*")


def dominant_split(texts: Iterable[str], delimiter: str) -> str:
    """``spaced`` or ``tight`` when the feed writes ``delimiter`` that way at least 85% of the
    time, else ``any``."""
    pattern = _pattern(delimiter, "any")
    spaced = tight = total = 0
    for text in texts:
        for match in pattern.finditer(text):
            total += 1
            token = match.group(0)
            if token[0].isspace() and token[-1].isspace():
                spaced += 1
            elif not token[0].isspace() and not token[-1].isspace():
                start, end = match.span()
                tight += start > 0 and end < len(text)
    if total and spaced >= _DOMINANT * total:
        return "spaced"
    if total and tight >= _DOMINANT * total:
        return "tight"
    return "any"


def split_levels(text: str, delimiter: str, split: str = "any") -> list[str]:
    """The raw pieces of a delimited path, root first (not cleaned)."""
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT]
    if "&" in text:
        text = html.unescape(text)
    if delimiter not in text:
        return [text]
    pieces = _pattern(delimiter, split).split(text)
    if split != "tight" or len(pieces) == 1:
        return pieces
    joined = [pieces[0]]
    for piece in pieces[1:]:
        if piece[:1] == "+" or (piece[:1].isdigit() and _QUANTITY_END.search(joined[-1])):
            joined[-1] = f"{joined[-1]}{delimiter}{piece}"
        else:
            joined.append(piece)
    return joined


def clean_levels(parts: Iterable[Any]) -> list[str]:
    """Cleaned levels: text of each part, cleaned like a title, empty and placeholder levels
    (``undefined``, ``null``, ``n/a``, ...) dropped, at most :data:`MAX_DEPTH`."""
    levels: list[str] = []
    for part in parts:
        text = part if isinstance(part, str) else scalar_text(part)
        if text is None or isinstance(part, bool):
            continue
        level = truncate(clean_text(text, compat=True), _MAX_LEVEL_LEN)
        if level and level.casefold() not in PLACEHOLDERS:
            levels.append(level)
            if len(levels) == MAX_DEPTH:
                break
    return levels
