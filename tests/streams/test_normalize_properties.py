"""Property tests: normalize_event is total (Product or NormalizationError), deterministic, and its
text is clean, for arbitrary bytes and arbitrary JSON objects."""

from __future__ import annotations

import io
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.validation import validate
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from prodcat.streams.exceptions import NormalizationError
from prodcat.streams.normalize import normalize_event
from prodcat.streams.text import clean_text

SCHEMA = fastavro.parse_schema(
    json.loads((Path(__file__).resolve().parents[2] / "schemas" / "product.avsc").read_text())
)
KINDS = {"too_large", "not_utf8", "not_json", "not_object", "empty", "no_title", "wrong_type"}
KINDS |= {"invalid"}
TAG = re.compile(r"<[A-Za-z/!][^<>]*>")
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Keys a feed might use, so that generated objects hit the detection code, plus arbitrary text.
FIELD_KEYS = st.sampled_from(
    [
        "title",
        "name",
        "productName",
        "brand",
        "brandName",
        "description",
        "category",
        "product_category_tree",
        "breadcrumbs",
        "price",
        "discounted_price",
        "retail_price",
        "mrp",
        "currency",
        "gender",
        "ageGroup",
        "sizes",
        "size",
        "image",
        "images",
        "imageURL",
        "product_url",
        "link",
        "seller",
        "id",
        "uniq_id",
        "sku",
        "data",
        "attributes",
        "product_specifications",
        "styleOptions",
        "masterCategory",
        "subCategory",
        "articleType",
    ]
)
TEXT = st.text(max_size=40) | st.sampled_from(
    [
        "Men",
        "Women's Clothing",
        "Kids-Girls",
        "F",
        "Rs. 1,299",
        "₹999",
        "$12.50",
        "12,50 EUR",
        "1299 INR",
        "A >> B >> C",
        "A > B",
        "A | B",
        "A // B",
        "T-Shirts/Tops",
        '["X >> Y >> Z"]',
        '["http://img.example/a.jpg", "http://img.example/b.png"]',
        "http://img.example/c.jpeg",
        "<p>Hello&nbsp;<b>world</b></p>",
        "&amp;lt;b&amp;gt;",
        '{"product_specification"=>[{"key"=>"Fabric", "value"=>"Cotton"}]}',
        "S, M | L",
        "",
        " ",
        "\u200b",
        "\ud800",
        "NaN",
        "-5",
        "1e400",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(FIELD_KEYS | st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
OBJECTS = st.dictionaries(FIELD_KEYS | st.text(max_size=10), JSON_VALUES, max_size=8)


def to_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def text_fields(product: dict[str, Any]) -> list[str]:
    texts = [product[name] for name in ("title", "brand", "description", "gender")]
    texts += [product[name] for name in ("retailer", "product_url", "source_id", "feed")]
    texts += product["category_path"] + product["sizes"] + product["image_urls"]
    texts += list(product["attributes"]) + list(product["attributes"].values())
    for money in (product["price"], product["list_price"]):
        if money is not None and money["currency"] is not None:
            texts.append(money["currency"])
    return [text for text in texts if text is not None]


def check_product(product: dict[str, Any]) -> None:
    assert validate(product, SCHEMA)
    fastavro.schemaless_writer(io.BytesIO(), SCHEMA, product)  # encodable (no lone surrogates)
    for text in text_fields(product):
        assert text, product
        assert text == text.strip()
        assert not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text), text
    for text in [product["title"], product["description"] or "", *product["category_path"]]:
        assert TAG.search(text) is None, text
    for money in (product["price"], product["list_price"]):
        if money is not None:
            assert 0 < money["value"] <= 1e9


def outcome(raw: bytes, seen_at_ms: int = 1) -> dict[str, Any] | str:
    try:
        product = normalize_event(raw, feed="prop", key=None, seen_at_ms=seen_at_ms)
    except NormalizationError as exc:
        assert exc.kind in KINDS
        return exc.kind
    check_product(product)
    return product


@SETTINGS
@given(st.binary(max_size=512))
@example(b"\xff")
@example(b"[" * 5000)
@example(b'{"title": "\\udc80 x"}')
def test_arbitrary_bytes(raw: bytes) -> None:
    outcome(raw)


@SETTINGS
@given(OBJECTS)
@example({"title": "x", "price": {"amount": "nan"}})
@example({"title": "&ampamp;lt;b&gt;", "description": "<<b>b>x</b>"})
@example({"data": {"productDisplayName": "Shoe", "id": 1}, "meta": {"id": 2}})
def test_arbitrary_objects(value: dict[str, Any]) -> None:
    raw = to_bytes(value)
    first = outcome(raw, seen_at_ms=1)
    second = outcome(raw, seen_at_ms=2)
    if isinstance(first, str):
        assert first == second
        return
    assert isinstance(second, dict)
    assert first["product_id"] == second["product_id"]
    assert first["content_hash"] == second["content_hash"]
    assert {**first, "seen_at": 2} == second


@SETTINGS
@given(OBJECTS, st.text(max_size=30))
def test_title_is_detected_and_clean(value: dict[str, Any], title: str) -> None:
    result = outcome(to_bytes({**value, "title": title}))
    expected = clean_text(title, compat=True)
    if isinstance(result, dict):
        # The title came from this field unless it cleaned to nothing (then another alias).
        if expected:
            assert result["title"] == expected
    else:
        assert not expected or len(expected) > 1000 or result in KINDS


@SETTINGS
@given(st.text())
@example("&ampamp;lt;b&gt;")
@example("<<b>b>")
@example("&<b></b>lt;")
@example("\uff06lt;b\uff1e")
@example("e\u200b\u0301")
def test_clean_text_is_idempotent(text: str) -> None:
    for compat in (False, True):
        once = clean_text(text, compat=compat)
        assert clean_text(once, compat=compat) == once
        assert once == once.strip()
        assert "  " not in once
        assert TAG.search(once) is None
        assert not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in once)


HTML_TAGS = st.sampled_from(["p", "b", "div", "br", "script", "style", "span", "li", "!--"])


@SETTINGS
@given(
    st.lists(
        st.one_of(
            st.text(max_size=8),
            HTML_TAGS.map(lambda tag: f"<{tag}>"),
            HTML_TAGS.map(lambda tag: f"</{tag}>"),
            st.sampled_from(["&amp;", "&lt;", "&gt;", "&nbsp;", "&#60;", "&#x3c;", "-->", "<"]),
        ),
        max_size=30,
    )
)
def test_html_stripping_leaves_no_tags(parts: list[str]) -> None:
    html = "".join(parts)
    product = outcome(to_bytes({"title": "x", "description": html}))
    assert isinstance(product, dict)
    assert TAG.search(product["description"] or "") is None


@pytest.mark.parametrize("seen_at_ms", [0, 1, 2**62])
def test_product_id_independent_of_seen_at(seen_at_ms: int) -> None:
    raw = to_bytes({"title": "Shoe", "brand": "Acme"})
    product = normalize_event(raw, feed="f", key=None, seen_at_ms=seen_at_ms)
    reference = normalize_event(raw, feed="f", key=None, seen_at_ms=5)
    assert product["product_id"] == reference["product_id"]
    assert product["seen_at"] == seen_at_ms
