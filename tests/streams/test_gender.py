"""Gender groups and sizes."""

from __future__ import annotations

from typing import Any

import pytest

from prodcat.streams.gender import gender_words, resolve_gender
from prodcat.streams.sizes import parse_sizes, sizes_from_options


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["Men"], "men"),
        (["Women's"], "women"),
        (["Male"], "men"),
        (["F"], "women"),
        (["m"], "men"),
        (["Ladies"], "women"),
        (["Unisex"], "unisex"),
        (["Men, Women"], "unisex"),
        (["Boys"], "boys"),
        (["Girls"], "girls"),
        (["Boys & Girls"], "kids"),
        (["Kids"], "kids"),
        (["Infant"], "baby"),
        (["Women", "Kids-Girls"], "girls"),
        (["Men", "Adults-Men"], "men"),
        (["Unisex", "Kids-Unisex"], "kids"),
        (["Womenswear"], None),
        (["Electronics"], None),
        (["Fm"], None),
        ([""], None),
    ],
)
def test_gender(texts: list[str], expected: str | None) -> None:
    groups: set[str] = set()
    for text in texts:
        groups |= gender_words(text)
    assert resolve_gender(groups) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("S, M | L; XL", ["S", "M", "L", "XL"]),
        (["S", " M ", "", "S"], ["S", "M"]),
        ([38, 40.5], ["38", "40.5"]),
        (42, ["42"]),
        ("x" * 40, []),
        (True, []),
        ({"size": "M"}, []),
        (",".join(str(i) for i in range(100)), [str(i) for i in range(30)]),
    ],
)
def test_sizes(value: Any, expected: list[str]) -> None:
    assert parse_sizes(value) == expected


def test_sizes_from_option_lists() -> None:
    product = {
        "styleOptions": [
            {"name": "Size", "value": "2YRS"},
            {"name": "Size", "value": "4YRS"},
            {"name": "Colour", "value": "Red"},
        ],
        "crossLinks": [{"key": "More", "value": "x"}],
    }
    assert sizes_from_options(product) == ["2YRS", "4YRS"]
    assert sizes_from_options({"variants": []}) == []
