"""Field detection: alias tables and a bounded index of a record's keys.

Keys are compared after normalisation (lower case, letters and digits only), so ``product_name``,
``productName``, ``ProductName`` and ``Product-Name`` are the same key. A :class:`FieldIndex`
holds the keys of the record and of nested objects up to two levels below it (``data.id``,
``data.productDescriptors.description``), skipping objects whose key says they describe
something else (a brand, a category, an image, a seller, ...). Candidates for a field are ranked
by: inside the product object (the object that holds the title) first, then shallower first, then
the alias order of the table.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any, Final, NamedTuple

__all__ = [
    "ALIASES",
    "BRAND",
    "CATEGORY",
    "CURRENCY",
    "DESCRIPTION",
    "GENDER",
    "ID",
    "LIST_PRICE",
    "PRICE",
    "RETAILER",
    "SALE_PRICE",
    "SIZES",
    "TITLE",
    "URL",
    "Entry",
    "FieldIndex",
    "KeyInfo",
    "key_info",
    "norm_key",
]

TITLE: Final = "title"
BRAND: Final = "brand"
DESCRIPTION: Final = "description"
CATEGORY: Final = "category"
SALE_PRICE: Final = "sale_price"
PRICE: Final = "price"
LIST_PRICE: Final = "list_price"
CURRENCY: Final = "currency"
GENDER: Final = "gender"
SIZES: Final = "sizes"
URL: Final = "url"
RETAILER: Final = "retailer"
ID: Final = "id"

ALIASES: Final[Mapping[str, tuple[str, ...]]] = {
    TITLE: (
        "title",
        "producttitle",
        "productname",
        "productdisplayname",
        "displayname",
        "itemtitle",
        "itemname",
        "name",
    ),
    BRAND: ("brand", "brandname", "productbrand", "manufacturer", "manufacturername", "make"),
    DESCRIPTION: (
        "description",
        "productdescription",
        "longdescription",
        "descriptionhtml",
        "bodyhtml",
        "desc",
        "details",
        "productdetails",
        "shortdescription",
        "summary",
    ),
    CATEGORY: (
        "productcategorytree",
        "categorytree",
        "categorypath",
        "productcategorypath",
        "breadcrumbs",
        "breadcrumb",
        "categories",
        "productcategories",
        "category",
        "productcategory",
        "categoryname",
        "producttype",
        "googleproductcategory",
        "merchantcategory",
        "taxonomy",
    ),
    SALE_PRICE: (
        "discountedprice",
        "discountprice",
        "saleprice",
        "specialprice",
        "offerprice",
        "sellingprice",
        "finalprice",
        "currentprice",
        "dealprice",
        "promoprice",
        "pricesale",
    ),
    PRICE: ("price", "productprice", "pricevalue", "displayprice", "searchprice"),
    LIST_PRICE: (
        "retailprice",
        "listprice",
        "mrp",
        "originalprice",
        "regularprice",
        "wasprice",
        "oldprice",
        "priceold",
        "compareatprice",
        "msrp",
        "rrp",
        "strikeprice",
        "fullprice",
    ),
    CURRENCY: ("currency", "currencycode", "pricecurrency", "currencyiso", "curr"),
    GENDER: (
        "gender",
        "sex",
        "idealfor",
        "targetgender",
        "agegroup",
        "targetaudience",
        "audience",
        "department",
    ),
    SIZES: ("sizes", "size", "availablesizes", "sizelist", "sizeoptions", "sizename"),
    URL: (
        "producturl",
        "url",
        "link",
        "landingpageurl",
        "productlink",
        "deeplink",
        "awdeeplink",
        "merchantdeeplink",
        "pageurl",
        "canonicalurl",
        "weburl",
        "buyurl",
        "clickurl",
        "href",
    ),
    RETAILER: (
        "retailer",
        "retailername",
        "seller",
        "sellername",
        "merchant",
        "merchantname",
        "store",
        "storename",
        "shop",
        "shopname",
        "soldby",
        "advertiser",
        "advertisername",
    ),
    ID: (
        "uniqid",
        "id",
        "productid",
        "sku",
        "pid",
        "styleid",
        "itemid",
        "offerid",
        "articleid",
        "merchantproductid",
        "awproductid",
        "productcode",
        "asin",
        "gtin",
        "ean",
        "upc",
        "mpn",
    ),
}

# Nested objects under keys containing one of these describe something other than the product
# itself; their keys are not searched for product fields.
_FOREIGN_FRAGMENTS: Final = (
    "categor",
    "brand",
    "type",
    "seller",
    "merchant",
    "retailer",
    "store",
    "image",
    "img",
    "picture",
    "photo",
    "thumb",
    "option",
    "variant",
    "attribute",
    "spec",
    "price",
    "size",
    "meta",
    "manufacturer",
    "vendor",
    "shipping",
    "review",
    "rating",
    "discount",
    "link",
)
_IMAGE_FRAGMENTS: Final = ("image", "img", "picture", "photo", "thumb")
_SPEC_FRAGMENTS: Final = ("attribute", "spec", "feature", "propert")
_MAX_DEPTH: Final = 2
_MAX_ENTRIES: Final = 2000
_NON_ALNUM: Final = re.compile(r"[^0-9a-z]+")
_KEY_CACHE_MAX: Final = 8192
_CACHED_KEY_LEN: Final = 64
_FIELDS_OF: Final[Mapping[str, tuple[tuple[str, int], ...]]] = {
    alias: tuple(
        (field, aliases.index(alias)) for field, aliases in ALIASES.items() if alias in aliases
    )
    for alias in {alias for aliases in ALIASES.values() for alias in aliases}
}

Path = tuple[str, ...]
Entry = tuple[Path, str, Any]
"""(path of the enclosing object from the root, the key as given, the value)."""


class KeyInfo(NamedTuple):
    """What a key says, computed once per distinct key."""

    normalised: str
    """Lower case, ASCII letters and digits only."""
    fields: tuple[tuple[str, int], ...]
    """(field, alias rank) for each field this key is an alias of."""
    foreign: bool
    """An object under this key describes something other than the product."""
    image: bool
    """The key names an image."""
    spec: bool
    """The key names a container of product attributes (specs, features, properties)."""


_KEY_CACHE: dict[str, KeyInfo] = {}


def _key_info(key: str) -> KeyInfo:
    normalised = _NON_ALNUM.sub("", key.lower())
    return KeyInfo(
        normalised,
        _FIELDS_OF.get(normalised, ()),
        any(fragment in normalised for fragment in _FOREIGN_FRAGMENTS),
        any(fragment in normalised for fragment in _IMAGE_FRAGMENTS),
        any(fragment in normalised for fragment in _SPEC_FRAGMENTS),
    )


def key_info(key: str) -> KeyInfo:
    """The :class:`KeyInfo` of ``key`` (cached for short keys)."""
    info = _KEY_CACHE.get(key)
    if info is None:
        info = _key_info(key)
        if len(key) <= _CACHED_KEY_LEN:
            if len(_KEY_CACHE) >= _KEY_CACHE_MAX:
                _KEY_CACHE.clear()
            _KEY_CACHE[key] = info
    return info


def norm_key(key: str) -> str:
    """``key`` in lower case with everything but ASCII letters and digits removed."""
    return key_info(key).normalised


class FieldIndex:
    """The keys of a record and of its nested product-like objects, by field."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.scope: Path = ()
        self.consumed: dict[Path, set[str]] = {}
        self._objects: dict[Path, dict[str, Any]] = {}
        # field -> [(alias rank, seq, entry)]
        self._by_field: dict[str, list[tuple[int, int, Entry]]] = {}
        by_field = self._by_field
        cached = _KEY_CACHE.get
        count = 0
        queue: deque[tuple[Path, dict[str, Any]]] = deque([((), record)])
        while queue and count < _MAX_ENTRIES:
            path, obj = queue.popleft()
            self._objects[path] = obj
            nest = len(path) < _MAX_DEPTH
            for key, value in obj.items():
                count += 1
                if count > _MAX_ENTRIES:
                    break
                info = cached(key) or key_info(key)
                for field, rank in info.fields:
                    found = by_field.get(field)
                    if found is None:
                        by_field[field] = [(rank, 0, (path, key, value))]
                    else:
                        found.append((rank, len(found), (path, key, value)))
                if nest and isinstance(value, dict) and value and not info.foreign:
                    queue.append(((*path, key), value))

    @property
    def product(self) -> dict[str, Any]:
        """The object that holds the product's fields (the root unless the feed wraps it)."""
        return self._objects.get(self.scope, self.record)

    def objects(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        """The product object first, then the root when they differ."""
        yield self.scope, self.product
        if self.scope:
            yield (), self.record

    def candidates(self, field: str) -> list[Entry]:
        """Entries whose key is an alias of ``field``, best first."""
        found = self._by_field.get(field)
        if not found:
            return []
        if len(found) == 1:
            return [found[0][2]]
        scope, width = self.scope, len(self.scope)
        scored: list[tuple[int, int, int, int, Entry]] = []
        for rank, seq, entry in found:
            path = entry[0]
            if path[:width] == scope:
                scored.append((0, len(path) - width, rank, seq, entry))
            else:
                scored.append((1, len(path), rank, seq, entry))
        scored.sort()  # seq is unique, so entries themselves are never compared
        return [item[4] for item in scored]

    def consume(self, entry: Entry) -> None:
        """Mark an entry as used by a field, so it does not also become an attribute."""
        self.consume_key(entry[0], entry[1])

    def consume_key(self, path: Path, key: str) -> None:
        """Mark the field ``key`` of the object at ``path`` as used."""
        used = self.consumed.get(path)
        if used is None:
            self.consumed[path] = {key}
        else:
            used.add(key)
