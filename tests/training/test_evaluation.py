"""Evaluation scores: agreement with scikit-learn, hand-computed calibration, table formatting."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from prodcat.training.evaluation import (
    ClassScore,
    ComparisonRow,
    LevelScore,
    accuracy,
    comparison_table,
    expected_calibration_error,
    format_report,
    macro_f1,
    per_class_report,
    per_level,
    reliability_bins,
    top_k_accuracy,
    truncate_label,
)

LABEL = st.sampled_from(["a", "b", "c > d", "e", "Z", "ä"])
PAIRS = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(LABEL, min_size=n, max_size=n), st.lists(LABEL, min_size=n, max_size=n)
    )
)


@given(PAIRS)
def test_accuracy_and_macro_f1_match_sklearn(pair: tuple[list[str], list[str]]) -> None:
    y_true, y_pred = pair
    assert accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred))
    assert macro_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="macro"))


@given(PAIRS, st.lists(LABEL, min_size=1, max_size=4, unique=True))
def test_macro_f1_with_explicit_labels_matches_sklearn(
    pair: tuple[list[str], list[str]], labels: list[str]
) -> None:
    y_true, y_pred = pair
    expected = f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)
    assert macro_f1(y_true, y_pred, labels=labels) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(5))
def test_per_class_report_matches_sklearn_on_random_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = np.array([f"class {i:02d}" for i in range(12)])
    y_true = rng.choice(classes, size=500, p=rng.dirichlet(np.ones(12)))
    y_pred = np.where(rng.random(500) < 0.6, y_true, rng.choice(classes, size=500))
    report = per_class_report(y_true, y_pred)
    labels = sorted(set(y_true) | set(y_pred))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    by_label = {score.label: score for score in report}
    assert sorted(by_label) == labels
    for i, label in enumerate(labels):
        score = by_label[label]
        assert score.support == support[i]
        assert score.precision == pytest.approx(precision[i])
        assert score.recall == pytest.approx(recall[i])
        assert score.f1 == pytest.approx(f1[i])
    assert macro_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred))


def test_per_class_report_order_top_and_undefined_scores() -> None:
    report = per_class_report(["b", "a", "a", "c", "c"], ["b", "a", "c", "c", "x"])
    assert [(s.label, s.support) for s in report] == [("a", 2), ("c", 2), ("b", 1), ("x", 0)]
    assert [(s.precision, s.recall, s.f1) for s in report] == [
        (1.0, 0.5, pytest.approx(2 / 3)),
        (0.5, 0.5, 0.5),
        (1.0, 1.0, 1.0),
        (0.0, 0.0, 0.0),  # predicted but never true: undefined scores are 0, as in sklearn
    ]
    assert [s.label for s in per_class_report(["b", "a", "a"], ["b", "a", "a"], top=1)] == ["a"]


def test_format_report_is_a_markdown_table() -> None:
    table = format_report([ClassScore("a > b|c", 3, 1.0, 2 / 3, 0.8)])
    assert table == (
        "| Class | Support | Precision | Recall | F1 |\n"
        "| --- | --- | --- | --- | --- |\n"
        "| a > b\\|c | 3 | 1.0000 | 0.6667 | 0.8000 |\n"
    )


@pytest.mark.parametrize(
    ("label", "level", "expected"),
    [
        ("a > b > c", 1, "a"),
        ("a > b > c", 2, "a > b"),
        ("a > b > c", 3, "a > b > c"),
        ("a", 2, "a"),
    ],
)
def test_truncate_label(label: str, level: int, expected: str) -> None:
    assert truncate_label(label, level) == expected


def test_truncate_label_rejects_level_zero() -> None:
    with pytest.raises(ValueError, match="level must be at least 1"):
        truncate_label("a > b", 0)


def test_per_level_truncates_both_sides_and_skips_shallow_truth() -> None:
    y_true = ["a > b > c", "a > b > d", "a > e > f", "g > h", "g"]
    y_pred = ["a > b > c", "a > b > c", "a > b > f", "g > h > i", "a > b"]
    scores = per_level(y_true, y_pred)
    # L1: a,a,a,g,g vs a,a,a,g,a -> 4/5; F1(a) = 6/7, F1(g) = 2/3
    assert (scores[1].level, scores[1].accuracy, scores[1].n) == (1, 0.8, 5)
    assert scores[1].macro_f1 == pytest.approx((6 / 7 + 2 / 3) / 2)
    # L2 (the "g" example is shallower): a>b,a>b,a>e,g>h vs a>b,a>b,a>b,g>h -> 3/4
    assert scores[2] == LevelScore(2, 0.75, scores[2].macro_f1, 4)
    assert scores[2].macro_f1 == pytest.approx((0.8 + 0 + 1) / 3)
    # L3: only the three depth-3 truths; the third prediction is a > b > f, wrong
    assert scores[3].n == 3
    assert scores[3].accuracy == pytest.approx(1 / 3)
    assert scores[3].macro_f1 == pytest.approx(f1_score(y_true[:3], y_pred[:3], average="macro"))
    assert 4 not in per_level(y_true, y_pred, levels=(1, 4))


def test_shallower_prediction_counts_as_wrong() -> None:
    assert per_level(["a > b"], ["a"], levels=(2,))[2].accuracy == 0.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: accuracy([], []),
        lambda: macro_f1([], []),
        lambda: per_level([], []),
        lambda: per_class_report([], []),
    ],
)
def test_empty_inputs_are_rejected(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="empty"):
        call()


def test_mismatched_and_malformed_labels_are_rejected() -> None:
    with pytest.raises(ValueError, match="3 labels but y_pred has 2"):
        accuracy(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="one-dimensional"):
        macro_f1(np.array([["a"]]), np.array([["a"]]))
    with pytest.raises(ValueError, match="at least one class"):
        macro_f1(["a"], ["a"], labels=[])
    with pytest.raises(ValueError, match="level must be at least 1"):
        per_level(["a"], ["a"], levels=(0,))


def test_ece_is_zero_when_perfectly_calibrated() -> None:
    # ten examples at confidence 0.8, eight of them right
    probs = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, y) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0


def test_ece_of_an_overconfident_model_is_hand_computed() -> None:
    # bin (0.8667, 0.9333]: four at 0.9, two right -> |0.5 - 0.9| = 0.4, weight 4/6
    # bin (0.5333, 0.6]: two at 0.6, both right  -> |1.0 - 0.6| = 0.4, weight 2/6
    probs = np.array([[0.9, 0.1]] * 4 + [[0.4, 0.6]] * 2)
    y = np.array([0, 0, 1, 1, 1, 1])
    assert expected_calibration_error(probs, y) == pytest.approx(0.4)
    # bins of width 0.5: all six together, accuracy 4/6, confidence 4.8/6
    assert expected_calibration_error(probs, y, n_bins=2) == pytest.approx(0.8 - 2 / 3)


def test_ece_matches_a_direct_loop_on_random_probabilities() -> None:
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.full(5, 0.3), size=400).astype(np.float32)
    y = rng.integers(0, 5, size=400)
    conf, pred = probs.max(axis=1).astype(np.float64), probs.argmax(axis=1)
    expected = 0.0
    for lower, upper in zip(np.linspace(0, 1, 11)[:-1], np.linspace(0, 1, 11)[1:], strict=True):
        members = (conf > lower) & (conf <= upper)
        if members.any():
            gap = abs((pred[members] == y[members]).mean() - conf[members].mean())
            expected += gap * members.sum() / len(y)
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(expected)


def test_reliability_bins_are_right_closed_and_skip_empty_bins() -> None:
    probs = np.array([[0.3, 0.3, 0.4], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    bins = reliability_bins(probs, np.array([2, 1, 0]), n_bins=10)
    assert [(round(b.lower, 1), round(b.upper, 1), b.count) for b in bins] == [
        (0.3, 0.4, 1),
        (0.4, 0.5, 1),
        (0.9, 1.0, 1),
    ]
    assert [b.accuracy for b in bins] == [1.0, 0.0, 1.0]  # argmax ties go to the lower index
    assert bins[1].confidence == 0.5


def test_probabilities_need_not_sum_exactly_to_one() -> None:
    probs = np.array([[0.7, 0.2995], [0.1, 0.9004]], dtype=np.float32)
    assert expected_calibration_error(probs, np.array([0, 1]), n_bins=1) == pytest.approx(
        0.2, abs=1e-3
    )


@pytest.mark.parametrize(
    ("probs", "y", "message"),
    [
        (np.zeros((0, 3)), np.zeros(0, dtype=int), "non-empty"),
        (np.array([0.5, 0.5]), np.array([0]), "non-empty"),
        (np.array([[0.5, 0.5]]), np.array([0, 1]), "shape"),
        (np.array([[0.5, 0.5]]), np.array([2]), "class indices"),
        (np.array([[0.5, 0.5]]), np.array([0.0]), "class indices"),
        (np.array([[2.0, -1.0]]), np.array([0]), "non-negative"),
        (np.array([[3.0, 1.0]]), np.array([0]), "sum to 1"),
        (np.array([[np.nan, 1.0]]), np.array([0]), "finite"),
    ],
)
def test_bad_probabilities_are_rejected(probs: np.ndarray, y: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(probs, y)
    with pytest.raises(ValueError, match=message):
        top_k_accuracy(probs, y, 1)


def test_bin_and_k_counts_are_validated() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        reliability_bins(np.eye(2), np.arange(2), n_bins=0)
    with pytest.raises(ValueError, match="k must be"):
        top_k_accuracy(np.eye(2), np.arange(2), 0)


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_top_k_accuracy_matches_sklearn(k: int) -> None:
    rng = np.random.default_rng(k)
    probs = rng.dirichlet(np.ones(6), size=300)
    y = rng.integers(0, 6, size=300)
    expected = top_k_accuracy_score(y, probs, k=k, labels=np.arange(6)) if k < 6 else 1.0
    assert top_k_accuracy(probs, y, k) == pytest.approx(expected)
    if k == 1:
        assert top_k_accuracy(probs, y, 1) == pytest.approx(np.mean(probs.argmax(axis=1) == y))


def test_comparison_table_sorts_by_level_then_accuracy() -> None:
    rows = [
        ComparisonRow("tfidf-svc", "hinge", 3, 0.9621, 0.9012, None, 12.4),
        ComparisonRow("mlp", "cross-entropy", 3, 0.97123, 0.91, 0.02346, 301.6, "best"),
        ComparisonRow("mlp", "focal", 1, 0.99, 0.98, 0.01, None),
    ]
    assert comparison_table(rows) == (
        "| Level | Model | Objective | Accuracy | Macro-F1 | ECE | Train (s) | Notes |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
        "| L1 | mlp | focal | 0.9900 | 0.9800 | 0.0100 | — |  |\n"
        "| L3 | mlp | cross-entropy | 0.9712 | 0.9100 | 0.0235 | 302 | best |\n"
        "| L3 | tfidf-svc | hinge | 0.9621 | 0.9012 | — | 12 |  |\n"
    )
    with pytest.raises(ValueError, match="at least one row"):
        comparison_table([])
