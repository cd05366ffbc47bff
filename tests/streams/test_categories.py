"""Category path parsing: delimiters, JSON-ish list strings, lists, nested category objects."""

from __future__ import annotations

from typing import Any

import pytest

from prodcat.streams.categories import MAX_DEPTH, compose_path, parse_path


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Clothing >> Women's Clothing >> Shorts", ["Clothing", "Women's Clothing", "Shorts"]),
        ("Home > Kitchen > Knives", ["Home", "Kitchen", "Knives"]),
        ("Home/Kitchen/Knives", ["Home", "Kitchen", "Knives"]),
        ("Home // Kitchen // Knives", ["Home", "Kitchen", "Knives"]),
        ("Home | Kitchen | Knives", ["Home", "Kitchen", "Knives"]),
        ("Home \u203a Kitchen \u00bb Knives", ["Home", "Kitchen \u00bb Knives"]),
        ("Home &gt; Kitchen &amp; Dining", ["Home", "Kitchen & Dining"]),
        ("Shoes", ["Shoes"]),
        # The strongest delimiter wins; weaker ones stay inside level names.
        ("Clothing >> T-Shirts/Tops >> Polo | Slim", ["Clothing", "T-Shirts/Tops", "Polo | Slim"]),
        ("Clothing > A/B > C", ["Clothing", "A/B", "C"]),
        ("Clothing | T-Shirts/Tops", ["Clothing", "T-Shirts/Tops"]),
        ("Apparel // T-Shirts/Tops", ["Apparel", "T-Shirts/Tops"]),
        ("Clothing / T-Shirts/Tops", ["Clothing", "T-Shirts/Tops"]),  # spaced slash only
        ("T-Shirts/Tops", ["T-Shirts", "Tops"]),  # ambiguous: a bare slash splits
        (" >> A >>  >> B >> ", ["A", "B"]),
        ("", []),
        ("   ", []),
        ("https://shop.example/c/women/tops", []),
    ],
)
def test_delimited_strings(value: str, expected: list[str]) -> None:
    assert parse_path(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            '["Clothing >> Women\'s Clothing >> Lingerie, Sleep & Swimwear >> Shorts"]',
            ["Clothing", "Women's Clothing", "Lingerie, Sleep & Swimwear", "Shorts"],
        ),
        ('["Clothing", "Women", "Tops"]', ["Clothing", "Women", "Tops"]),
        ('["A > B", "C > D"]', ["A", "B"]),  # several paths: the first
        ("['Clothing >> Women']", ["Clothing", "Women"]),  # not JSON: brackets and quotes dropped
        ('["Furniture >> Sofa Bed (Finish Colo..."]', ["Furniture", "Sofa Bed (Finish Colo..."]),
        ("[" * 5000 + "]" * 5000, []),
    ],
)
def test_json_list_strings(value: str, expected: list[str]) -> None:
    assert parse_path(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["Clothing", " Women ", "", "Tops"], ["Clothing", "Women", "Tops"]),
        (["Clothing >> Women", "Sale"], ["Clothing", "Women"]),
        ([{"name": "Clothing"}, {"name": "Women"}], ["Clothing", "Women"]),
        ({"path": ["A", "B"]}, ["A", "B"]),
        ({"name": "Shoes"}, ["Shoes"]),
        ([["A", "B"]], ["A", "B"]),
        (42, []),
        (None, []),
        ([None, 1, {}], []),
    ],
)
def test_lists_and_objects(value: Any, expected: list[str]) -> None:
    assert parse_path(value) == expected


def test_depth_is_capped() -> None:
    path = parse_path(" > ".join(f"L{i}" for i in range(30)))
    assert path == [f"L{i}" for i in range(MAX_DEPTH)]


def test_compose_from_nested_category_objects() -> None:
    product = {
        "articleType": {"id": 74, "typeName": "Skirts"},
        "styleType": "DEL",
        "subCategory": {"id": 29, "typeName": "Bottomwear"},
        "masterCategory": {"id": 9, "typeName": "Apparel"},
        "productTypeId": 304,
        "fashionType": "Fashion",
    }
    levels, keys = compose_path(product)
    assert levels == ["Apparel", "Bottomwear", "Skirts"]
    assert keys == ["masterCategory", "subCategory", "articleType"]


def test_compose_from_category_strings() -> None:
    levels, _ = compose_path({"category2": "Tops", "main_category": "Clothing", "category3": "Tee"})
    assert levels == ["Clothing", "Tops", "Tee"]
    assert compose_path({"title": "x"}) == ([], [])
