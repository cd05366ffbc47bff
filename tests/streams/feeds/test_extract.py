"""Applying a profile: the Product dict, the dead-letter kinds, and speed-relevant caching."""

from __future__ import annotations

import json
from typing import Any

import pytest

from prodcat.streams.exceptions import NormalizationError
from prodcat.streams.feeds.extract import apply_profile, compile_profile, parse_event
from prodcat.streams.feeds.infer import infer_profile
from prodcat.streams.feeds.profile import FeedProfile, FieldSource
from prodcat.streams.normalize import normalize_event

from .synthetic import catalogue

PRODUCTS = catalogue(200)
RECORDS = [
    {
        "sku": p.sku,
        "name": p.title,
        "brand": p.brand,
        "category": " > ".join(p.path),
        "price": f"{p.price:.2f}",
        "url": p.url,
        "images": json.dumps([p.image, p.image.replace(".jpg", "-2.jpg")]),
        "gender": "Women" if i % 2 else "Men",
        "size": "S, M, L",
        "colour": "Red",
    }
    for i, p in enumerate(PRODUCTS)
]
PROFILE = infer_profile(RECORDS, feed="shop")


def _raw(record: Any) -> bytes:
    return json.dumps(record).encode()


def _apply(raw: Any, profile: FeedProfile = PROFILE, **kwargs: Any) -> dict[str, Any]:
    return apply_profile(
        raw, profile, feed="shop", key=kwargs.pop("key", None), seen_at_ms=1, **kwargs
    )


def test_product_has_the_keys_and_types_of_normalize_event() -> None:
    raw = _raw(RECORDS[1])
    new = _apply(raw)
    old = normalize_event(raw, feed="shop", key=None, seen_at_ms=1)
    assert list(new) == list(old)
    for key, value in old.items():
        assert type(new[key]) is type(value) or new[key] is None or value is None, key
    assert new["title"] == PRODUCTS[1].title
    assert new["category_path"] == PRODUCTS[1].path
    assert new["price"] == {"value": PRODUCTS[1].price, "currency": None}
    assert new["image_urls"][0] == PRODUCTS[1].image
    assert len(new["image_urls"]) == 2
    assert new["product_url"] == PRODUCTS[1].url
    assert new["source_id"] == PRODUCTS[1].sku
    assert new["gender"] == "women"
    assert new["sizes"] == ["S", "M", "L"]
    assert new["attributes"]["colour"] == "Red"
    assert new["seen_at"] == 1
    assert len(new["content_hash"]) == 40


def test_a_parsed_record_gives_the_same_product() -> None:
    assert _apply(RECORDS[2]) == _apply(_raw(RECORDS[2]))


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_object"),
        (b"", "empty"),
        (b"\xff\xfe{", "not_utf8"),
        (b'{"name": "", "price": ""}', "empty"),
        (b'{"price": "12.00", "sku": "A-1"}', "no_title"),
        (b'{"name": {"en": "x"}, "price": "1"}', "wrong_type"),
        (b'{"name": "' + b"x" * 1200 + b'"}', "too_large"),
        (b"x" * 1_000_001, "too_large"),
    ],
)
def test_unusable_input_raises_the_usual_kinds(raw: bytes, kind: str) -> None:
    with pytest.raises(NormalizationError) as info:
        _apply(raw)
    assert info.value.kind == kind


def test_bom_and_big_integers_are_read() -> None:
    raw = "\ufeff".encode() + b'{"name": "Kettle", "sku": 123456789012345678901234567890}'
    assert _apply(raw)["title"] == "Kettle"


def test_seen_at_must_be_an_avro_long() -> None:
    with pytest.raises(NormalizationError, match="seen_at_ms"):
        apply_profile(_raw(RECORDS[0]), PROFILE, feed="shop", key=None, seen_at_ms=2**70)


def test_kafka_key_is_the_source_id_when_the_feed_has_none() -> None:
    profile = infer_profile([{"name": p.title} for p in PRODUCTS], feed="k")
    product = _apply(b'{"name": "Tea Pot"}', profile, key=b"k-17")
    assert product["source_id"] == "k-17"


def test_fallback_title_source() -> None:
    profile = FeedProfile(
        feed="f",
        fields={"title": FieldSource("title", ("short", "long"))},
    )
    assert _apply({"short": "", "long": "Long name"}, profile)["title"] == "Long name"


def test_cents_scale_and_list_price() -> None:
    profile = FeedProfile(
        feed="f",
        fields={
            "title": FieldSource("title", ("t",)),
            "price": FieldSource("price", ("p",), kind="money", scale=0.01, currency="EUR"),
            "list_price": FieldSource(
                "list_price", ("l",), kind="money", scale=0.01, currency="EUR"
            ),
        },
    )
    product = _apply({"t": "Cheese", "p": 499, "l": 599}, profile)
    assert product["price"] == {"value": 4.99, "currency": "EUR"}
    assert product["list_price"] == {"value": 5.99, "currency": "EUR"}
    assert _apply({"t": "Cheese", "p": 499, "l": 499}, profile)["list_price"] is None
    assert _apply({"t": "Cheese", "l": 599}, profile)["price"] == {"value": 5.99, "currency": "EUR"}


def test_currency_column_applies_to_prices() -> None:
    profile = FeedProfile(
        feed="f",
        fields={
            "title": FieldSource("title", ("t",)),
            "price": FieldSource("price", ("p",), kind="money"),
            "currency": FieldSource("currency", ("c",), kind="currency"),
        },
    )
    assert _apply({"t": "Mug", "p": "3.50", "c": "GBP"}, profile)["price"] == {
        "value": 3.5,
        "currency": "GBP",
    }


@pytest.mark.parametrize(
    ("source", "value", "expected"),
    [
        (FieldSource("category", ("c",), kind="list"), ["A", "", "undefined", "B"], ["A", "B"]),
        (FieldSource("category", ("c",), kind="list"), '["A", "B"]', ["A", "B"]),
        (
            FieldSource("category", ("c",), kind="delimited", delimiter=">>", split="spaced"),
            ["A >> B >> C"],
            ["A", "B", "C"],
        ),
        (FieldSource("category", ("c",), kind="delimited", delimiter="|"), "A|B", ["A", "B"]),
        (
            FieldSource("category", ("c",), kind="delimited", delimiter=">", split="spaced"),
            "A &gt; B",
            ["A", "B"],
        ),
        (FieldSource("category", ("c",), kind="google_id"), "212", ["Apparel", "Shirts"]),
        (FieldSource("category", ("c",), kind="google_id"), 999, []),
    ],
)
def test_category_kinds(source: FieldSource, value: Any, expected: list[str]) -> None:
    profile = FeedProfile(
        feed="f", fields={"title": FieldSource("title", ("t",)), "category": source}
    )
    taxonomy = {212: ["Apparel", "Shirts"]}
    product = apply_profile(
        {"t": "x", "c": value}, profile, feed="f", key=None, seen_at_ms=0, google_taxonomy=taxonomy
    )
    assert product["category_path"] == expected


def test_size_options_and_nested_lists() -> None:
    profile = FeedProfile(
        feed="f",
        fields={
            "title": FieldSource("title", ("data.name",)),
            "sizes": FieldSource("sizes", ("data",), kind="options"),
            "image_urls": FieldSource("image_urls", ("data.media[].url",), kind="urls"),
        },
    )
    record = {
        "data": {
            "name": "Shirt",
            "options": [{"name": "Size", "value": "M"}, {"name": "Size", "value": "L"}],
            "media": [
                {"url": "https://x.test/a.png"},
                {"url": "https://x.test/b.png"},
                {"url": "relative.png"},
            ],
        }
    }
    product = _apply(record, profile)
    assert product["sizes"] == ["M", "L"]
    assert product["image_urls"] == ["https://x.test/a.png", "https://x.test/b.png"]


def test_compiled_plans_are_cached_per_profile() -> None:
    assert compile_profile(PROFILE) is compile_profile(PROFILE)
    copy = FeedProfile.from_dict(PROFILE.to_dict())
    assert compile_profile(copy) is not compile_profile(PROFILE)
    assert _apply(_raw(RECORDS[3]), copy) == _apply(_raw(RECORDS[3]))


def test_parse_event_rejects_non_bytes() -> None:
    with pytest.raises(NormalizationError) as info:
        parse_event("text")  # type: ignore[arg-type]  # deliberately the wrong type
    assert info.value.kind == "invalid"
