"""Attributes: the record's other short scalar fields, as a bounded ``str -> str`` map.

Sources, in order, until :data:`MAX_ATTRIBUTES` entries: the unused scalar fields of the product
object, those of the root object when the feed wraps the product, then the entries of the
product's specification containers (objects or ``[{"key": ..., "value": ...}]`` lists under keys
naming attributes, specs, features or properties, also when given as a JSON or Ruby-hash string
such as a CSV column of ``{"key"=>"Fabric", "value"=>"Cotton"}`` pairs). Keys longer than
:data:`MAX_KEY_LEN` and values longer than :data:`MAX_VALUE_LEN` (after cleaning) are skipped,
not cut.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Set
from itertools import chain, islice
from typing import Any, Final

from prodcat.streams.fields import key_info, norm_key
from prodcat.streams.text import clean_text, scalar_text

__all__ = ["MAX_ATTRIBUTES", "MAX_KEY_LEN", "MAX_VALUE_LEN", "collect_attributes"]

MAX_ATTRIBUTES: Final = 32
MAX_KEY_LEN: Final = 64
MAX_VALUE_LEN: Final = 256
_MAX_SPEC_TEXT: Final = 100_000
_MAX_SPEC_ITEMS: Final = 256
_PAIR_KEYS: Final = ("key", "name", "label", "attribute", "title")
_PAIR_VALUES: Final = ("value", "val", "text", "values")
_NAME_CACHE: dict[str, str] = {}
_NAME_CACHE_MAX: Final = 8192


def _decode(text: str) -> Any:
    text = text.strip()
    if len(text) > _MAX_SPEC_TEXT or text[:1] not in "[{":
        return None
    for candidate in (text, text.replace("=>", ":")):
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):
            continue
    return None


def _pairs(container: Any, depth: int = 0) -> Iterator[tuple[str, Any]]:
    if isinstance(container, str):
        container = _decode(container)
    if isinstance(container, dict):
        for key, value in list(container.items())[:_MAX_SPEC_ITEMS]:
            if isinstance(value, list | dict) and depth < 2:
                yield from _pairs(value, depth + 1)
            else:
                yield key, value
    elif isinstance(container, list) and depth < 2:
        for item in container[:_MAX_SPEC_ITEMS]:
            if isinstance(item, dict):
                fields = {norm_key(key): value for key, value in list(item.items())[:16]}
                name = next((fields[k] for k in _PAIR_KEYS if isinstance(fields.get(k), str)), None)
                value = next((fields[k] for k in _PAIR_VALUES if k in fields), None)
                if name is not None and value is not None:
                    yield name, value


def _name(key: str) -> str:
    name = _NAME_CACHE.get(key)
    if name is None:
        name = clean_text(key)
        if len(key) <= MAX_KEY_LEN:
            if len(_NAME_CACHE) >= _NAME_CACHE_MAX:
                _NAME_CACHE.clear()
            _NAME_CACHE[key] = name
    return name


def _add(attributes: dict[str, str], key: str, value: Any) -> None:
    if len(key) > MAX_KEY_LEN * 4:
        return
    if isinstance(value, str):
        text: str | None = value
    elif isinstance(value, list) and value and all(isinstance(item, str) for item in value[:8]):
        text = ", ".join(value[:8])
    else:
        text = scalar_text(value)
    if not text or len(text) > MAX_VALUE_LEN * 4:
        return
    name = _name(key)
    if not name or len(name) > MAX_KEY_LEN or name in attributes:
        return
    cleaned = clean_text(text)
    if cleaned and len(cleaned) <= MAX_VALUE_LEN:
        attributes[name] = cleaned


def collect_attributes(
    objects: Iterable[tuple[tuple[str, ...], dict[str, Any]]],
    consumed: Mapping[tuple[str, ...], Set[str]],
) -> dict[str, str]:
    """Attributes from ``objects`` (product object first), skipping ``consumed`` fields."""
    pairs: list[tuple[str, Any]] = []
    scalars: list[tuple[str, Any]] = []
    for number, (path, obj) in enumerate(objects):
        used = consumed.get(path, ())
        for key, value in islice(obj.items(), _MAX_SPEC_ITEMS):
            if key in used:
                continue
            if number == 0 and key_info(key).spec:
                found = list(islice(_pairs(value), _MAX_SPEC_ITEMS))
                if found:
                    pairs.extend(found)
                    continue
            if not isinstance(value, dict | list):
                scalars.append((key, value))
    attributes: dict[str, str] = {}
    for key, value in chain(scalars, pairs):
        _add(attributes, key, value)
        if len(attributes) >= MAX_ATTRIBUTES:
            break
    return attributes
