"""Sizes: from size fields (lists, or strings separated by commas, pipes or semicolons) and
from option lists whose entries are named "size" (Myntra's ``styleOptions``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import islice
from typing import Any, Final

from prodcat.streams.fields import norm_key
from prodcat.streams.text import clean_text, scalar_text

__all__ = ["MAX_SIZES", "parse_sizes", "sizes_from_options"]

MAX_SIZES: Final = 30
_MAX_SIZE_LEN: Final = 32
_SEPARATORS: Final = re.compile(r"[,|;]")
_OPTION_LIST_WORDS: Final = ("option", "variant", "sku")
_OPTION_NAME_KEYS: Final = ("name", "type", "label", "optionname", "attribute", "key")
_OPTION_VALUE_KEYS: Final = ("value", "valuename", "label", "option", "size")


def _clean(values: Iterable[Any]) -> list[str]:
    sizes: list[str] = []
    for value in values:
        text = scalar_text(value)
        if text is None or isinstance(value, bool):
            continue
        size = clean_text(text, compat=True)
        if size and len(size) <= _MAX_SIZE_LEN and size not in sizes:
            sizes.append(size)
            if len(sizes) == MAX_SIZES:
                break
    return sizes


def parse_sizes(value: Any) -> list[str]:
    """Sizes from a size field's value."""
    if isinstance(value, str):
        return _clean(_SEPARATORS.split(value[: MAX_SIZES * 64]))
    if isinstance(value, list):
        return _clean(item for item in value[: MAX_SIZES * 4] if not isinstance(item, dict))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _clean([value])
    return []


def _option_size(option: dict[str, Any]) -> Any:
    fields = {norm_key(key): value for key, value in list(option.items())[:32]}
    names = (fields.get(key) for key in _OPTION_NAME_KEYS)
    if not any(isinstance(name, str) and "size" in name.lower() for name in names):
        return None
    return next((fields[key] for key in _OPTION_VALUE_KEYS if key in fields), None)


def sizes_from_options(product: dict[str, Any]) -> list[str]:
    """Sizes from lists of option objects (``[{"name": "Size", "value": "M"}, ...]``)."""
    for key, value in islice(product.items(), 256):
        if not isinstance(value, list) or not value:
            continue
        normalised = norm_key(key)
        if not any(word in normalised for word in _OPTION_LIST_WORDS):
            continue
        found = [_option_size(item) for item in value[: MAX_SIZES * 4] if isinstance(item, dict)]
        sizes = _clean(item for item in found if item is not None)
        if sizes:
            return sizes
    return []
