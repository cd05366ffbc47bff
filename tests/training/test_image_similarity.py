"""Visual-similarity metrics, the article-type split, and a tiny fine-tune run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prodcat.training.exceptions import DatasetError
from prodcat.training.image_similarity import (
    evaluate_embeddings,
    load_myntra_images,
    nn_top1_accuracy,
    precision_at_k,
    precision_ceiling,
    split_article_types,
    top_k_neighbours,
)

# Rows 0 and 2 point east, 1 and 3 north; labels cross the clusters, groups follow the labels' pairs.
CROSSED = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])
CROSSED_LABELS = ["a", "a", "b", "b"]
CROSSED_GROUPS = ["g", "g", "h", "h"]


def test_neighbours_exclude_the_query_and_sort_by_cosine() -> None:
    idx, valid = top_k_neighbours(CROSSED, k=3)
    assert idx.tolist() == [[2, 3, 1], [3, 2, 0], [0, 3, 1], [1, 2, 0]]
    assert valid.all()


def test_precision_and_nn_on_known_answers() -> None:
    assert nn_top1_accuracy(CROSSED, CROSSED_LABELS) == 0.0
    assert precision_at_k(CROSSED, CROSSED_LABELS, k=2) == pytest.approx(0.25)
    assert precision_at_k(CROSSED, CROSSED_LABELS, k=3) == pytest.approx(1 / 3)
    # Scaling a row does not change cosine neighbours.
    scaled = CROSSED * np.array([[3.0], [0.5], [2.0], [7.0]])
    assert precision_at_k(scaled, CROSSED_LABELS, k=2) == pytest.approx(0.25)


def test_within_group_restricts_candidates_and_still_divides_by_k() -> None:
    assert precision_at_k(CROSSED, CROSSED_LABELS, k=1, within=CROSSED_GROUPS) == 1.0
    # One candidate per query: a hit, divided by k = 2.
    assert precision_at_k(CROSSED, CROSSED_LABELS, k=2, within=CROSSED_GROUPS) == 0.5
    _, valid = top_k_neighbours(CROSSED, k=2, groups=CROSSED_GROUPS)
    assert valid[:, 0].all() and not valid[:, 1].any()


def test_clusters_give_perfect_scores() -> None:
    angles = np.radians([0, 10, 20, 90, 100, 110])
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = ["a", "a", "a", "b", "b", "b"]
    assert nn_top1_accuracy(emb, labels) == 1.0
    assert precision_at_k(emb, labels, k=2) == 1.0
    assert precision_at_k(emb, labels, k=4) == 0.5
    report = evaluate_embeddings(emb, labels, ["m"] * 6, k=2)
    assert report.as_dict() == {
        "images": 6,
        "article_types": 2,
        "k": 2,
        "precision_at_k": 1.0,
        "precision_at_k_within_master": 1.0,
        "nn_top1": 1.0,
        "precision_ceiling": 1.0,
    }


def test_duplicates_and_ties() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # 0 and 1 are identical but differ in label; 2's tie between 0 and 1 goes to the lower index.
    assert nn_top1_accuracy(emb, ["a", "b", "b"]) == 0.0
    assert top_k_neighbours(emb, k=1)[0][:, 0].tolist() == [1, 0, 0]


def test_ceiling_and_edge_cases() -> None:
    assert precision_ceiling(["a", "a", "a", "b"], k=2) == pytest.approx(0.75)
    assert precision_at_k(np.zeros((0, 4)), [], k=10) == 0.0
    idx, valid = top_k_neighbours(np.ones((1, 3)), k=2)
    assert idx.shape == (1, 2) and not valid.any()
    with pytest.raises(DatasetError):
        precision_at_k(CROSSED, ["a"], k=1)
    with pytest.raises(DatasetError):
        top_k_neighbours(CROSSED, k=0)


def _synthetic() -> tuple[list[str], list[str]]:
    types, masters = [], []
    for master, n in (("M1", 6), ("M2", 3), ("M3", 1)):
        for i in range(n):
            types += [f"{master}-t{i}"] * 3
            masters += [master] * 3
    types.append("M2-t0")  # one image of a type filed under another master: majority wins
    masters.append("M3")
    return types, masters


def test_split_is_disjoint_balanced_stratified_and_deterministic() -> None:
    types, masters = _synthetic()
    train, evaluation = split_article_types(types, masters, seed=0)
    assert not set(train) & set(evaluation)
    assert set(train) | set(evaluation) == set(types)
    assert abs(len(train) - len(evaluation)) <= 1
    for master in ("M1", "M2"):
        assert any(t.startswith(master) for t in train)
        assert any(t.startswith(master) for t in evaluation)
    assert split_article_types(types, masters, seed=0) == (train, evaluation)
    others = {tuple(split_article_types(types, masters, seed=s)[0]) for s in range(1, 8)}
    assert len(others | {tuple(train)}) > 1


def test_split_of_the_myntra_types(data_dir: Path) -> None:
    images = load_myntra_images(data_dir)
    assert len(images) == 2637
    train, evaluation = split_article_types(images.article_types, images.master_categories)
    assert (len(train), len(evaluation)) == (71, 71)
    assert not set(train) & set(evaluation)
    pairs = list(zip(images.article_types, images.master_categories, strict=True))
    masters_train = {m for t, m in pairs if t in train}
    masters_eval = {m for t, m in pairs if t in evaluation}
    assert {"Apparel", "Accessories", "Personal Care", "Footwear"} <= masters_train & masters_eval
    sub = images.of_types(evaluation)
    assert set(sub.article_types) == set(evaluation)


@pytest.mark.integration
@pytest.mark.slow
def test_tiny_finetune_writes_weights_that_change_embeddings(
    data_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorflow")
    from prodcat.training.embedder import build_embedder, embed_files
    from prodcat.training.image_commands import pretrained_weights
    from prodcat.training.image_finetune import finetune, with_params

    images = load_myntra_images(data_dir)
    params = with_params(
        image_size=64, epochs=1, max_steps=3, batch_size=16, variants=2, max_types=4, seed=3
    )
    out = tmp_path / "tiny.weights.h5"
    result = finetune(images, pretrained_weights(data_dir), out, params)
    assert out.is_file()
    assert not set(result.train_types) & set(result.eval_types)
    assert len(result.train_types) == 2 and len(result.eval_types) == 2
    assert result.pretrained.images == result.finetuned.images > 0
    meta = json.loads((tmp_path / "tiny.meta.json").read_text())
    assert meta["image_size"] == 64 and meta["finetuned"] == result.finetuned.as_dict()

    sample = list(images.paths[:4])
    before = embed_files(sample, build_embedder(pretrained_weights(data_dir), 64))
    after = embed_files(sample, build_embedder(out, 64))
    assert after.shape == (4, 1280)
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), 1.0, atol=1e-5)
    assert np.abs(after - before).max() > 1e-4


@pytest.mark.integration
def test_finetune_params_are_validated() -> None:
    pytest.importorskip("tensorflow")
    from prodcat.training.exceptions import TrainingError
    from prodcat.training.image_finetune import with_params

    assert with_params(epochs=2).epochs == 2
    with pytest.raises(TrainingError, match="unknown fine-tune parameters: nope"):
        with_params(nope=1)
    with pytest.raises(TrainingError, match="epochs"):
        with_params(epochs=0)


def test_image_split_keeps_every_type_on_both_sides_with_disjoint_images(data_dir: Path) -> None:
    from prodcat.training.image_finetune import split_images
    from prodcat.training.image_similarity import load_myntra_images

    images = load_myntra_images(data_dir)
    train, evaluation = split_images(images, seed=0)
    assert not set(train.ids) & set(evaluation.ids)
    assert len(train) + len(evaluation) == len(images)
    counts: dict[str, int] = {}
    for article in images.article_types:
        counts[article] = counts.get(article, 0) + 1
    shared = {t for t, n in counts.items() if n >= 2}
    assert shared <= set(train.article_types) and shared <= set(evaluation.article_types)
    again = split_images(images, seed=0)
    assert again[0].ids == train.ids
