"""The taxonomy as a managed artifact: files, derive, the stored record, diff, stable ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prodcat.core.ids import path_id
from prodcat.schemas.serde import serde_for
from prodcat.training.exceptions import TaxonomyError
from prodcat.training.labels import LabelError, Vocabulary, validate_label
from prodcat.training.taxonomy import CategoryTree
from prodcat.training.taxonomy_files import (
    StoredTaxonomy,
    category_paths,
    derive_tree,
    diff_trees,
    exclusive_ids,
    format_tree,
    read_taxonomy_file,
    sniff_format,
)

GOOGLE = """# Google_Product_Taxonomy_Version: 2021-09-21
1 - Animals & Pet Supplies
3237 - Animals & Pet Supplies > Live Animals
2 - Animals & Pet Supplies > Pet Supplies
3 - Animals & Pet Supplies > Pet Supplies > Bird Supplies
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_formats_are_sniffed_and_read(tmp_path: Path) -> None:
    google = _write(tmp_path / "g.txt", GOOGLE)
    csv_levels = _write(tmp_path / "p.csv", "level1,level2\nGetränke,Wein\nGetränke,Bier\n")
    csv_paths = _write(tmp_path / "q.csv", "Getränke > Wein\nGetränke > Bier\n")
    jsonl = _write(tmp_path / "p.jsonl", '["Getränke", "Wein"]\n{"path": "Getränke > Bier"}\n')
    assert [sniff_format(p) for p in (google, csv_levels, jsonl)] == [
        "google",
        "paths-csv",
        "paths-jsonl",
    ]
    tree = read_taxonomy_file(google)
    assert tree.find_by_path(["Animals & Pet Supplies", "Live Animals"]).id == "3237"  # type: ignore[union-attr]
    for file in (csv_levels, csv_paths, jsonl):
        paths = read_taxonomy_file(file)
        assert sorted(" > ".join(n.path) for n in paths) == [
            "Getränke",
            "Getränke > Bier",
            "Getränke > Wein",
        ]
        assert paths.find_by_path(["getränke", "WEIN"]).id == path_id(["Getränke", "Wein"])  # type: ignore[union-attr]
    as_json = _write(tmp_path / "t.json", tree.to_json())
    assert sniff_format(as_json) == "tree-json"
    assert read_taxonomy_file(as_json).version == tree.version
    with pytest.raises(TaxonomyError, match="unknown taxonomy format"):
        read_taxonomy_file(google, "xml")


def test_derive_from_truth_and_products(tmp_path: Path) -> None:
    truth = _write(
        tmp_path / "feed.truth.jsonl",
        "\n".join(
            json.dumps({"row": i, "path": p})
            for i, p in enumerate([["İçecek", "Su"], ["İçecek", "Su"], ["İçecek", "Çay"], []])
        ),
    )
    products = _write(
        tmp_path / "products.jsonl",
        '{"title": "a", "category_path": ["İçecek", "Su"]}\n{"dead_letter": {"kind": "x"}}\n'
        '{"title": "b", "category_path": "İçecek > Çay"}\n',
    )
    tree = derive_tree(category_paths(truth), source="derived:feed")
    assert [(" > ".join(n.path), n.count) for n in tree] == [
        ("İçecek", 3),
        ("İçecek > Su", 2),  # siblings sorted by folded name: "su" < "çay"
        ("İçecek > Çay", 1),
    ]
    pruned = derive_tree(category_paths(truth), min_count=2)
    assert len(pruned) == 2
    from_products = derive_tree(category_paths(products))
    assert {n.id for n in from_products} <= {n.id for n in tree}
    with pytest.raises(TaxonomyError, match="no category path"):
        derive_tree([[], []])


def test_exclusive_subset_with_and_without_counts() -> None:
    counted = derive_tree([["A", "B"]] * 6 + [["A", "C"]] * 2 + [["A"]] * 4)
    # B has 6 products of its own; A keeps 4 + C's 2 = 6 left over; C alone has 2
    ids = exclusive_ids(counted, max_depth=2, min_count=5)
    assert ids == {path_id(["A", "B"]), path_id(["A"])}
    google = derive_tree([["A", "B", "C"], ["A", "D"]])
    uncounted = CategoryTree.from_dict(
        {
            "format": "prodcat.category_tree/1",
            "source": "file",
            "nodes": [{**n, "count": 0} for n in google.to_dict()["nodes"]],
        }
    )
    assert exclusive_ids(uncounted, max_depth=2, min_count=5) == {
        path_id(["A", "B"]),
        path_id(["A", "D"]),
    }


def test_stored_record_round_trips_through_avro() -> None:
    tree = derive_tree([["Getränke", "Wein"]] * 3 + [["İçecek"]] * 2, source="derived:x")
    stored = StoredTaxonomy(tree, 2, exclusive_ids(tree, max_depth=3, min_count=2), 3, 2, "ab", "t")
    serde = serde_for("Taxonomy")
    back = StoredTaxonomy.from_record(serde.decode(serde.encode(stored.to_record())))
    assert back.version == tree.version and back.tree.to_dict() == tree.to_dict()
    assert (back.sequence, back.exclusive, back.previous, back.reason) == (
        2,
        stored.exclusive,
        "ab",
        "t",
    )
    tampered = {**stored.to_record(), "version": "0" * 16}
    with pytest.raises(TaxonomyError):
        StoredTaxonomy.from_record(tampered)
    assert "Wein" in format_tree(tree) and "*" in format_tree(tree, exclusive=stored.exclusive)


def test_ids_are_stable_across_versions_and_diff_names_changes(tmp_path: Path) -> None:
    v1 = derive_tree([["Food", "Cheese"], ["Food", "Bread"], ["Drinks", "Wine"]])
    v2 = derive_tree([["Food", "Cheese"], ["Food", "Breads"], ["Drinks", "Wine"], ["Toys"]])
    shared = {n.id for n in v1} & {n.id for n in v2}
    assert {" > ".join(v1[i].path) for i in shared} == {
        "Food",
        "Food > Cheese",
        "Drinks",
        "Drinks > Wine",
    }
    diff = diff_trees(v1, v2)
    assert [" > ".join(v2[i].path) for i in diff.added] == ["Food > Breads", "Toys"]
    assert [" > ".join(v1[i].path) for i in diff.removed] == ["Food > Bread"]
    assert diff.unchanged == 4
    # a file with its own ids: a rename keeps the id, a move changes the parent
    old = read_taxonomy_file(_write(tmp_path / "a.txt", GOOGLE))
    new = read_taxonomy_file(
        _write(
            tmp_path / "b.txt",
            GOOGLE.replace("Bird Supplies", "Bird Care").replace(
                "3237 - Animals & Pet Supplies > Live Animals", "3237 - Live Animals"
            ),
        )
    )
    changed = diff_trees(old, new)
    assert changed.renamed == ("3",) and changed.moved == ("3237",)
    assert "~ 3  Animals & Pet Supplies > Pet Supplies > Bird Supplies" in changed.format()


def test_vocabulary_of_a_tree_accepts_its_nodes_only() -> None:
    tree = read_taxonomy_file_from_text(GOOGLE)
    vocabulary = Vocabulary.from_tree(tree)
    assert not vocabulary.open and vocabulary.taxonomy == tree.version
    label = {"product_id": "p", "objective": "rule_based", "category_ids": ["3"]}
    assert validate_label(label, vocabulary)["category_ids"] == ["3"]
    assert vocabulary.with_ancestors(["3"]) == {"1", "2", "3"}
    with pytest.raises(LabelError, match=f"taxonomy {tree.version}"):
        validate_label({**label, "category_ids": ["c_000000000000"]}, vocabulary)


def read_taxonomy_file_from_text(text: str) -> CategoryTree:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return read_taxonomy_file(_write(Path(folder) / "t.txt", text))
