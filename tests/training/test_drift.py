"""Drift maths and the training reference: PSI, confidence bins, windows, what export writes."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from prodcat.training.drift import (
    FINE_BINS,
    REFERENCE,
    DriftReference,
    DriftReferenceError,
    DriftWindow,
    WindowSet,
    build_reference,
    confidence_groups,
    merge,
    noise_floor,
    psi,
    top1,
)


def _smoothed(shares: list[float], eps: float) -> list[float]:
    return [(s + eps) / (1 + len(shares) * eps) for s in shares]


def test_psi_of_known_distributions() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-12)  # same shares
    # (0.5 - 0.9) ln(0.5 / 0.9) + (0.5 - 0.1) ln(0.5 / 0.1)
    expected = -0.4 * math.log(5 / 9) + 0.4 * math.log(5)
    assert psi([50, 50], [90, 10], epsilon=1e-12) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(0.8789, abs=1e-4)
    assert psi([50, 50], [90, 10]) == pytest.approx(psi([90, 10], [50, 50]))  # symmetric
    # An empty bin on one side is smoothed by epsilon: large, finite, and exactly the formula.
    a, e = _smoothed([1.0, 0.0], 1e-4), _smoothed([0.0, 1.0], 1e-4)
    want = sum((x - y) * math.log(x / y) for x, y in zip(a, e, strict=True))
    assert psi([7, 0], [0, 3], epsilon=1e-4) == pytest.approx(want, rel=1e-12)
    assert 18 < want < 19
    # A small shift is small, a bigger one bigger.
    assert psi([52, 48], [50, 50]) < 0.01 < psi([70, 30], [50, 50]) < psi([90, 10], [50, 50])


@pytest.mark.parametrize(
    ("actual", "expected"), [([1, 2], [1, 2, 3]), ([0, 0], [1, 1]), ([-1, 2], [1, 1]), ([], [])]
)
def test_psi_refuses_counts_it_cannot_compare(actual: list[int], expected: list[int]) -> None:
    with pytest.raises(ValueError):
        psi(actual, expected)


def test_confidence_bins_hold_equal_reference_mass() -> None:
    uniform = confidence_groups([3] * FINE_BINS, 10)
    assert [merge([1] * FINE_BINS, uniform)] == [[10] * 10]  # deciles of a uniform reference
    assert uniform[:10] == [0] * 10 and uniform[-1] == 9
    # A confident model: all reference mass in the top fine bin; the rest is one empty group.
    confident = [0] * (FINE_BINS - 1) + [500]
    assert merge([1] * FINE_BINS, confidence_groups(confident, 10)) == [99, 1]
    # Mass at 0.5 and 0.99: below 0.5 (empty), [0.5, 0.99), [0.99, 1].
    split = [0] * FINE_BINS
    split[50], split[99] = 5, 5
    assert merge([1] * FINE_BINS, confidence_groups(split, 10)) == [50, 49, 1]


def test_the_reference_counts_top1_categories_and_confidences(tmp_path: Path) -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.85, 0.05], [0.6, 0.3, 0.1], [0.34, 0.33, 0.33]])
    ref = build_reference(probs, ["a", "b", "c"], source="test split")
    assert ref.categories == {"a": 3, "b": 1, "c": 0} and ref.size == 4
    assert sum(ref.confidence) == 4
    assert [i for i, c in enumerate(ref.confidence) if c] == [34, 60, 70, 85]
    ref.write(tmp_path)
    assert DriftReference.read(tmp_path) == ref
    with pytest.raises(ValueError):
        build_reference(probs, ["a", "b"], source="x")


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        json.dumps({"format": 2}),
        json.dumps(
            {
                "format": 1,
                "confidence_bins": 100,
                "size": 1,
                "categories": {"a": 2},
                "confidence_counts": [0] * 100,
            }
        ),
        json.dumps(
            {
                "format": 1,
                "confidence_bins": 100,
                "size": 1,
                "categories": {"a": 1},
                "confidence_counts": [1] * 10,
            }
        ),
        json.dumps({"format": 1, "confidence_bins": 100, "categories": {"a": 1}}),
        json.dumps(  # a negative count
            {
                "format": 1,
                "confidence_bins": 100,
                "size": 1,
                "categories": {"a": 2, "b": -1},
                "confidence_counts": [1] + [0] * 99,
            }
        ),
        json.dumps(  # confidences that do not add up to the size
            {
                "format": 1,
                "confidence_bins": 100,
                "size": 2,
                "categories": {"a": 2},
                "confidence_counts": [1] + [0] * 99,
            }
        ),
    ],
)
def test_a_bad_reference_file_is_a_reference_error(tmp_path: Path, raw: str) -> None:
    (tmp_path / REFERENCE).write_text(raw)
    with pytest.raises(DriftReferenceError):
        DriftReference.read(tmp_path)


def test_a_missing_reference_file_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        DriftReference.read(tmp_path)


def _reference(rng: np.random.Generator, n: int = 4000, classes: int = 20) -> DriftReference:
    logits = rng.normal(size=(n, classes)) * 2 + np.linspace(0, 2, classes)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return build_reference(probs, [f"c{i:02d}" for i in range(classes)], source="synthetic")


def like(
    reference: DriftReference, n: int, rng: np.random.Generator
) -> Iterator[tuple[str, float]]:
    """``n`` (category, confidence) pairs drawn from the reference's marginals."""
    keys = sorted(reference.categories)
    shares = np.array([reference.categories[k] for k in keys], dtype=np.float64)
    conf = np.array(reference.confidence, dtype=np.float64)
    cats = rng.choice(len(keys), size=n, p=shares / shares.sum())
    bins = rng.choice(FINE_BINS, size=n, p=conf / conf.sum())
    for c, b in zip(cats, bins, strict=True):
        yield keys[int(c)], float((b + rng.random()) / FINE_BINS)


def test_a_window_like_the_reference_scores_low_and_a_shifted_one_high() -> None:
    rng = np.random.default_rng(0)
    ref = _reference(rng)
    same = DriftWindow("clf", 1, 0.0)
    for category, confidence in like(ref, 3000, rng):
        same.add(category, confidence)
    score = same.score(ref, bins=10, epsilon=1e-4)
    assert score.predictions == 3000 and score.version == 1
    assert score.category_psi < 0.02 and score.confidence_psi < 0.02  # ~(k-1)/n noise
    shifted = DriftWindow("clf", 1, 0.0)
    for _, confidence in like(ref, 3000, rng):
        shifted.add("c00", confidence * 0.5)  # one category, half as sure
    worse = shifted.score(ref, bins=10, epsilon=1e-4)
    assert worse.category_psi > 1.0 and worse.confidence_psi > 1.0
    unseen = DriftWindow("clf", 1, 0.0)  # a category the reference never predicted
    for category, confidence in like(ref, 3000, rng):
        unseen.add("zz" if category < "c10" else category, confidence)
    assert unseen.score(ref, bins=10, epsilon=1e-4).category_psi > 0.25


def test_windows_close_on_size_or_age_and_follow_the_newest_version() -> None:
    windows = WindowSet(size=5, max_age_s=10, min_size=3)
    assert [windows.add("m", 1, "a", 0.9, now=0.0) for _ in range(4)] == [[]] * 4
    [closed] = windows.add("m", 1, "a", 0.9, now=1.0)  # 5th: full
    assert (closed.version, closed.size) == (1, 5)
    windows.add("m", 1, "a", 0.9, now=2.0)
    windows.add("m", 1, "a", 0.9, now=3.0)
    assert windows.expire(now=11.0) == []  # old enough but only 2
    windows.add("m", 1, "a", 0.9, now=11.0)
    [aged] = windows.expire(now=12.0)
    assert aged.size == 3 and aged.opened_at == 2.0
    # Version 2 retires version 1's window (scored when big enough), and 1 is stale from then on.
    for _ in range(3):
        windows.add("m", 1, "a", 0.9, now=20.0)
    [retired] = windows.add("m", 2, "b", 0.5, now=21.0)
    assert (retired.version, retired.size) == (1, 3)
    assert windows.is_stale("m", 1, now=22.0) and not windows.is_stale("m", 2, now=22.0)
    assert not windows.is_stale("other", 1, now=22.0)
    with pytest.raises(ValueError):
        windows.add("m", 1, "a", 0.9, now=22.0)
    assert windows.advance("m", 3, now=23.0) == []  # one prediction only: too small to score
    assert windows.is_stale("m", 2, now=24.0)
    # A rollback: version 3 falls silent; once it has been for max_age_s, version 2 takes over.
    assert windows.is_stale("m", 2, now=32.9)
    assert not windows.is_stale("m", 2, now=33.0)
    for _ in range(3):
        windows.add("m", 2, "b", 0.5, now=33.0)
    assert not windows.is_stale("m", 2, now=34.0)  # 2 is the newest now
    [back] = windows.expire(now=43.0)
    assert (back.version, back.size) == (2, 3)


def _prediction(top: list[dict[str, object]], model: str = "clf") -> dict[str, object]:
    return {"model_name": model, "model_version": 1, "exclusive_top_k": top}


def test_top1_takes_the_most_probable_category_or_none() -> None:
    top = [{"category_id": "b", "probability": 0.3}, {"category_id": "a", "probability": 0.6}]
    assert top1(_prediction(top)) == ("a", 0.6)
    assert top1(_prediction([])) is None
    assert top1(_prediction(top, model="")) is None
    for bad in (float("nan"), 1.5, -0.1, None):
        assert top1(_prediction([{"category_id": "a", "probability": bad}])) is None
    assert top1(_prediction([{"category_id": "", "probability": 0.5}])) is None


@pytest.mark.slow
def test_every_export_path_writes_the_reference(trained_classifier, tmp_path: Path) -> None:
    """``export_model`` writes what it is given; the retraining job builds it from the holdout."""
    from prodcat.training.export import export_model
    from prodcat.training.labels import LabelledProduct
    from prodcat.training.retrain import Candidate, RetrainData, drift_reference

    items = [
        LabelledProduct({"product_id": f"p{i}", "title": title, "brand": "", "description": ""},
                        trained_classifier.class_ids[0])
        for i, title in enumerate(["Sonata Analog Watch", "Women's Cycling Shorts", "Ring"] * 20)
    ]  # fmt: skip
    candidate = Candidate(trained_classifier.model, trained_classifier.class_ids, [], {}, 0.0)
    ref = drift_reference(candidate, RetrainData(train=items[:3], holdout=items))
    assert ref.size == 60 and ref.source == "retrain holdout"
    assert set(ref.categories) == set(trained_classifier.class_ids)
    assert sorted(c for c in ref.categories.values() if c) == [20, 20, 20]  # 3 distinct titles
    target = export_model(
        trained_classifier.model,
        base_dir=tmp_path,
        name="classifier",
        class_ids=trained_classifier.class_ids,
        card=trained_classifier.card,
        drift_reference=ref,
    )
    assert DriftReference.read(target) == ref
    train_only = drift_reference(candidate, RetrainData(train=items, holdout=[]))
    assert train_only.source == "train" and train_only.size == 60


def test_an_undrifted_window_scores_about_its_expected_noise_floor() -> None:
    """Without drift, PSI is sampling noise of about (k - 1)(1/n + 1/m), which the score carries
    so the alert can read the excess: large for many categories and small windows."""
    rng = np.random.default_rng(7)
    reference = _reference(rng, n=4000, classes=200)
    category, confidence, floors = [], [], []
    for _ in range(30):
        window = DriftWindow("classifier", 1, opened_at=0.0)
        for cat, conf in like(reference, 1000, rng):
            window.add(cat, conf)
        score = window.score(reference, bins=10, epsilon=1e-4)
        category.append(score.category_psi)
        confidence.append(score.confidence_psi)
        floors.append((score.category_expected, score.confidence_expected))
    cat_floor, conf_floor = floors[0]
    assert cat_floor == pytest.approx((200 - 1) * (1 / 1000 + 1 / 4000), rel=0.05)
    assert conf_floor == pytest.approx((10 - 1) * (1 / 1000 + 1 / 4000))
    assert float(np.mean(category)) == pytest.approx(cat_floor, rel=0.3)
    assert float(np.mean(confidence)) == pytest.approx(conf_floor, rel=0.5)
    assert cat_floor > 0.2  # the raw index of an undrifted window would already near the alert
    assert noise_floor(1, 10, 10) == 0.0 and noise_floor(5, 0, 10) == 0.0
