"""Stable identifiers of a normalised product: ``product_id`` and ``content_hash``.

Both are SHA-1 hex digests of text built from normalised fields, so they are the same on every
run, process and machine (Python's ``hash()`` is salted per process and is never used).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

from prodcat.schemas.records import Money, Product

__all__ = ["ID_HEX_LEN", "content_hash", "product_id"]

ID_HEX_LEN: Final = 24
_SEP: Final = "\x1f"
_LEVEL_SEP: Final = "\x1e"
_PAIR_SEP: Final = "\x1d"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()


def product_id(
    feed: str,
    source_id: str | None,
    *,
    title: str,
    brand: str | None,
    category_path: list[str],
    product_url: str | None,
) -> str:
    """``sha1(feed \\x1f source_id)`` when the feed gives an id, else a hash of what identifies
    the product (title, brand, category, URL; not price or description, which change)."""
    if source_id is not None:
        return _digest(f"{feed}{_SEP}{source_id}")[:ID_HEX_LEN]
    parts = (
        "content",
        feed,
        title.casefold(),
        (brand or "").casefold(),
        " > ".join(category_path).casefold(),
        product_url or "",
    )
    return _digest(_SEP.join(parts))[:ID_HEX_LEN]


def _money(money: Mapping[str, Any] | None) -> str:
    return "" if money is None else f"{money['value']!r} {money['currency'] or ''}"


def content_hash(product: Mapping[str, Any]) -> str:
    """Hash of a product's content fields and attributes, not of its id or ``seen_at``.

    Fields are joined with separators that text cleaning removes from every value (ASCII unit,
    record and group separators), so different products cannot give the same text.
    """
    attributes = product["attributes"]
    parts = (
        product["feed"],
        product["source_id"] or "",
        product["title"],
        product["brand"] or "",
        _LEVEL_SEP.join(product["category_path"]),
        product["description"] or "",
        product["gender"] or "",
        _LEVEL_SEP.join(product["sizes"]),
        _money(product["price"]),
        _money(product["list_price"]),
        _LEVEL_SEP.join(product["image_urls"]),
        product["product_url"] or "",
        product["retailer"] or "",
        _LEVEL_SEP.join(f"{key}{_PAIR_SEP}{attributes[key]}" for key in sorted(attributes)),
    )
    return _digest(_SEP.join(parts))


def assemble_product(
    *,
    feed: str,
    source_id: str | None,
    title: str,
    brand: str | None,
    category_path: list[str],
    description: str | None,
    gender: str | None,
    sizes: list[str],
    price: Money | None,
    list_price: Money | None,
    image_urls: list[str],
    product_url: str | None,
    retailer: str | None,
    attributes: dict[str, str],
    profile_version: int | None,
    seen_at_ms: int,
) -> Product:
    """The ``Product`` record of these fields, with its stable id and content hash."""
    product: Product = {
        "product_id": product_id(
            feed,
            source_id,
            title=title,
            brand=brand,
            category_path=category_path,
            product_url=product_url,
        ),
        "feed": feed,
        "source_id": source_id,
        "title": title,
        "brand": brand,
        "category_path": category_path,
        "description": description,
        "gender": gender,
        "sizes": sizes,
        "price": price,
        "list_price": list_price,
        "image_urls": image_urls,
        "product_url": product_url,
        "retailer": retailer,
        "attributes": attributes,
        "profile_version": profile_version,
        "content_hash": "",
        "seen_at": seen_at_ms,
    }
    product["content_hash"] = content_hash(product)
    return product
