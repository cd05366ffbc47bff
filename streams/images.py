"""Image URLs found anywhere in a record.

The whole record is walked breadth first (bounded in depth and in nodes). A string counts when
it is an ``http(s)://`` or ``file://`` URL and either ends in an image extension or sits under a
key that names an image (``image``, ``img``, ``picture``, ``photo``, ``thumbnail``), directly or
further up. Strings holding a JSON-ish list of URLs (a CSV column of several images) are opened.
URLs under a key that itself names an image come first (e.g. ``styleImages.*.imageURL``),
then the others (resolution variants, size charts); duplicates are dropped, order is kept.
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Any, Final

from prodcat.streams.fields import key_info
from prodcat.streams.text import clean_url

__all__ = ["MAX_IMAGES", "find_image_urls"]

MAX_IMAGES: Final = 20
_MAX_DEPTH: Final = 8
_MAX_NODES: Final = 5000
_MAX_LIST_TEXT: Final = 100_000
_SCHEMES: Final = ("http://", "https://", "file://")
_FIRST_CHARS: Final = frozenset("hHfF[")
_IMAGE_EXT: Final = re.compile(
    r"\.(?:jpe?g|png|gif|webp|bmp|tiff?|avif|heic|svg)(?:[?#]|$)", re.IGNORECASE
)
_URL_IN_TEXT: Final = re.compile(r"(?:https?|file)://[^\s\"'<>\[\],]+", re.IGNORECASE)


def _urls_in_list_text(text: str) -> list[str]:
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        decoded = None
    if isinstance(decoded, list):
        return [item for item in decoded if isinstance(item, str)]
    return _URL_IN_TEXT.findall(text)


def _collect(text: str, own: bool, inherited: bool, out: list[str]) -> None:
    texts = [text]
    if text[0] == "[":
        if "://" not in text or len(text) > _MAX_LIST_TEXT:
            return
        texts = _urls_in_list_text(text)[: MAX_IMAGES * 2]
    for candidate in texts:
        if not isinstance(candidate, str) or not candidate[:8].lower().startswith(_SCHEMES):
            continue
        if own or inherited or _IMAGE_EXT.search(candidate):
            url = clean_url(candidate)
            if url is not None:
                out.append(url)


def find_image_urls(record: Any) -> list[str]:
    """Image URLs of a record, primary ones first, deduplicated, at most :data:`MAX_IMAGES`."""
    primary: list[str] = []
    secondary: list[str] = []
    # Containers to visit: (value, its key names an image, an enclosing key does, depth).
    queue: deque[tuple[Any, bool, bool, int]] = deque([(record, False, False, 0)])
    nodes = 0
    while queue and nodes < _MAX_NODES and len(primary) < MAX_IMAGES:
        value, own, inherited, depth = queue.popleft()
        if isinstance(value, dict):
            items: Any = value.items()
        else:
            items = ((None, item) for item in value[:_MAX_NODES])
        for key, item in items:
            nodes += 1
            if nodes > _MAX_NODES:
                break
            if key is not None:
                own = key_info(key).image
            item_inherited = inherited or own
            if isinstance(item, str):
                if item and item[0] in _FIRST_CHARS:
                    _collect(item, own, item_inherited, primary if own else secondary)
            elif isinstance(item, dict | list) and depth < _MAX_DEPTH:
                queue.append((item, own, item_inherited, depth + 1))
    return list(dict.fromkeys(primary + secondary))[:MAX_IMAGES]
