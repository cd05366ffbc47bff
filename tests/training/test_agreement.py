"""Double labelling: a fixed share of products, and kappa computed as its definitions say."""

from __future__ import annotations

import pytest

from prodcat.training.agreement import (
    Pair,
    agreement_report,
    cohen_kappa,
    double_labelled,
    fleiss_per_category,
)


def test_the_share_of_double_labelled_products_is_fixed_per_product() -> None:
    ids = [f"p{i}" for i in range(20_000)]
    chosen = [i for i in ids if double_labelled(i, 0.1)]
    assert 0.09 < len(chosen) / len(ids) < 0.11
    assert chosen == [i for i in ids if double_labelled(i, 0.1)]  # the same every time
    assert set(chosen) <= {i for i in ids if double_labelled(i, 0.3)}  # a larger share adds
    assert not any(double_labelled(i, 0.0) for i in ids[:100])


def test_kappa_by_hand() -> None:
    # observed 0.75; chance (2·1 + 2·3) / 16 = 0.5 → (0.75 - 0.5) / 0.5
    assert cohen_kappa(["x", "x", "y", "y"], ["x", "y", "y", "y"]) == pytest.approx(0.5)
    assert cohen_kappa(["x", "y"], ["x", "y"]) == pytest.approx(1.0)
    assert cohen_kappa([], []) is None
    pairs = [Pair("1", "a", "x", "b", "x"), Pair("2", "a", "x", "b", "y"),
             Pair("3", "b", "y", "a", "y"), Pair("4", "b", "y", "c", "y")]  # fmt: skip
    # x: 3 of 8 ratings, one split product: 1 - 1 / (4·2·1·(3/8)(5/8))
    per = fleiss_per_category(pairs)
    assert per["x"] == pytest.approx(1 - 1 / 1.875) and per["y"] == pytest.approx(1 - 1 / 1.875)
    assert fleiss_per_category([Pair("1", "a", "x", "b", "x")])["x"] is None  # no variation

    report = agreement_report(pairs, pending=1)
    assert (report["pairs"], report["agreed"], report["pending"]) == (4, 3, 1)
    assert report["kappa"] == pytest.approx(cohen_kappa(["x", "x", "y", "y"], ["x", "y", "y", "y"]))
    by_name = {row["annotator"]: row for row in report["annotators"]}
    assert (by_name["a"]["pairs"], by_name["a"]["agreed"]) == (3, 2)
    assert (by_name["c"]["pairs"], by_name["c"]["agreed"], by_name["c"]["kappa"]) == (1, 1, 1.0)
    assert [row["category_id"] for row in report["categories"]] == ["y", "x"]  # by products
