"""Warm start from the served model: after a rename its heads give the same probabilities before
any training step; after a merge the merged class keeps its products' top class; a new class
gets a fresh column; the retrain's candidate records where it started from."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from prodcat.core.model_store import load_card
from prodcat.training.labels import LabelledProduct, Vocabulary
from prodcat.training.model_remap import remap_classifier
from prodcat.training.models import EXCLUSIVE, ModelConfig
from prodcat.training.retrain import train_candidate
from prodcat.training.taxonomy import CategoryTree
from prodcat.training.taxonomy_changes import Change, apply_change
from prodcat.training.train_command import RunConfig
from prodcat.training.warm_start import KERAS_FILE, head_columns, warm_model, warm_source
from tests.conftest import TrainedClassifier

pytestmark = pytest.mark.slow

TITLES = ["slim fit cotton shirt for men", "analog watch with leather strap", "non stick fry pan",
          "running shoes for women", "printed cotton kurta", "bluetooth headphones",
          "stainless steel water bottle", "printed bedsheet double", "baby romper set",
          "mobile back cover"] * 3  # fmt: skip


def _inputs() -> dict[str, tf.Tensor]:
    n = len(TITLES)
    return {"title": tf.constant(TITLES), "brand": tf.constant([""] * n),
            "category_text": tf.constant([""] * n), "description": tf.constant([""] * n)}  # fmt: skip


def _served(version_dir: Path) -> np.ndarray:
    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return serve(**_inputs())["exclusive_probs"].numpy()


def _setup(tmp_path: Path, classifier: TrainedClassifier) -> tuple[Path, CategoryTree, dict]:
    base = tmp_path / "models"
    shutil.copytree(classifier.model_base, base)
    card = classifier.card
    paths = [tuple(c["path"].split(" > ")) for c in card["classes"]]
    paths += [tuple(n["path"].split(" > ")) for n in card["rule_based_nodes"]]
    return base, CategoryTree.from_paths(paths, min_count=1, min_root_count=1), card


def _ids(version_dir: Path) -> tuple[list[str], list[str]]:
    card = load_card(version_dir)
    return [c["id"] for c in card["classes"]], [n["id"] for n in card["rule_based_nodes"]]


def test_after_a_rename_the_warm_model_predicts_as_the_served_one(
    tmp_path: Path, trained_classifier: TrainedClassifier
) -> None:
    base, tree, card = _setup(tmp_path, trained_classifier)
    assert (base / "classifier" / "1" / KERAS_FILE).is_file()  # every export keeps it
    config = ModelConfig.from_dict(card["model_config"])
    assert warm_source(base, "classifier", "after_change", config) is None  # no change yet
    assert warm_source(base, "classifier", "always", config) == base / "classifier" / "1"
    node = card["classes"][0]["id"]
    applied = apply_change(tree, Change("rename", node, name="Renamed"))
    remap_classifier(base, "classifier", applied.ids, applied.after, moved=applied.moved,
                     reason="test")  # fmt: skip
    v2 = base / "classifier" / "2"
    assert (v2 / KERAS_FILE).is_file()
    assert head_columns(load_card(v2))[EXCLUSIVE][0] == applied.ids[node]
    assert warm_source(base, "classifier", "after_change", config) == v2
    assert warm_source(base, "classifier", "never", config) is None

    class_ids, rule_ids = _ids(v2)
    model = warm_model(v2, class_ids, rule_ids)
    warm = model(_inputs(), training=False)[EXCLUSIVE].numpy()
    np.testing.assert_allclose(warm, _served(v2), atol=1e-5)


def test_after_a_merge_and_with_a_new_class(
    tmp_path: Path, trained_classifier: TrainedClassifier
) -> None:
    base, tree, card = _setup(tmp_path, trained_classifier)
    served = _served(base / "classifier" / "1")
    top = served.argmax(axis=1)
    ids = [c["id"] for c in card["classes"]]
    merged, target = ids[top[0]], next(i for i in ids if i != ids[top[0]])
    applied = apply_change(tree, Change("merge", merged, into=target))
    remap_classifier(base, "classifier", applied.ids, applied.after, reason="test")
    v2 = base / "classifier" / "2"
    class_ids, rule_ids = _ids(v2)
    assert merged not in class_ids and len(class_ids) == len(ids) - 1
    model = warm_model(v2, [*class_ids, "c_brand_new_00"], rule_ids)
    warm = model(_inputs(), training=False)[EXCLUSIVE].numpy()
    assert warm.shape == (len(TITLES), len(class_ids) + 1)
    expected = [applied.ids.get(ids[i], ids[i]) for i in top]
    agree = np.mean(
        [class_ids[i] == e for i, e in zip(warm[:, :-1].argmax(1), expected, strict=True)]
    )
    # A linear head cannot hold the log-sum-exp of two columns; their mean, raised by log 2, is
    # close to it (a fresh head would agree on ~1 product in the number of classes)
    assert agree >= 0.7


def test_the_retrain_candidate_starts_from_the_remapped_version(
    tmp_path: Path, trained_classifier: TrainedClassifier
) -> None:
    base, tree, card = _setup(tmp_path, trained_classifier)
    node = card["classes"][1]["id"]
    applied = apply_change(tree, Change("rename", node, name="Renamed"))
    remap_classifier(base, "classifier", applied.ids, applied.after, moved=applied.moved,
                     reason="test")  # fmt: skip
    class_ids, _rules = _ids(base / "classifier" / "2")
    items = [
        LabelledProduct({"product_id": f"p{i}", "title": TITLES[i % len(TITLES)], "brand": "",
                         "category_text": "", "description": ""}, class_ids[i % 4])
        for i in range(40)
    ]  # fmt: skip
    config = tmp_path / "run.yaml"
    config.write_text(
        "model: {family: logreg, multi_objective: false}\ntraining: {epochs: 1, batch_size: 64}\n"
    )
    run = RunConfig.load(config)
    fresh = train_candidate(items, Vocabulary(), run, (base, "classifier", "after_change"))
    assert "warm_start" not in fresh.card  # another model config: from scratch
    same = RunConfig.load(config, model={**card["model_config"]})
    items = [LabelledProduct(i.product, i.exclusive, (card["rule_based_nodes"][0]["id"],))
             for i in items]  # fmt: skip
    vocabulary = Vocabulary(nodes={n["id"]: n["path"] for n in load_card(
        base / "classifier" / "2")["rule_based_nodes"]})  # fmt: skip
    warm = train_candidate(items, vocabulary, same, (base, "classifier", "after_change"))
    assert warm.card["warm_start"] == {"from_version": 2}
