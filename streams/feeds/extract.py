"""Applying a :class:`FeedProfile` to raw events: extraction and cleaning, no detection.

A profile is compiled once into a plan of getters (:class:`Extractor`, cached per profile), so
normalising a record is: parse (orjson when installed), read each role's source paths, clean the
values with the shared cleaners (:mod:`prodcat.streams.text`, :mod:`...prices`, ...), hash. The
result is the ``Product`` dict of ``product.avsc``, with the same keys and types as
:func:`prodcat.streams.normalize.normalize_event`. Unusable input raises
:class:`~prodcat.streams.exceptions.NormalizationError` with the same kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from prodcat.schemas.records import Product
from prodcat.streams.exceptions import NormalizationError
from prodcat.streams.feeds.events import MAX_EVENT_BYTES, is_blank, parse_event
from prodcat.streams.feeds.flatten import Op, decode_text, getter, parse_path, render_path
from prodcat.streams.feeds.paths import clean_levels, split_levels
from prodcat.streams.feeds.profile import FeedProfile, FieldSource
from prodcat.streams.gender import gender_words, resolve_gender
from prodcat.streams.identity import assemble_product
from prodcat.streams.prices import Money, currency_of, parse_price
from prodcat.streams.sizes import parse_sizes, sizes_from_options
from prodcat.streams.text import clean_text, clean_url, scalar_text, truncate

__all__ = ["MAX_EVENT_BYTES", "Extractor", "apply_profile", "compile_profile", "parse_event"]

MAX_TITLE_CHARS: Final = 1_000
MAX_DESCRIPTION_CHARS: Final = 100_000
MAX_IMAGES: Final = 20
_MAX_SHORT_TEXT: Final = 256
_MAX_KEY_LEN: Final = 64
_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1
_URL_SCHEMES: Final = ("http://", "https://", "file://")
_PLAN_CACHE_MAX: Final = 256
_ATTRIBUTE_CACHE: Final = 16_384
_CACHED_TEXT: Final = 64
_INT_TEXT: Final = 10**18

Getter = Callable[[Mapping[str, Any]], Any]


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, list):
        parts = [item for item in value[:100] if isinstance(item, str)]
        return " ".join(parts) if parts else None
    return scalar_text(value)


def _short(
    getters: tuple[Getter, ...], record: Mapping[str, Any], compat: bool = True
) -> str | None:
    for get in getters:
        text = _text(get(record))
        if text:
            cleaned = truncate(clean_text(text, compat=compat), _MAX_SHORT_TEXT)
            if cleaned:
                return cleaned
    return None


def _root_getter(path: str, *, every: bool = False) -> Getter:
    if path in ("", "."):
        return lambda record: record
    return getter(path, every=every)


class Extractor:
    """A profile compiled into getters; call :meth:`apply` per record."""

    def __init__(
        self, profile: FeedProfile, google_taxonomy: Mapping[int, list[str]] | None = None
    ) -> None:
        self.profile = profile
        self.taxonomy = google_taxonomy
        fields = profile.fields

        def getters(role: str, every: bool = False) -> tuple[Getter, ...]:
            source = fields.get(role)
            return tuple(_root_getter(p, every=every) for p in source.sources) if source else ()

        self.keys = frozenset(profile.keys)  # the fit check counts them with one intersection
        self.title = getters("title")
        self.source_id = getters("source_id")
        self.brand = getters("brand")
        self.description = getters("description")
        self.retailer = getters("retailer")
        self.product_url = getters("product_url")
        self.images = getters("image_urls", every=True)
        self.gender = getters("gender")
        self.currency = getters("currency")
        self.category = category = fields.get("category")
        listed = category is not None and category.kind == "list"
        self.category_getters = tuple(
            _root_getter(path, every=listed and Op.ITEMS in parse_path(path))
            for path in (category.sources if category else ())
        )
        self.price = fields.get("price")
        self.price_getters = getters("price")
        self.list_price = fields.get("list_price")
        self.list_getters = getters("list_price")
        self.sizes = fields.get("sizes")
        self.size_getters = getters("sizes")
        self.attributes = self._attribute_getters(fields.get("attributes"))
        self._cleaned: dict[str, str] = {}

    @staticmethod
    def _attribute_getters(
        source: FieldSource | None,
    ) -> tuple[tuple[Getter, tuple[tuple[str, str], ...]], ...]:
        """(getter of an object, ((attribute name, key in it), ...)) groups: fields of one object
        are read from it after one lookup of the object."""
        if source is None:
            return ()
        names: dict[str, str] = {}
        lasts = [
            next((s for s in reversed(parse_path(p)) if isinstance(s, str)), p)
            for p in source.sources
        ]
        for path, last in zip(source.sources, lasts, strict=True):
            name = clean_text(last if lasts.count(last) == 1 else path)
            if name and len(name) <= _MAX_KEY_LEN and name not in names.values():
                names[path] = name
        groups: dict[str, list[tuple[str, str]]] = {}
        for path, name in names.items():
            steps = parse_path(path)
            final = steps[-1]
            if isinstance(final, str) and not (len(steps) > 1 and steps[-2] is Op.DECODE):
                holder = render_path(steps[:-1])
                groups.setdefault(holder, []).append((name, final))
            else:
                groups.setdefault(path, []).append((name, ""))
        return tuple((_root_getter(holder), tuple(items)) for holder, items in groups.items())

    def _title(self, record: Mapping[str, Any]) -> str:
        wrong: Any = None
        for get in self.title:
            value = get(record)
            if isinstance(value, str) or (
                isinstance(value, int | float) and not isinstance(value, bool)
            ):
                text = scalar_text(value)
                title = clean_text(text, compat=True) if text is not None else ""
                if len(title) > MAX_TITLE_CHARS:
                    raise NormalizationError(
                        "too_large", f"title has {len(title)} characters (limit {MAX_TITLE_CHARS})"
                    )
                if title:
                    return title
            elif isinstance(value, dict | list) and value and wrong is None:
                wrong = value
        if is_blank(record):
            raise NormalizationError("empty", "the object has no non-blank field")
        if wrong is not None:
            raise NormalizationError(
                "wrong_type",
                f"title field holds a JSON {'object' if isinstance(wrong, dict) else 'array'}",
            )
        if not self.title:
            raise NormalizationError("no_title", "the feed profile maps no title field")
        filled = sum(1 for key in self.keys if not is_blank(record.get(key)))
        if self.keys and filled * 2 < len(self.keys):
            raise NormalizationError(
                "no_title",
                f"the profile's title field is empty, and {filled} of the feed's {len(self.keys)} "
                "usual fields are filled: a fragment row (a variant's or an image's row under "
                "its product), not a product",
            )
        raise NormalizationError("no_title", "the profile's title field is empty")

    def _category(self, record: Mapping[str, Any]) -> list[str]:
        source = self.category
        if source is None:
            return []
        kind = source.kind
        if kind == "columns":
            return clean_levels(_text(get(record)) for get in self.category_getters)
        value = self.category_getters[0](record)
        if isinstance(value, str) and kind in ("list", "google_id") and value[:1] == "[":
            value = decode_text(value) or value
        if kind == "google_id":
            text = scalar_text(value) if not isinstance(value, bool | list | dict) else None
            if text is not None and text.strip().isdigit():
                path = (self.taxonomy or {}).get(int(text.strip()))
                return clean_levels(path) if path else []
            kind = "delimited" if isinstance(value, str) else "list"
        if isinstance(value, list):
            if kind == "list":
                return clean_levels(value)
            value = next((item for item in value if isinstance(item, str) and item.strip()), None)
        if not isinstance(value, str):
            return clean_levels([value]) if isinstance(value, int | float) else []
        if source.delimiter:
            return clean_levels(split_levels(value, source.delimiter, source.split or "any"))
        return clean_levels([value])

    @staticmethod
    def _money(
        source: FieldSource | None,
        getters: tuple[Getter, ...],
        record: Mapping[str, Any],
        currency: str | None,
    ) -> Money | None:
        if source is None:
            return None
        for get in getters:
            value = get(record)
            if value is None:
                continue
            money = parse_price(value, currency or source.currency)
            if money is not None:
                if source.scale != 1.0:
                    divisor = round(1 / source.scale) if source.scale < 1 else 0
                    amount = money["value"] / divisor if divisor else money["value"] * source.scale
                    money = {"value": amount, "currency": money["currency"]}
                return money
        return None

    def _prices(self, record: Mapping[str, Any]) -> tuple[Money | None, Money | None]:
        currency = None
        for get in self.currency:
            value = get(record)
            if isinstance(value, str) and len(value) <= 64:
                currency = currency_of(value)
                if currency:
                    break
        price = self._money(self.price, self.price_getters, record, currency)
        listed = self._money(self.list_price, self.list_getters, record, currency)
        if price is None:
            return listed, None
        if listed is None:
            return price, None
        if price["currency"] is None and listed["currency"] is not None:
            price = {"value": price["value"], "currency": listed["currency"]}
        elif listed["currency"] is None and price["currency"] is not None:
            listed = {"value": listed["value"], "currency": price["currency"]}
        return price, (None if listed["value"] == price["value"] else listed)

    def _images(self, record: Mapping[str, Any]) -> list[str]:
        urls: list[str] = []
        for get in self.images:
            for value in get(record):
                if isinstance(value, str) and value[:1] == "[":
                    decoded = decode_text(value)
                    items = decoded if isinstance(decoded, list) else [value]
                else:
                    items = [value]
                for item in items:
                    if isinstance(item, str) and item[:8].lower().startswith(_URL_SCHEMES):
                        url = clean_url(item)
                        if url is not None and url not in urls:
                            urls.append(url)
            if len(urls) >= MAX_IMAGES:
                break
        return urls[:MAX_IMAGES]

    def _sizes(self, record: Mapping[str, Any]) -> list[str]:
        if self.sizes is None:
            return []
        value = self.size_getters[0](record)
        if self.sizes.kind == "options":
            return sizes_from_options(value) if isinstance(value, dict) else []
        return parse_sizes(value)

    def _product_url(self, record: Mapping[str, Any]) -> str | None:
        for get in self.product_url:
            url = clean_url(get(record))
            if url is not None and "/" in url and url.casefold() != "n/a":
                return url
        return None

    def _attributes(self, record: Mapping[str, Any]) -> dict[str, str]:
        attributes: dict[str, str] = {}
        cache = self._cleaned
        for get, items in self.attributes:
            holder = get(record)
            if holder is None:
                continue
            is_dict = isinstance(holder, dict)
            for name, key in items:
                value: Any = (holder.get(key) if is_dict else None) if key else holder
                kind: Any = type(value)
                if kind is str:
                    if not value or len(value) > 4 * _MAX_SHORT_TEXT:
                        continue
                    text: str | None = value
                elif kind is bool:
                    attributes[name] = "true" if value else "false"
                    continue
                elif value is None:
                    continue
                elif kind is int and -_INT_TEXT < value < _INT_TEXT:
                    attributes[name] = str(value)
                    continue
                elif kind is list:
                    strings = [item for item in value[:8] if isinstance(item, str)]
                    text = ", ".join(strings) if strings else None
                else:
                    text = scalar_text(value)
                if text:
                    cleaned = cache.get(text)
                    if cleaned is None:
                        cleaned = clean_text(text)
                        if len(text) <= _CACHED_TEXT:
                            if len(cache) >= _ATTRIBUTE_CACHE:
                                cache.clear()
                            cache[text] = cleaned
                    if cleaned and len(cleaned) <= _MAX_SHORT_TEXT:
                        attributes[name] = cleaned
        return attributes

    def apply(
        self,
        raw_or_record: bytes | bytearray | memoryview | Mapping[str, Any],
        *,
        feed: str | None,
        key: bytes | None,
        seen_at_ms: int,
    ) -> Product:
        """The ``Product`` of one raw event (or already parsed record)."""
        if isinstance(seen_at_ms, bool) or not isinstance(seen_at_ms, int):
            raise NormalizationError("invalid", f"seen_at_ms is a {type(seen_at_ms).__name__}")
        if not _LONG_MIN <= seen_at_ms <= _LONG_MAX:
            raise NormalizationError("invalid", "seen_at_ms is out of the Avro long range")
        if isinstance(raw_or_record, bytes | bytearray | memoryview):
            record: Mapping[str, Any] = parse_event(raw_or_record)
        elif isinstance(raw_or_record, Mapping):
            record = raw_or_record
        else:
            raise NormalizationError(
                "invalid", f"expected bytes, got {type(raw_or_record).__name__}"
            )
        try:
            return self._product(record, feed, key, seen_at_ms)
        except NormalizationError:
            raise
        except Exception as exc:  # a bug or an absurd value: dead-letter, never crash the stage
            raise NormalizationError("invalid", f"unexpected {type(exc).__name__}") from exc

    def _product(
        self, record: Mapping[str, Any], feed: str | None, key: bytes | None, seen_at_ms: int
    ) -> Product:
        title = self._title(record)
        feed_name = (
            truncate(clean_text(feed), _MAX_SHORT_TEXT) if isinstance(feed, str) else ""
        ) or "unknown"
        source_id = _short(self.source_id, record, compat=False)
        if source_id is None and key is not None:
            raw_key = (
                key if isinstance(key, str) else bytes(key).decode("utf-8", "backslashreplace")
            )
            cleaned = clean_text(raw_key)
            source_id = cleaned if cleaned and len(cleaned) <= _MAX_SHORT_TEXT else None
        brand = _short(self.brand, record)
        description = None
        for get in self.description:
            text = _text(get(record))
            if text:
                description = truncate(clean_text(text), MAX_DESCRIPTION_CHARS) or None
                if description:
                    break
        category_path = self._category(record)
        price, list_price = self._prices(record)
        groups: set[str] = set()
        for get in self.gender:
            value = get(record)
            if isinstance(value, str):
                groups |= gender_words(value)
        if not groups and category_path:
            groups = gender_words(" ".join(category_path))
        product_url = self._product_url(record)
        return assemble_product(
            feed=feed_name,
            source_id=source_id,
            title=title,
            brand=brand,
            category_path=category_path,
            description=description,
            gender=resolve_gender(groups),
            sizes=self._sizes(record),
            price=price,
            list_price=list_price,
            image_urls=self._images(record),
            product_url=product_url,
            retailer=_short(self.retailer, record),
            attributes=self._attributes(record),
            profile_version=self.profile.version,
            seen_at_ms=seen_at_ms,
        )


_PLANS: dict[tuple[int, int], tuple[FeedProfile, Mapping[int, list[str]] | None, Extractor]] = {}


def compile_profile(
    profile: FeedProfile, google_taxonomy: Mapping[int, list[str]] | None = None
) -> Extractor:
    """The :class:`Extractor` of ``profile`` (cached while the same profile object is in use).

    Keyed by profile *and* taxonomy: the stage asks for both ``(profile, None)`` (the fit check)
    and ``(profile, taxonomy)`` (extraction) per record, and one slot per profile made them evict
    each other, so every record compiled the profile twice."""
    slot = (id(profile), id(google_taxonomy))
    cached = _PLANS.get(slot)
    if cached is not None and cached[0] is profile and cached[1] is google_taxonomy:
        return cached[2]
    if len(_PLANS) >= _PLAN_CACHE_MAX:
        _PLANS.clear()
    extractor = Extractor(profile, google_taxonomy)
    _PLANS[slot] = (profile, google_taxonomy, extractor)
    return extractor


def apply_profile(
    raw_or_record: bytes | bytearray | memoryview | Mapping[str, Any],
    profile: FeedProfile,
    *,
    feed: str | None,
    key: bytes | None,
    seen_at_ms: int,
    google_taxonomy: Mapping[int, list[str]] | None = None,
) -> Product:
    """Normalise one raw event (JSON bytes, or a parsed record) with ``profile``.

    Returns the ``Product`` dict (keys and types of ``normalize_event``); raises
    :class:`NormalizationError` (``too_large``, ``not_utf8``, ``not_json``, ``not_object``,
    ``empty``, ``no_title``, ``wrong_type``, ``invalid``) for unusable input and nothing else.
    """
    return compile_profile(profile, google_taxonomy).apply(
        raw_or_record, feed=feed, key=key, seen_at_ms=seen_at_ms
    )
