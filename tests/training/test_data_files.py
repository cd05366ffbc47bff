"""Labelled data from files (``--data``): each kind, truth joined by row, label fields, levels, and
the label's field never among the model inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prodcat.core.ids import path_id
from prodcat.training.data_files import (
    default_level,
    label_path,
    labelled_products,
    load_data,
    read_truth,
    sniff_kind,
)
from prodcat.training.dataset import protocol_label, protocol_split
from prodcat.training.exceptions import DatasetError
from prodcat.training.labels import LabelledProduct, write_snapshot
from prodcat.training.pipeline import features_of

PATHS = [("Food", "Fruit", "Apples"), ("Food", "Drinks"), ("Home", "Garden", "Tools", "Spades")]


def product(i: int, path: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {
        "product_id": f"p{i:04d}",
        "feed": "shop",
        "title": f"title {i}",
        "brand": f"brand {i}",
        "description": f"about {i}",
        "category_path": list(path),
        "attributes": {"dept": path[0]} if path else {},
        "content_hash": f"h{i}",
        **extra,
    }


def write_lines(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


@pytest.fixture
def products_file(tmp_path: Path) -> Path:
    rows: list[Any] = [product(i, PATHS[i % 3]) for i in range(6)]
    rows[4] = {"dead_letter": {"kind": "no_title", "message": "no title"}}
    return write_lines(tmp_path / "products.jsonl", rows)


def test_kinds_are_told_apart_by_their_first_line(tmp_path: Path, products_file: Path) -> None:
    assert sniff_kind(products_file) == "products"
    snapshot = tmp_path / "snapshot.jsonl"
    write_snapshot([LabelledProduct(product(1, PATHS[0]), "c_1")], snapshot)
    assert sniff_kind(snapshot) == "snapshot"
    raw = write_lines(tmp_path / "raw.jsonl", [{"name": "x", "cat": "A > B"}])
    assert sniff_kind(raw) == "raw"
    csv = tmp_path / "feed.csv"
    csv.write_text("title,category\nx,A > B\n", encoding="utf-8")
    assert sniff_kind(csv) == "raw"
    with pytest.raises(DatasetError, match="no such file"):
        sniff_kind(tmp_path / "missing.jsonl")
    with pytest.raises(DatasetError, match="raw feed"):
        load_data(raw)


def test_products_labelled_by_their_category_path(products_file: Path) -> None:
    data = load_data(products_file)
    assert (data.kind, data.labels_from, data.rows, data.no_product) == (
        "products",
        "field category_path",
        6,
        1,
    )
    assert [e.raw_path for e in data.examples] == [PATHS[0], PATHS[1], PATHS[2], PATHS[0], PATHS[2]]
    # The category is the label: the model's category text is empty, whatever the product held.
    assert {e.category_text for e in data.examples} == {""}
    assert set(features_of(data.examples)["category_text"].tolist()) == {""}
    assert data.examples[0].title == "title 0" and data.examples[0].brand == "brand 0"


def test_truth_joins_by_row_number_dead_letters_included(
    tmp_path: Path, products_file: Path
) -> None:
    truth = write_lines(
        tmp_path / "t.truth.jsonl",
        [{"row": i, "path": ["T", f" level {i} ", ""]} for i in range(6) if i != 2],
    )
    assert read_truth(truth)[3] == ("T", "level 3")
    data = load_data(products_file, truth=truth)
    # row 2 has no truth, row 4 is a dead letter: rows 0, 1, 3, 5 remain, each with its own row's path
    assert [(e.product_id, e.raw_path[1]) for e in data.examples] == [
        ("p0000", "level 0"),
        ("p0001", "level 1"),
        ("p0003", "level 3"),
        ("p0005", "level 5"),
    ]
    assert (data.unlabelled, data.no_product) == (1, 1)
    beyond = write_lines(tmp_path / "beyond.truth.jsonl", [{"row": 99, "path": ["A"]}])
    with pytest.raises(DatasetError, match="row 99"):
        load_data(products_file, truth=beyond)
    bad = write_lines(tmp_path / "bad.truth.jsonl", [{"line": 1, "path": ["A"]}])
    with pytest.raises(DatasetError, match=r"bad\.truth\.jsonl:1"):
        read_truth(bad)


def test_a_label_field_is_never_a_model_input(products_file: Path) -> None:
    by_brand = load_data(products_file, label_field="brand")
    assert by_brand.withheld == ("brand",)
    assert [e.raw_path for e in by_brand.examples][:2] == [("brand 0",), ("brand 1",)]
    assert {e.brand for e in by_brand.examples} == {None}
    assert set(features_of(by_brand.examples)["brand"].tolist()) == {""}
    by_description = load_data(products_file, label_field="description")
    assert {e.description for e in by_description.examples} == {None}
    assert by_description.examples[0].brand == "brand 0"
    by_attribute = load_data(products_file, label_field="attributes.dept")
    assert [e.raw_path for e in by_attribute.examples][:3] == [("Food",), ("Food",), ("Home",)]
    with pytest.raises(DatasetError, match="title"):
        load_data(products_file, label_field="title")


def test_label_values_become_paths() -> None:
    assert label_path(["A", " B  b ", ""]) == ("A", "B b")
    assert label_path("A > B>C") == ("A", "B", "C")
    assert label_path("Shoes") == ("Shoes",)
    assert label_path(7) == ("7",)
    assert label_path(None) == label_path("") == label_path([]) == ()


def test_levels_truncate_and_drop_shorter_paths() -> None:
    rows = [product(i, PATHS[i % 3]) for i in range(60)]
    data = labelled_products(rows, source="mem", kind="products")
    assert default_level(data) == 3
    l1, l3 = protocol_split(data.examples, 1), protocol_split(data.examples, 3)
    assert l1.labels == ("food", "home") and l1.dropped_short == 0
    # ("Food", "Drinks") has no level 3; the 4-level path is cut at its third level.
    assert l3.labels == ("food > fruit > apples", "home > garden > tools")
    assert l3.dropped_short == 20
    assert protocol_label(PATHS[2], 3) == "home > garden > tools"


def test_snapshot_labels_resolve_to_paths(tmp_path: Path) -> None:
    items = [
        # the product's own path names the label's id: the path, truncatable
        LabelledProduct(product(0, PATHS[0]), path_id(PATHS[0][:2])),
        # an id the product's path does not name: the resolver's path
        LabelledProduct(product(1, PATHS[1]), "c_known"),
        # unknown: an opaque one-level label
        LabelledProduct(product(2, PATHS[2]), "c_other"),
        # rule-based only: no exclusive label
        LabelledProduct(product(3, PATHS[0]), None, ("c_x",)),
    ]
    snapshot = tmp_path / "snapshot.jsonl"
    write_snapshot(items, snapshot)
    data = load_data(snapshot, resolve=lambda i: "Home > Kitchen" if i == "c_known" else None)
    assert data.kind == "snapshot" and data.unlabelled == 1
    assert [e.raw_path for e in data.examples] == [
        ("Food", "Fruit"),
        ("Home", "Kitchen"),
        ("c_other",),
    ]
    assert {e.category_text for e in data.examples} == {""}
    # A truth file or a field relabels a snapshot by row, like any products file.
    relabelled = load_data(snapshot, label_field="category_path")
    assert [e.raw_path for e in relabelled.examples] == [PATHS[0], PATHS[1], PATHS[2], PATHS[0]]


def test_card_description_says_where_labels_came_from(products_file: Path) -> None:
    described = load_data(products_file, label_field="brand").describe()
    assert described["labels_from"] == "field brand"
    assert described["inputs_withheld"] == ["brand"]
    assert described["labelled"] == 5 and described["dead_letters"] == 1
