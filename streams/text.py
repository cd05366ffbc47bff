"""Text cleaning: HTML to plain text, Unicode normalisation, control characters, whitespace.

:func:`clean_text` is idempotent (``clean_text(clean_text(x)) == clean_text(x)``) and its output
never holds a control character, a surrogate, an HTML tag, a decodable HTML entity, leading or
trailing whitespace or a run of whitespace. Titles and other short identifying fields use NFKC
(``compat=True``): full-width letters, ligatures and other presentation forms become the plain
characters a classifier and a duplicate detector should see. Descriptions and free-form values
use NFC, which keeps meaningful compatibility characters such as superscripts.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from typing import Any, Final, Literal

__all__ = ["clean_text", "clean_url", "scalar_text", "truncate"]

# C0/C1 controls become spaces (they separate words more often than not); invisible format
# characters are removed; lone surrogates (which cannot be encoded) become U+FFFD.
_CONTROLS: Final = [*range(0x00, 0x20), *range(0x7F, 0xA0)]
_INVISIBLE: Final = [
    0x00AD,
    0x061C,
    0x180E,
    0x200B,
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2060, 0x2065),
    *range(0x2066, 0x206A),
    0xFEFF,
    0xFFF9,
    0xFFFA,
    0xFFFB,
    0xFFFE,
    0xFFFF,
]
_BAD_CHARS: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u2069\ufeff\ufff9-\ufffb\ufffe\uffff\ud800-\udfff]"
)
_BAD_TABLE: Final[dict[int, str | None]] = {
    **{cp: " " for cp in _CONTROLS},
    **{cp: None for cp in _INVISIBLE},
    **{cp: "\ufffd" for cp in range(0xD800, 0xE000)},
}

_COMMENT: Final = re.compile(r"<!--.*?(?:-->|$)", re.S)
_RAW_TEXT: Final = re.compile(r"<(script|style)\b[^<>]*>.*?(?:</\1\s*>|$)", re.S | re.I)
_BLOCK_TAG: Final = re.compile(
    r"</?(?:p|div|br|hr|li|ul|ol|dl|dt|dd|tr|td|th|table|tbody|thead|h[1-6]|section|article"
    r"|header|footer|blockquote|pre|figure|figcaption)\b[^<>]*>",
    re.I,
)
_TAG: Final = re.compile(r"<[A-Za-z/!?][^<>]*>")
_TAG_OPEN: Final = re.compile(r"<(?=[A-Za-z/!?])")
# The pattern html.unescape itself uses to find character references.
_CHARREF: Final = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
# What starts a tag, comment or decodable character reference; text without it is inert.
_ACTIVE: Final = re.compile(r"<[A-Za-z/!?]|&[#A-Za-z0-9]")
_WHITESPACE: Final = re.compile(r"\s")
_MAX_PASSES: Final = 3
_CACHED_LEN: Final = 64
_CACHE_MAX: Final = 16_384
_CACHE: dict[str, str] = {}
_COMPAT_CACHE: dict[str, str] = {}
_MAX_INT_BITS: Final = 256  # about 77 decimal digits; longer integers are not useful text


def _inert(text: str) -> bool:
    """Whether ``text`` holds nothing that entity decoding or tag stripping would change."""
    return ("&" not in text and "<" not in text) or _ACTIVE.search(text) is None


def _remove_bad(text: str) -> str:
    if _BAD_CHARS.search(text) is None:
        return text
    return text.translate(_BAD_TABLE)


def _strip_tags(text: str) -> str:
    text = _COMMENT.sub(" ", text)
    text = _RAW_TEXT.sub(" ", text)
    text = _BLOCK_TAG.sub(" ", text)
    return _TAG.sub("", text)


def _one_pass(text: str, form: Literal["NFC", "NFKC"]) -> str:
    text = _remove_bad(text)
    if "&" in text:
        text = _remove_bad(html.unescape(text))
    if "<" in text:
        text = _strip_tags(text)
    if not text.isascii():
        text = unicodedata.normalize(form, text)
    return " ".join(text.split())


def _defuse_charref(match: re.Match[str]) -> str:
    ref = match.group(0)
    return ref if html.unescape(ref) == ref else "& " + ref[1:]


def _neutralise(text: str) -> str:
    """Make entities and tags left after the last pass inert by inserting a space."""
    text = _CHARREF.sub(_defuse_charref, text)
    return _TAG_OPEN.sub("< ", text)


def _clean(value: str, compat: bool) -> str:
    if value.isascii() and value.isprintable() and _inert(value):
        return " ".join(value.split())
    form: Literal["NFC", "NFKC"] = "NFKC" if compat else "NFC"
    text = value
    for _ in range(_MAX_PASSES):
        cleaned = _one_pass(text, form)
        if cleaned == text or _inert(cleaned):
            return cleaned
        text = cleaned
    return _neutralise(text)


def clean_text(value: str, *, compat: bool = False) -> str:
    """Plain, normalised, single-spaced text; ``""`` when nothing printable is left.

    Short values recur across events (category levels, attribute values), so their results are
    kept in a small bounded cache.
    """
    if len(value) > _CACHED_LEN:
        return _clean(value, compat)
    cache = _COMPAT_CACHE if compat else _CACHE
    cleaned = cache.get(value)
    if cleaned is None:
        cleaned = _clean(value, compat)
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[value] = cleaned
    return cleaned


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, without trailing whitespace."""
    return text if len(text) <= limit else text[:limit].rstrip()


def clean_url(value: Any, *, max_len: int = 2048) -> str | None:
    """A URL-like string without whitespace, or None."""
    if not isinstance(value, str):
        return None
    url = _remove_bad(value).strip()
    if not url or len(url) > max_len or _WHITESPACE.search(url) is not None:
        return None
    return url


def scalar_text(value: Any) -> str | None:
    """Text of a JSON scalar (str, int, finite float, bool); None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            return None
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    return None
