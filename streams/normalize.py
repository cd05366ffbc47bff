"""Raw product event (JSON bytes from any affiliate feed) -> ``Product`` dict (``product.avsc``).

There is no per-feed code: fields are found by name aliases (:mod:`prodcat.streams.fields`) and by
content (:mod:`prodcat.streams.categories`, :mod:`prodcat.streams.prices`, :mod:`prodcat.streams.images`,
...).
:func:`normalize_event` is pure and raises only :class:`~prodcat.streams.exceptions.NormalizationError`,
whose ``kind`` the agent puts on the dead-letter record.
"""

from __future__ import annotations

import logging
from itertools import islice
from typing import Any, Final

from prodcat.schemas.records import Product
from prodcat.streams.attributes import collect_attributes
from prodcat.streams.categories import compose_path, parse_path
from prodcat.streams.exceptions import NormalizationError
from prodcat.streams.feeds.events import MAX_EVENT_BYTES, is_blank, json_type, parse_event
from prodcat.streams.fields import (
    BRAND,
    CATEGORY,
    CURRENCY,
    DESCRIPTION,
    GENDER,
    ID,
    LIST_PRICE,
    PRICE,
    RETAILER,
    SALE_PRICE,
    SIZES,
    TITLE,
    URL,
    Entry,
    FieldIndex,
    key_info,
    norm_key,
)
from prodcat.streams.gender import gender_words, resolve_gender
from prodcat.streams.identity import assemble_product
from prodcat.streams.images import find_image_urls
from prodcat.streams.prices import Money, choose_prices, currency_of, parse_price
from prodcat.streams.sizes import parse_sizes, sizes_from_options
from prodcat.streams.text import clean_text, clean_url, scalar_text, truncate

__all__ = ["MAX_DESCRIPTION_CHARS", "MAX_EVENT_BYTES", "MAX_TITLE_CHARS", "normalize_event"]

logger = logging.getLogger(__name__)

MAX_TITLE_CHARS: Final = 1_000
MAX_DESCRIPTION_CHARS: Final = 100_000
_MAX_SHORT_TEXT: Final = 256
_MAX_LIST_PARTS: Final = 100
_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1
_UNWRAP_KEYS: Final = ("value", "text", "content", "name", "displayname", "typename", "title")


def normalize_event(raw: bytes, *, feed: str | None, key: bytes | None, seen_at_ms: int) -> Product:
    """Normalise one raw event into a ``Product`` record.

    ``feed`` names the affiliate feed (``"unknown"`` when None); ``key`` is the Kafka message key,
    used as the source id when the body has no id field; ``seen_at_ms`` becomes ``seen_at``.
    Raises :class:`NormalizationError` for unusable input, and nothing else for any bytes.
    """
    try:
        return _normalize(raw, feed, key, seen_at_ms)
    except NormalizationError:
        raise
    except Exception as exc:
        logger.debug("unexpected error while normalising an event", exc_info=True)
        raise NormalizationError("invalid", f"unexpected {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    try:
        detail = str(exc)
    except Exception:
        detail = ""
    return f"{type(exc).__name__}: {detail[:200]}" if detail else type(exc).__name__


def _find_title(index: FieldIndex) -> tuple[Entry, str]:
    wrong: Entry | None = None
    for entry in index.candidates(TITLE):
        value = entry[2]
        if isinstance(value, str) or (
            isinstance(value, int | float) and not isinstance(value, bool)
        ):
            text = scalar_text(value)
            title = clean_text(text, compat=True) if text is not None else ""
            if len(title) > MAX_TITLE_CHARS:
                message = f"title has {len(title)} characters (limit {MAX_TITLE_CHARS})"
                raise NormalizationError("too_large", message)
            if title:
                return entry, title
        elif value is not None and wrong is None:
            wrong = entry
    if is_blank(index.record):
        raise NormalizationError("empty", "the object has no non-blank field")
    if wrong is not None:
        message = f"title field {wrong[1][:64]!r} is a JSON {json_type(wrong[2])}, not a string"
        raise NormalizationError("wrong_type", message)
    raise NormalizationError("no_title", "no title or product name field")


def _unwrap(value: Any, *, join_lists: bool = False) -> Any:
    """The text inside an object (``{"value": ...}``) or, optionally, a list of strings."""
    if isinstance(value, dict):
        fields = {norm_key(key): item for key, item in islice(value.items(), 32)}
        return next((fields[key] for key in _UNWRAP_KEYS if key in fields), None)
    if join_lists and isinstance(value, list):
        parts = [item for item in islice(value, _MAX_LIST_PARTS) if isinstance(item, str)]
        return " ".join(parts) if parts else None
    return value


def _text_field(
    index: FieldIndex, field: str, *, compat: bool, limit: int, join_lists: bool = False
) -> str | None:
    for entry in index.candidates(field):
        value = _unwrap(entry[2], join_lists=join_lists)
        text = None if isinstance(value, bool) else scalar_text(value)
        if text is not None:
            cleaned = truncate(clean_text(text, compat=compat), limit)
            if cleaned:
                index.consume(entry)
                return cleaned
    return None


def _source_id(index: FieldIndex, key: bytes | None) -> str | None:
    found = _text_field(index, ID, compat=False, limit=_MAX_SHORT_TEXT)
    if found is not None or key is None:
        return found
    raw = key if isinstance(key, str) else bytes(key).decode("utf-8", "backslashreplace")
    cleaned = clean_text(raw)
    return cleaned if cleaned and len(cleaned) <= _MAX_SHORT_TEXT else None


def _category_path(index: FieldIndex) -> list[str]:
    for entry in index.candidates(CATEGORY):
        levels = parse_path(entry[2])
        if levels:
            index.consume(entry)
            return levels
    levels, keys = compose_path(index.product)
    for used in keys:
        index.consume_key(index.scope, used)
    return levels


def _first_price(index: FieldIndex, field: str, currency: str | None) -> Money | None:
    for entry in index.candidates(field):
        money = parse_price(entry[2], currency)
        if money is not None:
            index.consume(entry)
            return money
    return None


def _prices(index: FieldIndex) -> tuple[Money | None, Money | None]:
    currency = None
    for entry in index.candidates(CURRENCY):
        value = entry[2]
        currency = currency_of(value) if isinstance(value, str) and len(value) <= 64 else None
        if currency is not None:
            index.consume(entry)
            break
    sale = _first_price(index, SALE_PRICE, currency)
    regular = _first_price(index, PRICE, currency)
    listed = _first_price(index, LIST_PRICE, currency)
    return choose_prices(sale, regular, listed)


def _gender_groups(index: FieldIndex) -> set[str]:
    groups: set[str] = set()
    for entry in index.candidates(GENDER):
        value = _unwrap(entry[2])
        if isinstance(value, str):
            words = gender_words(value)
            if words:
                groups |= words
                index.consume(entry)
    return groups


def _sizes(index: FieldIndex) -> list[str]:
    for entry in index.candidates(SIZES):
        sizes = parse_sizes(entry[2])
        if sizes:
            index.consume(entry)
            return sizes
    return sizes_from_options(index.product)


def _product_url(index: FieldIndex) -> str | None:
    for entry in index.candidates(URL):
        url = clean_url(entry[2])
        if url is not None and "/" in url and url.casefold() != "n/a":
            index.consume(entry)
            return url
    return None


def _check_seen_at(seen_at_ms: int) -> None:
    if isinstance(seen_at_ms, bool) or not isinstance(seen_at_ms, int):
        raise NormalizationError("invalid", f"seen_at_ms is a {type(seen_at_ms).__name__}")
    if not _LONG_MIN <= seen_at_ms <= _LONG_MAX:
        raise NormalizationError("invalid", "seen_at_ms is out of the Avro long range")


def _normalize(raw: bytes, feed: str | None, key: bytes | None, seen_at_ms: int) -> Product:
    _check_seen_at(seen_at_ms)
    record = parse_event(raw)
    index = FieldIndex(record)
    title_entry, title = _find_title(index)
    index.scope = title_entry[0]
    index.consume(title_entry)
    feed_name = truncate(clean_text(feed), _MAX_SHORT_TEXT) if isinstance(feed, str) else ""
    feed_name = feed_name or "unknown"
    source_id = _source_id(index, key)
    brand = _text_field(index, BRAND, compat=True, limit=_MAX_SHORT_TEXT)
    description = _text_field(
        index, DESCRIPTION, compat=False, limit=MAX_DESCRIPTION_CHARS, join_lists=True
    )
    category_path = _category_path(index)
    price, list_price = _prices(index)
    groups = _gender_groups(index)
    sizes = _sizes(index)
    product_url = _product_url(index)
    retailer = _text_field(index, RETAILER, compat=True, limit=_MAX_SHORT_TEXT)
    image_urls = find_image_urls(record)
    attributes = collect_attributes(index.objects(), index.consumed)
    for name, value in attributes.items():  # specification entries can fill gaps
        fields = [field for field, _ in key_info(name).fields]
        if not groups and GENDER in fields:
            groups = gender_words(value)
        elif brand is None and BRAND in fields:
            brand = truncate(clean_text(value, compat=True), _MAX_SHORT_TEXT) or None
    if not groups and category_path:
        groups = gender_words(" ".join(category_path))
    return assemble_product(
        feed=feed_name,
        source_id=source_id,
        title=title,
        brand=brand,
        category_path=category_path,
        description=description,
        gender=resolve_gender(groups),
        sizes=sizes,
        price=price,
        list_price=list_price,
        image_urls=image_urls,
        product_url=product_url,
        retailer=retailer,
        attributes=attributes,
        profile_version=None,
        seen_at_ms=seen_at_ms,
    )
