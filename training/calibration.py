"""Accuracy without labels: calibrated confidences, and what they say a model's accuracy is.

A classifier's top-1 probability is rarely its chance of being right. Temperature scaling fixes
the scale with one number: on held-out products, ``T`` is chosen to minimise the negative
log-likelihood of the true class under ``softmax(log p / T)`` (``T > 1`` softens an over-confident
model). The mean calibrated top-1 probability over any set of products is then an estimate of the
model's accuracy on them (confidence-based performance estimation) that needs no labels: the
classify agent exports it per feed (``prodcat_expected_correct_total`` /
``prodcat_expected_predictions_total``), and an alert watches it drop when a feed shifts.

The estimate is only as good as the calibration: it is right where the new products look like the
held-out ones to the model, and it overestimates on products unlike anything it saw (it cannot
know what it does not know); ``prodcat experiment accuracy-estimate`` measures both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np

__all__ = ["calibrated", "estimated_accuracy", "fit_temperature"]

Array = np.ndarray[Any, Any]
_EPS: Final = 1e-12
_GRID: Final = np.exp(np.linspace(np.log(0.05), np.log(20.0), 241))


def calibrated(probs: Array, temperature: float) -> Array:
    """``softmax(log p / T)`` row by row."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def _nll(probs: Array, truth: Array, temperature: float) -> float:
    p = calibrated(probs, temperature)[np.arange(len(truth)), truth]
    return float(-np.mean(np.log(np.clip(p, _EPS, 1.0))))


def fit_temperature(probs: Array, truth: Sequence[int] | Array) -> float:
    """The temperature minimising the held-out negative log-likelihood (a grid from 0.05 to 20,
    then refined); ``truth`` holds class indexes (a negative index: a class the model lacks,
    left out)."""
    truth = np.asarray(truth)
    keep = truth >= 0
    probs, truth = np.asarray(probs)[keep], truth[keep]
    if len(truth) == 0:
        return 1.0
    losses = [_nll(probs, truth, t) for t in _GRID]
    best = int(np.argmin(losses))
    low, high = _GRID[max(0, best - 1)], _GRID[min(len(_GRID) - 1, best + 1)]
    fine = np.linspace(low, high, 21)
    return float(fine[int(np.argmin([_nll(probs, truth, t) for t in fine]))])


def estimated_accuracy(probs: Array, temperature: float) -> float:
    """The mean calibrated top-1 probability: the expected share of correct top-1 predictions."""
    if len(probs) == 0:
        return 0.0
    return float(calibrated(probs, temperature).max(axis=1).mean())
