"""Source paths, flattening, path splitting and unit prices."""

from __future__ import annotations

import pytest

from prodcat.streams.feeds.flatten import Op, flatten, getter, parse_path, render_path
from prodcat.streams.feeds.keynames import key_tokens, name_prior
from prodcat.streams.feeds.paths import clean_levels, dominant_split, split_levels
from prodcat.streams.feeds.units import expected_prices, is_measure, is_unit_price, money_in

RECORD = {
    "basic": {"name": "Wine", "volume": 0.75},
    "prices": [{"salesPrice": 9.9}, {"salesPrice": 12.0}],
    "tags": ["a", "b"],
    "cell": '{"url": "/p/1", "list": [1, 2]}',
    "repr": "[{'alt': 'Local'}]",
    "a.b": {"c[d]": 1},
    "empty": {},
    "nothing": [],
}


def test_flatten_paths_and_leaves() -> None:
    flat = flatten(RECORD)
    assert flat["basic.name"] == "Wine"
    assert flat["prices[].salesPrice"] == 9.9
    assert flat["tags"] == ["a", "b"]
    assert flat["cell{}.url"] == "/p/1"
    assert flat["cell{}.list"] == [1, 2]
    assert flat["repr{}[].alt"] == "Local"
    assert flat["a\\.b.c\\[d]"] == 1
    assert flat["nothing"] == []
    assert "empty" not in flat


def test_paths_round_trip_and_getters() -> None:
    for path in flatten(RECORD):
        assert render_path(parse_path(path)) == path
        assert getter(path)(RECORD) == flatten(RECORD)[path]
    assert parse_path("prices[].salesPrice") == ("prices", Op.ITEMS, "salesPrice")
    assert getter("prices[].salesPrice", every=True)(RECORD) == [9.9, 12.0]
    assert getter("missing.key")(RECORD) is None
    assert getter("basic.name.deeper")(RECORD) is None


def test_flatten_is_bounded() -> None:
    wide = {f"k{i}": i for i in range(2000)}
    assert len(flatten(wide)) == 512
    deep: dict[str, object] = {"v": 1}
    for _ in range(50):
        deep = {"x": deep}
    assert flatten(deep) == {}


def test_key_tokens_and_priors() -> None:
    assert key_tokens("Ürün Ad\u0131") == ("urun", "adi")
    assert key_tokens("g:product_type") == ("g", "product", "type")
    assert key_tokens("productShortName") == ("product", "short", "name")
    assert name_prior("Verkaufspreis", "price") == 1.0
    assert name_prior("data.masterCategory.typeName", "category") == 1.0
    assert name_prior("styleImages.default.url", "image") == 0.5
    assert name_prior("colour", "title") == 0.0


@pytest.mark.parametrize(
    ("text", "delimiter", "split", "levels"),
    [
        ("A > B > C", ">", "spaced", ["A", "B", "C"]),
        ("A >> B > C", ">>", "spaced", ["A", "B > C"]),
        (
            "Bebé/Fraldas/Fraldas 13-18kg/+18kg (T5)",
            "/",
            "tight",
            ["Bebé", "Fraldas", "Fraldas 13-18kg/+18kg (T5)"],
        ),
        ("Baby/Fraldas <2kg/2-5kg/3-6kg", "/", "tight", ["Baby", "Fraldas <2kg/2-5kg/3-6kg"]),
        ("Vinho/Porto Vintage / LBV", "/", "tight", ["Vinho", "Porto Vintage / LBV"]),
        ("Toys/Puzzles/3D Puzzles", "/", "tight", ["Toys", "Puzzles", "3D Puzzles"]),
        ("A | B|C", "|", "any", ["A", "B", "C"]),
        ("A &gt; B", ">", "spaced", ["A", "B"]),
    ],
)
def test_split_levels(text: str, delimiter: str, split: str, levels: list[str]) -> None:
    assert clean_levels(split_levels(text, delimiter, split)) == levels


def test_dominant_split_and_placeholders() -> None:
    assert dominant_split(["a/b", "c/d/e", "f / g"], "/") == "any"
    assert dominant_split(["a/b", "c/d/e", "x/y", "p/q", "r/s", "t/u", "f / g"], "/") == "tight"
    assert dominant_split(["a > b", "c > d"], ">") == "spaced"
    assert clean_levels(["A", "", None, "undefined", " n/a ", 7, True, " B  C "]) == [
        "A",
        "7",
        "B C",
    ]


def test_money_measures_and_unit_prices() -> None:
    assert money_in("150 AUD") == [(150.0, "AUD")]
    assert money_in("€4,50/lt") == [(4.5, "EUR")]
    assert money_in("TRY again") == []
    assert is_unit_price("€4,50/lt")
    assert is_unit_price("0,75l (1 l = 6,65 €)")
    assert not is_unit_price("4,99 €")
    assert is_measure("13,5 %") and is_measure("3000 ml") and not is_measure("12,99 €")
    assert expected_prices(["5x31,50g (1 kg = 21,52 €)"]) == pytest.approx([3.3894])
    assert expected_prices(["€4,38/lt", "emb. 500 ml"]) == pytest.approx([2.19])
