"""The promotion gate, the holdout split and promotion into the model store (no Kafka)."""

from __future__ import annotations

import json
from pathlib import Path

from prodcat.training.labels import LabelledProduct, free_version, in_holdout
from prodcat.training.retrain import gate, promote, split_holdout


def test_the_gate_promotes_unless_worse_by_more_than_epsilon() -> None:
    cand = {"holdout_accuracy": 0.80, "holdout_size": 100.0}
    assert gate(cand, None, 0.0).promote
    assert gate(cand, {"holdout_accuracy": 0.80}, 0.0).promote
    assert gate(cand, {"holdout_accuracy": 0.81}, 0.02).promote
    decision = gate(cand, {"holdout_accuracy": 0.85}, 0.02)
    assert not decision.promote and "worse than serving" in decision.reason
    assert not gate({"holdout_size": 0.0}, {"holdout_accuracy": 0.5}, 1.0).promote


def _item(i: int, exclusive: str | None = "c_a") -> LabelledProduct:
    return LabelledProduct({"product_id": f"p{i}", "title": f"t{i}"}, exclusive, ())


def test_holdout_products_are_never_trained_on() -> None:
    items = [_item(i, "c_a" if i % 3 else None) for i in range(300)]
    data = split_holdout(items, 0.3)
    train_ids = {i.product_id for i in data.train}
    assert not train_ids & {i.product_id for i in items if in_holdout(i.product_id, 0.3)}
    assert all(i.exclusive for i in data.holdout)
    fixed = [_item(1), _item(2, None)]
    data = split_holdout(items, 0.3, fixed)
    assert data.holdout == [fixed[0]] and not {"p1", "p2"} & {i.product_id for i in data.train}


def test_promotion_is_atomic_and_versions_stay_unique(tmp_path: Path) -> None:
    base, work = tmp_path / "models", tmp_path / "work"
    (base / "clf" / "1").mkdir(parents=True)
    (work / "candidates" / "clf" / "2").mkdir(parents=True)  # a rejected candidate
    assert free_version(base, "clf", work) == 3
    cand = work / "candidates" / "clf" / "3"
    cand.mkdir()
    (cand / "saved_model.pb").write_bytes(b"pb")
    (cand / "model_card.json").write_text(json.dumps({"version": 3}))
    target = promote(cand, base, "clf")
    assert target == base / "clf" / "3" and (target / "saved_model.pb").read_bytes() == b"pb"
    assert not list((base / "clf").glob(".*partial"))
    assert (base / "models.config").is_file()
