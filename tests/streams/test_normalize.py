"""normalize_event on real feed records, on garbage, and over the whole shared datasets."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.validation import validate

from prodcat.streams.exceptions import NormalizationError, StreamsError
from prodcat.streams.normalize import MAX_EVENT_BYTES, normalize_event

REPO_ROOT = Path(__file__).resolve().parents[2]
SEEN_AT = 1_700_000_000_000


def data_dir() -> Path:
    return Path(os.environ.get("PRODCAT_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="module")
def product_schema() -> Any:
    with (REPO_ROOT / "schemas" / "product.avsc").open(encoding="utf-8") as handle:
        return fastavro.parse_schema(json.load(handle))


@pytest.fixture(scope="module")
def dataset_dir() -> Path:
    path = data_dir()
    if not (path / "flipkart").is_dir():
        pytest.skip(f"shared data not found at {path}; set PRODCAT_DATA_DIR")
    return path


def csv_events(path: Path) -> Iterator[bytes]:
    """Each CSV row as a JSON object of its columns (strings, as csv.DictReader gives them)."""
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            yield json.dumps(row).encode("utf-8")


def first_row(path: Path) -> bytes:
    return next(csv_events(path))


def normalize(raw: bytes, feed: str | None = "test", key: bytes | None = None) -> dict[str, Any]:
    return normalize_event(raw, feed=feed, key=key, seen_at_ms=SEEN_AT)


def kind_of(raw: bytes) -> str:
    with pytest.raises(NormalizationError) as info:
        normalize(raw)
    return info.value.kind


def obj(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


# -- real records ---------------------------------------------------------------------------------


def test_flipkart_row(dataset_dir: Path, product_schema: Any) -> None:
    product = normalize(first_row(dataset_dir / "flipkart" / "flipkart_999_full.csv"), "flipkart")
    assert validate(product, product_schema)
    assert product["title"] == "Alisha Solid Women's Cycling Shorts"
    assert product["brand"] == "Alisha"
    assert product["category_path"] == [
        "Clothing",
        "Women's Clothing",
        "Lingerie, Sleep & Swimwear",
        "Shorts",
        "Alisha Shorts",
        "Alisha Solid Women's Cycling Shorts",
    ]
    assert product["price"] == {"value": 379.0, "currency": None}
    assert product["list_price"] == {"value": 999.0, "currency": None}
    assert product["gender"] == "women"
    assert product["source_id"] == "c2d766ca982eca8304150849735ffef9"
    assert len(product["image_urls"]) == 4
    assert product["image_urls"][0] == (
        "http://img5a.flixcart.com/image/short/u/4/a/"
        "altht-3p-21-alisha-38-original-imaeh2d5vm5zbtgg.jpeg"
    )
    assert product["product_url"].startswith("http://www.flipkart.com/alisha-solid-women-s-cycling")
    assert product["description"].startswith("Key Features of Alisha Solid Women's Cycling Shorts")
    # Unused short columns and the parsed Ruby-hash product_specifications become attributes.
    assert product["attributes"]["pid"] == "SRTEH2FF9KEDEFGF"
    assert product["attributes"]["Fabric"] == "Cotton Lycra"
    assert product["attributes"]["Ideal For"] == "Women's"
    assert product["feed"] == "flipkart"
    assert product["seen_at"] == SEEN_AT


def test_flipkart_20k_row(dataset_dir: Path, product_schema: Any) -> None:
    product = normalize(first_row(dataset_dir / "flipkart" / "flipkart_20k.csv"), "flipkart")
    assert validate(product, product_schema)
    assert product["title"] == "Alisha Solid Women's Cycling Shorts"
    assert product["category_path"][:2] == ["Clothing", "Women's Clothing"]
    assert product["price"] == {"value": 379.0, "currency": None}
    assert product["image_urls"] == []


def test_myntra_style(dataset_dir: Path, product_schema: Any) -> None:
    raw = (dataset_dir / "myntra" / "style_json" / "10000.json").read_bytes()
    product = normalize(raw, "myntra")
    assert validate(product, product_schema)
    assert product["title"] == "Palm Tree Girls Sp Jace Sko White Skirts"
    assert product["brand"] == "Palm Tree"
    assert product["source_id"] == "10000"
    assert product["category_path"] == ["Apparel", "Bottomwear", "Skirts"]
    assert product["price"] == {"value": 324.0, "currency": None}
    assert product["list_price"] == {"value": 649.0, "currency": None}
    # gender "Women" with ageGroup "Kids-Girls": the more specific group wins.
    assert product["gender"] == "girls"
    assert product["sizes"] == ["2YRS", "4YRS", "6YRS", "8YRS"]
    assert product["image_urls"][0] == (
        "http://assets.myntassets.com/v1/images/style/properties/"
        "df30bc92249a83ec84b5ba682bf5a0fa_images.jpg"
    )
    assert len(product["image_urls"]) == 20
    assert product["description"].startswith("Wash Care Machine Wash separately in cold water")
    assert "<" not in product["description"]
    assert product["product_url"] == (
        "Skirts/Palm-Tree/Palm-Tree-Girls-Sp-Jace-Sko-White-Skirts/10000/buy"
    )
    assert product["attributes"]["baseColour"] == "White"
    assert product["attributes"]["Pattern"] == "Printed"
    assert "meta" not in product["attributes"]


def test_myntra_men(dataset_dir: Path) -> None:
    genders = Counter(
        normalize(path.read_bytes(), "myntra")["gender"]
        for path in sorted((dataset_dir / "myntra" / "style_json").glob("*.json"))
    )
    # labels: 62 Adults-Men, 30 Adults-Women, 5 Kids-Girls, 2 Adults-Unisex, 1 Kids-Boys
    assert genders == {"men": 62, "women": 30, "girls": 5, "unisex": 2, "boys": 1}


@pytest.mark.slow
def test_whole_datasets(dataset_dir: Path, product_schema: Any) -> None:
    """Every record gives a schema-valid Product or a NormalizationError; few dead letters.

    flipkart_999_full.csv holds about 4,000 lines of bare commas (rows of empty columns): those
    must be dead letters of kind ``empty``; of the other records at most 1% may be dead letters.
    """
    sources = {
        "flipkart_20k": csv_events(dataset_dir / "flipkart" / "flipkart_20k.csv"),
        "flipkart_999_full": csv_events(dataset_dir / "flipkart" / "flipkart_999_full.csv"),
        "myntra": (
            path.read_bytes()
            for path in sorted((dataset_dir / "myntra" / "style_json").glob("*.json"))
        ),
    }
    products: dict[str, int] = {}
    for name, events in sources.items():
        feed = name.split("_")[0]
        ok, blank, dead = 0, 0, Counter[str]()
        ids: set[str] = set()
        for raw in events:
            is_blank = not any(str(value).strip() for value in json.loads(raw).values())
            blank += is_blank
            try:
                product = normalize(raw, feed)
            except NormalizationError as exc:
                dead[exc.kind] += 1
                assert exc.kind == "empty" or not is_blank
                continue
            assert validate(product, product_schema), product
            ids.add(product["product_id"])
            ok += 1
        total = ok + dead.total()
        print(f"{name}: {total} records ({blank} blank), {ok} products, dead {dict(dead)}")
        assert dead["empty"] == blank
        assert dead.total() - blank <= (total - blank) * 0.01, (name, dead)
        assert len(ids) == ok  # the feeds' ids are unique, so the product ids are too
        products[name] = ok
    assert products == {"flipkart_20k": 20_000, "flipkart_999_full": 999, "myntra": 100}


# -- garbage --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"not json at all", "not_json"),
        (b"", "empty"),
        (b"  \n ", "empty"),
        (b'{"title": "unterminated', "not_json"),
        (b'{"title": "\xff\xfe shoe"}', "not_utf8"),
        (b"\xc3\x28", "not_utf8"),
        (b"{}", "empty"),
        (b'{"title": "  ", "brand": null, "tags": [], "meta": {}}', "empty"),
        (b"[1, 2, 3]", "not_object"),
        (b"42", "not_object"),
        (b"null", "not_object"),
        (b'"a string"', "not_object"),
        (b"true", "not_object"),
        (b'{"brand": "Nike", "price": 5}', "no_title"),
        (b'{"title": {"en": "Shoe"}}', "wrong_type"),
        (b'{"name": ["Shoe"]}', "wrong_type"),
        (b'{"title": true}', "wrong_type"),
        (b"[" * 10_000, "invalid"),
        (b"[" * 10_000 + b"]" * 10_000, "invalid"),
        (b'{"title": "x", "a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "invalid"),
    ],
)
def test_garbage_kinds(raw: bytes, kind: str) -> None:
    assert kind_of(raw) == kind


def test_too_large_event() -> None:
    assert kind_of(obj(title="x" * 5_000_000)) == "too_large"
    assert kind_of(b" " * (MAX_EVENT_BYTES + 1)) == "too_large"


def test_too_long_title_after_cleaning() -> None:
    assert kind_of(obj(title="word " * 300)) == "too_large"
    # Markup does not count: this title is short once the tags are gone.
    title = "<b>" * 200 + "Shoe" + "</b>" * 200
    assert normalize(obj(title=title))["title"] == "Shoe"


def test_long_description_is_truncated() -> None:
    product = normalize(obj(title="Shoe", description="abc " * 60_000))
    assert len(product["description"]) <= 100_000


def test_huge_numbers() -> None:
    digits = "9" * 5000
    raw = ('{"title": "Shoe", "price": ' + digits + ', "rating": ' + digits + "}").encode()
    product = normalize(raw)
    assert product["price"] is None
    assert "rating" not in product["attributes"]
    assert normalize(obj(title="Shoe", price=1e308, mrp=float("inf")))["price"] is None
    assert kind_of(('{"title": ' + digits + "}").encode()) == "no_title"


def test_deep_nesting_inside_object_is_walked_boundedly() -> None:
    nested: Any = "http://example.com/deep.jpg"
    for _ in range(500):
        nested = {"image": nested}
    product = normalize(json.dumps({"title": "Shoe", "x": nested}).encode())
    assert product["image_urls"] == []  # deeper than the image walk goes


def test_only_normalization_errors_escape() -> None:
    assert issubclass(NormalizationError, StreamsError)
    for raw in (b"\x00\x01\x02", b"{" * 100_000, b'{"title": "\\ud800"}', b"\xef\xbb\xbf{}"):
        try:
            normalize(raw)
        except NormalizationError as exc:
            assert exc.kind in {"not_json", "invalid", "empty", "not_utf8"}
            assert len(exc.message) < 300


def test_non_bytes_input_is_invalid() -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_event(123, feed=None, key=None, seen_at_ms=0)  # type: ignore[arg-type]
    assert info.value.kind == "invalid"
    with pytest.raises(NormalizationError):
        normalize_event(b'{"title": "x"}', feed=None, key=None, seen_at_ms=2**70)


def test_error_is_picklable() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(NormalizationError("no_title", "nothing")))
    assert (error.kind, error.message) == ("no_title", "nothing")


# -- identity -------------------------------------------------------------------------------------


def test_product_id_from_source_id_and_feed() -> None:
    raw = obj(uniq_id="abc", title="Shoe")
    first, second = normalize(raw, "f1"), normalize(raw, "f1")
    assert first["product_id"] == second["product_id"]
    assert first["source_id"] == "abc"
    assert normalize(raw, "f2")["product_id"] != first["product_id"]
    assert normalize(raw, None)["feed"] == "unknown"
    # Another title, same id: same product (a new version of it).
    changed = normalize(obj(uniq_id="abc", title="Shoe v2"), "f1")
    assert changed["product_id"] == first["product_id"]
    assert changed["content_hash"] != first["content_hash"]


def test_product_id_falls_back_to_key_then_content() -> None:
    raw = obj(title="Shoe", brand="Acme")
    keyed = normalize(raw, key=b"SKU-1")
    assert keyed["source_id"] == "SKU-1"
    assert keyed["product_id"] != normalize(raw, key=b"SKU-2")["product_id"]
    # A body id wins over the key.
    assert normalize(obj(title="Shoe", sku="S9"), key=b"SKU-1")["source_id"] == "S9"
    anonymous = normalize(raw)
    assert anonymous["source_id"] is None
    assert anonymous["product_id"] == normalize(raw)["product_id"]
    assert anonymous["product_id"] != normalize(obj(title="Boot", brand="Acme"))["product_id"]
    # Price is not identity.
    assert (
        normalize(obj(title="Shoe", brand="Acme", price=5))["product_id"]
        == (anonymous["product_id"])
    )


def test_content_hash_ignores_seen_at() -> None:
    raw = obj(title="Shoe", price="$5")
    first = normalize_event(raw, feed="f", key=None, seen_at_ms=1)
    second = normalize_event(raw, feed="f", key=None, seen_at_ms=2)
    assert first["content_hash"] == second["content_hash"]
    assert first["product_id"] == second["product_id"]
    assert len(first["content_hash"]) == 40


# -- field detection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["title", "name", "product_name", "productName", "ProductName", "productDisplayName"]
)
def test_title_aliases(key: str) -> None:
    assert normalize(json.dumps({key: " Red  Shoe "}).encode())["title"] == "Red Shoe"


def test_wrapped_record() -> None:
    raw = {
        "meta": {"id": "request-1", "name": "api"},
        "data": {
            "id": 7,
            "productDisplayName": "Blue Kurta",
            "brandName": "Acme",
            "price": "₹1,299",
            "colour": "Blue",
            "productDescriptors": {"description": {"value": "<p>Soft &amp; light</p>"}},
        },
    }
    product = normalize(json.dumps(raw).encode())
    assert product["title"] == "Blue Kurta"
    assert product["source_id"] == "7"
    assert product["brand"] == "Acme"
    assert product["price"] == {"value": 1299.0, "currency": "INR"}
    assert product["description"] == "Soft & light"
    assert product["attributes"] == {"colour": "Blue"}


def test_nested_brand_object_is_not_a_title() -> None:
    assert kind_of(obj(brand={"name": "Nike"}, price=5)) == "no_title"
    assert normalize(obj(title="Shoe", brand={"name": "Nike"}))["brand"] == "Nike"


def test_fields_detected_by_alias() -> None:
    product = normalize(
        obj(
            ProductTitle="Runner",
            Manufacturer="Acme",
            Breadcrumbs=["Shoes", "Running"],
            sale_price="12,50 EUR",
            regular_price="15,00 EUR",
            Sex="F",
            available_sizes="S, M | L",
            link="https://shop.example/p/1",
            merchant_name="Example Shop",
            color="red",
            in_stock=True,
            weight=0.5,
        )
    )
    assert product["title"] == "Runner"
    assert product["brand"] == "Acme"
    assert product["category_path"] == ["Shoes", "Running"]
    assert product["price"] == {"value": 12.5, "currency": "EUR"}
    assert product["list_price"] == {"value": 15.0, "currency": "EUR"}
    assert product["gender"] == "women"
    assert product["sizes"] == ["S", "M", "L"]
    assert product["product_url"] == "https://shop.example/p/1"
    assert product["retailer"] == "Example Shop"
    assert product["attributes"] == {"color": "red", "in_stock": "true", "weight": "0.5"}


def test_gender_from_category_path_when_no_field() -> None:
    product = normalize(obj(title="Kurta", category="Clothing >> Men's Clothing >> Kurtas"))
    assert product["gender"] == "men"
    assert normalize(obj(title="Kurta", category="Home >> Decor"))["gender"] is None


def test_attributes_are_bounded() -> None:
    fields: dict[str, Any] = {f"field{i}": f"value {i}" for i in range(100)}
    fields["k" * 65] = "long key"
    fields["long_value"] = "v" * 257
    product = normalize(json.dumps({"title": "Shoe", **fields}).encode())
    attributes = product["attributes"]
    assert len(attributes) == 32
    assert all(len(key) <= 64 and len(value) <= 256 for key, value in attributes.items())


def test_text_fields_are_clean() -> None:
    product = normalize(
        obj(
            title="  \uff32\uff45\uff44\u00a0Shoe\u200b\x07 ",
            brand="\ufb01ne &amp; co",
            description="<div>Line one<br/>line&nbsp;two</div><script>x()</script>",
        )
    )
    assert product["title"] == "Red Shoe"  # NFKC: full-width letters become ASCII
    assert product["brand"] == "fine & co"
    assert product["description"] == "Line one line two"


def test_bad_price_is_not_fatal() -> None:
    for price in ({"weird": True}, [1, 2], True, "call us", -5, "NaN", 2e9, 0):
        product = normalize(json.dumps({"title": "Shoe", "price": price}).encode())
        assert product["price"] is None, price
