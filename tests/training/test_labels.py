"""Label validation, label files, the snapshot join and the holdout (no Kafka, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodcat.core.ids import path_id
from prodcat.training.label_import import parse_label_file
from prodcat.training.labels import (
    LabelError,
    LabelledProduct,
    Vocabulary,
    in_holdout,
    join_snapshot,
    label_key,
    read_snapshot,
    validate_label,
    write_snapshot,
)

ROOT = path_id(["Clothing"])
WOMEN = path_id(["Clothing", "Women's Clothing"])
SHORTS = path_id(["Clothing", "Women's Clothing", "Shorts"])
VOCAB = Vocabulary(
    3,
    classes={SHORTS: "clothing > women's clothing > shorts"},
    nodes={
        ROOT: "Clothing",
        WOMEN: "Clothing > Women's Clothing",
        SHORTS: "Clothing > Women's Clothing > Shorts",
    },
)


def _label(objective: str = "exclusive", ids: list[str] | None = None, pid: str = "p1") -> dict:
    return {"product_id": pid, "objective": objective, "category_ids": ids or [SHORTS]}


def test_valid_labels_pass_with_ids_deduplicated() -> None:
    assert validate_label(_label(), VOCAB, label_key("p1", "exclusive"))["category_ids"] == [SHORTS]
    label = validate_label(_label("rule_based", [WOMEN, WOMEN, ROOT]), VOCAB)
    assert label["category_ids"] == [WOMEN, ROOT]
    # A tree node that is not (yet) a class is a valid exclusive label: it becomes a class.
    assert validate_label(_label(ids=[WOMEN]), VOCAB)["category_ids"] == [WOMEN]


@pytest.mark.parametrize(
    ("label", "key", "kind"),
    [
        (_label(ids=["c_000000000000"]), None, "unknown_category"),
        (_label("rule_based", [ROOT, "nope"]), None, "unknown_category"),
        (_label(ids=[SHORTS, WOMEN]), None, "too_many_categories"),
        (_label(ids=[" "]), None, "no_category"),
        (_label(pid=""), None, "no_product_id"),
        ({**_label(), "objective": "other"}, None, "bad_objective"),
        (_label(), b"p2/exclusive", "key_mismatch"),
        ({**_label(), "category_ids": "c_1"}, None, "malformed"),
    ],
)
def test_invalid_labels_say_why(label: dict, key: bytes | None, kind: str) -> None:
    with pytest.raises(LabelError) as info:
        validate_label(label, VOCAB, key)
    assert info.value.kind == kind


def test_an_open_vocabulary_checks_only_the_shape_of_ids() -> None:
    assert validate_label(_label(ids=["c_000000000000"]), Vocabulary())
    with pytest.raises(LabelError, match="unknown_category"):
        validate_label(_label(ids=["not an id"]), Vocabulary())


def test_paths_resolve_to_ids_and_rule_labels_imply_ancestors() -> None:
    assert VOCAB.resolve("Clothing >> Women's Clothing >> Shorts") == SHORTS
    assert VOCAB.resolve(SHORTS) == SHORTS
    assert VOCAB.with_ancestors([SHORTS]) == {SHORTS, WOMEN, ROOT}


def test_csv_import_resolves_paths_and_flags_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        "product_id,category_path,objective\n"
        f"p1,{SHORTS},\n"
        "p2,Clothing > Women's Clothing > Shorts,exclusive\n"
        "p3,Clothing > Nowhere,\n"
        f"p4,{WOMEN}|{ROOT},rule_based\n"
        ",x,\n"
    )
    lines = list(parse_label_file(path, VOCAB, now_ms=5))
    assert [(ln.number, ln.error.kind if ln.error else None) for ln in lines] == [
        (2, None),
        (3, None),
        (4, "unknown_category"),
        (5, None),
        (6, "no_product_id"),
    ]
    assert lines[1].label and lines[1].label["category_ids"] == [SHORTS]
    assert lines[1].label["source"] == "import" and lines[1].label["labelled_at"] == 5
    assert lines[3].label and lines[3].label["category_ids"] == [WOMEN, ROOT]
    assert lines[2].original == b"p3,Clothing > Nowhere,"


def test_json_lines_import(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(
        f'{{"product_id": "p1", "objective": "exclusive", "category_ids": ["{SHORTS}"], '
        '"source": "human", "annotator": "ann"}\n'
        "{not json\n"
        '{"product_id": "p2", "colour": "red"}\n'
    )
    lines = list(parse_label_file(path, VOCAB, now_ms=7))
    assert lines[0].label and lines[0].label["source"] == "human"
    assert lines[0].label["labelled_at"] == 7
    assert [ln.error.kind for ln in lines[1:] if ln.error] == ["malformed", "malformed"]
    assert lines[1].original == b"{not json"


def test_snapshot_joins_valid_labels_with_known_products(tmp_path: Path) -> None:
    products = {"p1": {"product_id": "p1", "title": "a"}, "p2": {"product_id": "p2", "title": "b"}}
    labels = [
        (label_key("p1", "exclusive"), _label()),
        (label_key("p1", "rule_based"), _label("rule_based", [WOMEN])),
        (label_key("p2", "exclusive"), _label(ids=["c_000000000000"], pid="p2")),
        (label_key("p9", "exclusive"), _label(pid="p9")),
        (b"x", LabelError("decode_error", "bad bytes")),
    ]
    items, counts = join_snapshot(labels, products, VOCAB)
    assert items == [LabelledProduct(products["p1"], SHORTS, (WOMEN,))]
    assert counts.labels == 5 and counts.without_product == 1
    assert counts.invalid == {"unknown_category": 1, "decode_error": 1}
    assert counts.valid == {"exclusive": 1, "rule_based": 1}
    assert write_snapshot(items, tmp_path / "s.jsonl") == 1
    assert list(read_snapshot(tmp_path / "s.jsonl")) == items


def test_the_hash_holdout_is_fixed_per_product() -> None:
    ids = [f"p{i}" for i in range(4000)]
    held = [i for i in ids if in_holdout(i, 0.2)]
    assert held == [i for i in ids if in_holdout(i, 0.2)]
    assert 0.17 < len(held) / len(ids) < 0.23
    assert set(held) <= {i for i in ids if in_holdout(i, 0.5)}
