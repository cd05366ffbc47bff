"""Scores for the fixed evaluation protocol (see :mod:`prodcat.training.dataset`), in pure numpy.

Labels are protocol labels: levels joined with ``" > "``. Classification scores match
scikit-learn's defaults (``accuracy_score``, ``f1_score(average="macro")``: classes are the sorted
union of true and predicted labels, and a class's F1 is ``2tp / (2tp + fp + fn)``). Calibration is
the top-label expected calibration error of Guo et al. (2017) on equal-width, right-closed
confidence bins. Bad input (empty, mismatched lengths, wrong shapes) raises :class:`ValueError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "SEPARATOR",
    "ClassScore",
    "ComparisonRow",
    "LabelSeq",
    "LevelScore",
    "ReliabilityBin",
    "accuracy",
    "comparison_table",
    "expected_calibration_error",
    "format_report",
    "macro_f1",
    "per_class_report",
    "per_level",
    "reliability_bins",
    "top_k_accuracy",
    "truncate_label",
]

SEPARATOR = " > "
_PROB_SUM_TOLERANCE = 1e-2  # softmax outputs in float16/float32 do not sum exactly to 1

LabelSeq = Sequence[str] | NDArray[np.str_] | NDArray[np.object_]


@dataclass(frozen=True, slots=True)
class LevelScore:
    level: int
    accuracy: float
    macro_f1: float
    n: int


@dataclass(frozen=True, slots=True)
class ClassScore:
    label: str
    support: int
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """Confidences in ``(lower, upper]`` (the first bin also holds 0): their mean and accuracy."""

    lower: float
    upper: float
    count: int
    accuracy: float
    confidence: float


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    model: str
    objective: str
    level: int
    accuracy: float
    macro_f1: float
    ece: float | None
    train_seconds: float | None
    notes: str = ""


def _pair(y_true: LabelSeq, y_pred: LabelSeq) -> tuple[NDArray[np.str_], NDArray[np.str_]]:
    true, pred = np.asarray(y_true, dtype=np.str_), np.asarray(y_pred, dtype=np.str_)
    if true.ndim != 1 or pred.ndim != 1:
        raise ValueError("y_true and y_pred must be one-dimensional sequences of labels")
    if true.size == 0:
        raise ValueError("cannot score an empty set of predictions")
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} labels but y_pred has {pred.size}")
    return true, pred


def _counts(
    true: NDArray[np.str_], pred: NDArray[np.str_], labels: Sequence[str] | None
) -> tuple[list[str], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Classes with their true positives, true counts (support) and predicted counts."""
    if labels is None:
        classes, inverse = np.unique(np.concatenate([true, pred]), return_inverse=True)
        names = [str(c) for c in classes]
        true_idx, pred_idx = inverse[: true.size], inverse[true.size :]
    else:
        names = list(dict.fromkeys(labels))
        if not names:
            raise ValueError("labels must name at least one class")
        index = {name: i for i, name in enumerate(names)}
        true_idx = np.array([index.get(str(t), -1) for t in true], dtype=np.int64)
        pred_idx = np.array([index.get(str(p), -1) for p in pred], dtype=np.int64)
    k = len(names)

    def count(idx: NDArray[np.int64]) -> NDArray[np.int64]:
        return np.bincount(idx[idx >= 0], minlength=k).astype(np.int64)

    hits = true_idx == pred_idx
    return names, count(true_idx[hits]), count(true_idx), count(pred_idx)


def _ratio(num: NDArray[np.int64], den: NDArray[np.int64]) -> NDArray[np.float64]:
    """``num / den`` with 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def accuracy(y_true: LabelSeq, y_pred: LabelSeq) -> float:
    true, pred = _pair(y_true, y_pred)
    return float(np.mean(true == pred))


def macro_f1(y_true: LabelSeq, y_pred: LabelSeq, labels: Sequence[str] | None = None) -> float:
    """Unweighted mean F1 over ``labels`` (default: sorted union of true and predicted labels)."""
    _, tp, n_true, n_pred = _counts(*_pair(y_true, y_pred), labels)
    return float(np.mean(_ratio(2 * tp, n_true + n_pred)))


def truncate_label(label: str, level: int) -> str:
    """The first ``level`` levels of ``label``; a label with fewer levels comes back whole."""
    if level < 1:
        raise ValueError(f"level must be at least 1, got {level}")
    return SEPARATOR.join(label.split(SEPARATOR)[:level])


def per_level(
    y_true: LabelSeq, y_pred: LabelSeq, levels: Sequence[int] = (1, 2, 3)
) -> dict[int, LevelScore]:
    """Scores with both labels truncated to each level.

    Examples whose true label is shallower than a level are left out at that level (the protocol
    has no label for them there); a level no example reaches is left out of the result. A shallower
    prediction stays shallower, so it counts as wrong.
    """
    true, pred = _pair(y_true, y_pred)
    depths = np.array([t.count(SEPARATOR) + 1 for t in true.tolist()])
    scores: dict[int, LevelScore] = {}
    for level in levels:
        if level < 1:
            raise ValueError(f"level must be at least 1, got {level}")
        keep = np.flatnonzero(depths >= level)
        if keep.size == 0:
            continue
        t = [truncate_label(str(true[i]), level) for i in keep]
        p = [truncate_label(str(pred[i]), level) for i in keep]
        scores[level] = LevelScore(level, accuracy(t, p), macro_f1(t, p), int(keep.size))
    return scores


def per_class_report(
    y_true: LabelSeq, y_pred: LabelSeq, top: int | None = None
) -> list[ClassScore]:
    """Per-class scores (0 where undefined), by support descending then label; ``top`` first."""
    names, tp, n_true, n_pred = _counts(*_pair(y_true, y_pred), None)
    precision, recall, f1 = _ratio(tp, n_pred), _ratio(tp, n_true), _ratio(2 * tp, n_true + n_pred)
    rows = [
        ClassScore(name, int(n_true[i]), float(precision[i]), float(recall[i]), float(f1[i]))
        for i, name in enumerate(names)
    ]
    rows.sort(key=lambda row: (-row.support, row.label))
    return rows if top is None else rows[: max(top, 0)]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines) + "\n"


def format_report(scores: Sequence[ClassScore]) -> str:
    """A Markdown table of :func:`per_class_report` rows, 4 decimals."""
    return _table(
        ["Class", "Support", "Precision", "Recall", "F1"],
        [
            [_cell(s.label), str(s.support), f"{s.precision:.4f}", f"{s.recall:.4f}", f"{s.f1:.4f}"]
            for s in scores
        ],
    )


def _probs(probs: NDArray[np.floating], y_true_idx: NDArray[np.integer]) -> NDArray[np.float64]:
    p, y = np.asarray(probs, dtype=np.float64), np.asarray(y_true_idx)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"probs must be a non-empty (n, k) array, got shape {p.shape}")
    if y.shape != (p.shape[0],):
        raise ValueError(f"y_true_idx must have shape ({p.shape[0]},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"y_true_idx must hold class indices in [0, {p.shape[1]})")
    if not np.all(np.isfinite(p)) or p.min() < 0.0:
        raise ValueError("probs must be finite and non-negative (pass probabilities, not logits)")
    worst = float(np.max(np.abs(p.sum(axis=1) - 1.0)))
    if worst > _PROB_SUM_TOLERANCE:
        raise ValueError(f"probs rows must sum to 1 (a row is off by {worst:.3g})")
    return p


def reliability_bins(
    probs: NDArray[np.floating], y_true_idx: NDArray[np.integer], n_bins: int = 15
) -> list[ReliabilityBin]:
    """Top-label confidence bins of equal width; empty bins are left out."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    p = _probs(probs, y_true_idx)
    confidence = np.clip(p.max(axis=1), 0.0, 1.0)
    correct = p.argmax(axis=1) == np.asarray(y_true_idx)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_of = np.searchsorted(edges[1:-1], confidence, side="left")
    bins: list[ReliabilityBin] = []
    for b in range(n_bins):
        m = bin_of == b
        if m.any():
            acc, conf = float(correct[m].mean()), float(confidence[m].mean())
            bins.append(
                ReliabilityBin(float(edges[b]), float(edges[b + 1]), int(m.sum()), acc, conf)
            )
    return bins


def expected_calibration_error(
    probs: NDArray[np.floating], y_true_idx: NDArray[np.integer], n_bins: int = 15
) -> float:
    """Sum over bins of ``|accuracy - confidence| * count / n`` (Guo et al., 2017)."""
    bins = reliability_bins(probs, y_true_idx, n_bins)
    n = sum(b.count for b in bins)
    return float(sum(abs(b.accuracy - b.confidence) * b.count for b in bins) / n)


def top_k_accuracy(probs: NDArray[np.floating], y_true_idx: NDArray[np.integer], k: int) -> float:
    """Share of examples whose true class is among the ``k`` highest scores (ties: lower index)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    p = _probs(probs, y_true_idx)
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == np.asarray(y_true_idx)[:, None], axis=1)))


def comparison_table(rows: Sequence[ComparisonRow]) -> str:
    """A Markdown table by level, then accuracy descending; missing figures print as "—"."""
    if not rows:
        raise ValueError("comparison_table needs at least one row")

    def number(value: float | None, decimals: int) -> str:
        return "—" if value is None else f"{value:.{decimals}f}"

    header = ["Level", "Model", "Objective", "Accuracy", "Macro-F1", "ECE", "Train (s)", "Notes"]
    table: list[list[str]] = []
    for r in sorted(rows, key=lambda r: (r.level, -r.accuracy, r.model, r.objective)):
        names = [f"L{r.level}", _cell(r.model), _cell(r.objective)]
        figures = [number(v, 4) for v in (r.accuracy, r.macro_f1, r.ece)]
        table.append([*names, *figures, number(r.train_seconds, 0), _cell(r.notes)])
    return _table(header, table)
