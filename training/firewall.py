"""A label firewall: which labels are likely wrong, by confident learning.

Confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 2021) needs only out-of-sample probabilities ``p[i, k]`` (from a model that
did not train on label ``i``) and the given labels ``y``:

1. per class ``k``, a threshold ``t[k]`` = the mean of ``p[i, k]`` over the examples labelled
   ``k`` (the model's typical confidence in that class when it is the label);
2. an example's *confident class* is, among the classes with ``p[i, k] ≥ t[k]``, the one of
   highest ``p[i, k]`` (none when no class reaches its threshold);
3. a label is **suspect** when its example has a confident class and it is not the given label
   (the off-diagonal of the confident joint). Its score is the self-confidence ``p[i, y[i]]``:
   lower is more suspect.

:func:`out_of_sample_probabilities` makes ``p`` by K-fold cross-fitting (TF-IDF + LinearSVC, its
margins through a softmax); the stream path can use the committee's probabilities instead.
Written for prodcat from the paper's definitions (no code taken from the reference library).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["Suspects", "find_suspects", "out_of_sample_probabilities"]

Array = np.ndarray


@dataclass(frozen=True)
class Suspects:
    """Per example: suspect or not, the confident class (-1: none) and the self-confidence."""

    mask: Array
    confident: Array
    self_confidence: Array
    thresholds: Array

    @property
    def count(self) -> int:
        return int(self.mask.sum())


def find_suspects(labels: Sequence[int] | Array, probabilities: Array) -> Suspects:
    """Confident learning over ``probabilities`` (n rows by classes, rows out of sample)."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    n, classes = p.shape
    if len(y) != n:
        raise ValueError(f"{len(y)} labels for {n} rows of probabilities")
    sums = np.bincount(y, weights=p[np.arange(n), y], minlength=classes)
    counts = np.bincount(y, minlength=classes)
    # A class no example is labelled with has no threshold: it never becomes a confident class.
    thresholds = np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)
    above = p >= thresholds[None, :]
    masked = np.where(above, p, -np.inf)
    confident = np.where(above.any(axis=1), masked.argmax(axis=1), -1)
    mask = (confident >= 0) & (confident != y)
    return Suspects(mask, confident, p[np.arange(n), y], thresholds)


def _softmax(scores: Array) -> Array:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: Array = exp / exp.sum(axis=1, keepdims=True)
    return out


def out_of_sample_probabilities(
    features: sp.spmatrix | Array,
    labels: Sequence[int] | Array,
    n_classes: int,
    *,
    folds: int = 5,
    seed: int = 0,
    temperature: float = 0.1,
) -> Array:
    """``p[i, k]`` for every row from a LinearSVC fitted on the other folds (stratified where a
    class has enough rows); margins → softmax(margin / ``temperature``)."""
    from sklearn.model_selection import KFold
    from sklearn.svm import LinearSVC

    y = np.asarray(labels, dtype=np.int64)
    out = np.zeros((len(y), n_classes))
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, held in splitter.split(np.zeros(len(y))):
        classes = np.unique(y[train])
        if len(classes) < 2:
            out[np.ix_(held, classes)] = 1.0
            continue
        model = LinearSVC(C=1.0, random_state=seed).fit(features[train], y[train])
        margins = model.decision_function(features[held])
        if margins.ndim == 1:  # two classes: one margin
            margins = np.stack([-margins, margins], axis=1)
        out[np.ix_(held, model.classes_)] = _softmax(margins / temperature)
    return out
