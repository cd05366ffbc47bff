"""Ids every layer agrees on: category ids of paths, and the keys of labels.

A category id is stable: ``c_`` plus the first 12 hex digits of the SHA-1 of the normalised path
(``"clothing>women's clothing>shorts"``), so it depends neither on insertion order nor on which
other products exist. Names are matched case-insensitively after Unicode (NFKC) and whitespace
normalisation, with curly quotes made straight and a trailing ellipsis dropped.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from typing import Final

__all__ = [
    "CATEGORY_ID_PATTERN",
    "KEY_SEPARATOR",
    "category_reference",
    "display_name",
    "label_key",
    "normalize_name",
    "path_id",
]

_WHITESPACE: Final = re.compile(r"\s+")
_ELLIPSIS: Final = re.compile(r"\s*(?:\.{2,}|…)+\s*$")
_QUOTES: Final = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "`": "'", "\u201c": '"', "\u201d": '"'}
)

#: The separator of a label's key: ``<product_id>/<objective>``.
KEY_SEPARATOR: Final = "/"


def display_name(name: str) -> str:
    """A level as shown: NFKC, straight quotes, whitespace collapsed, trailing ellipsis dropped."""
    text = _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", name).translate(_QUOTES)).strip()
    return _ELLIPSIS.sub("", text)


def normalize_name(name: str) -> str:
    """The matching form of a level: :func:`display_name`, case-folded."""
    return display_name(name).casefold()


#: What :func:`path_id` returns, as a regular expression (anchor it where a whole value must match).
CATEGORY_ID_PATTERN = r"c_[0-9a-f]{12}"


def path_id(levels: Sequence[str]) -> str:
    """The stable id of a path-built node: ``c_`` + 12 hex of SHA-1 of the normalised path."""
    key = ">".join(normalize_name(level) for level in levels)
    return "c_" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def category_reference(text: str) -> tuple[str, tuple[str, ...]]:
    """A category as a person names it: a category id as it is (levels unknown: ``()``), or a
    path ``A > B`` as its id and levels. :class:`ValueError` when it is neither."""
    stripped = text.strip()
    if re.fullmatch(CATEGORY_ID_PATTERN, stripped):
        return stripped, ()
    levels = tuple(level.strip() for level in stripped.split(">") if level.strip())
    if not levels:
        raise ValueError(f"{text!r} is neither a category id (c_...) nor a path (A > B)")
    return path_id(levels), levels


def label_key(product_id: str, objective: str) -> bytes:
    """The Kafka key of a label: ``<product_id>/<objective>``."""
    return f"{product_id}{KEY_SEPARATOR}{objective}".encode()
