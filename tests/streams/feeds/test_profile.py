"""FeedProfile as plain data: JSON round trip and validation."""

from __future__ import annotations

import json

import pytest

from prodcat.streams.feeds.infer import infer_profile
from prodcat.streams.feeds.profile import FeedProfile, FieldSource, key_fingerprint

from .synthetic import catalogue


def test_round_trip_through_json() -> None:
    records = [
        {"title": p.title, "cats": list(p.path), "price": p.price, "img": p.image, "shop": "Acme"}
        for p in catalogue(100)
    ]
    profile = infer_profile(records, feed="rt", overrides={"retailer": "shop"})
    profile = FeedProfile.from_dict({**profile.to_dict(), "reason": "first profile"})
    data = json.loads(json.dumps(profile.to_dict()))
    again = FeedProfile.from_dict(data)
    assert again == profile
    assert again.to_dict() == data
    assert data["fields"][0]["role"] == "title"
    assert data["overrides"] == [again.overrides["retailer"].to_dict()]
    assert again.fields["retailer"].sources == ("shop",)
    assert again.reason == "first profile"


def test_field_source_validation() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        FieldSource("colour", ("c",))
    with pytest.raises(ValueError, match="unknown kind"):
        FieldSource("title", ("t",), kind="magic")
    with pytest.raises(ValueError, match="no source"):
        FieldSource("title", ())
    with pytest.raises(ValueError, match="confidence"):
        FieldSource("title", ("t",), confidence=1.5)
    with pytest.raises(ValueError, match="holds a source"):
        FeedProfile(feed="f", fields={"brand": FieldSource("title", ("t",))})


def test_examples_are_short_and_distinct() -> None:
    source = FieldSource("title", ("t",)).with_examples(["a", "a", "b" * 500, "c", "d"])
    assert source.examples[0] == "a"
    assert len(source.examples) == 3
    assert len(source.examples[1]) <= 120


def test_fingerprint_ignores_order() -> None:
    assert key_fingerprint(["a", "b"]) == key_fingerprint(["b", "a", "a"])
    assert key_fingerprint(["a"]) != key_fingerprint(["b"])
