"""Temperature scaling: an over-confident model's confidences become its accuracy."""

from __future__ import annotations

import numpy as np

from prodcat.training.calibration import calibrated, estimated_accuracy, fit_temperature


def _overconfident(n: int, seed: int, accuracy: float) -> tuple[np.ndarray, np.ndarray]:
    """Right ``accuracy`` of the time, but always ~97% sure of its top class (10 classes)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(10, size=n)
    right = rng.random(n) < accuracy
    top = np.where(right, truth, (truth + rng.integers(1, 10, size=n)) % 10)
    logits = rng.normal(0, 0.3, size=(n, 10))
    logits[np.arange(n), top] += 4.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, truth


def test_the_fitted_temperature_makes_confidence_match_accuracy() -> None:
    probs, truth = _overconfident(4000, 0, accuracy=0.8)
    raw = float(probs.max(axis=1).mean())
    assert raw > 0.9  # over-confident
    temperature = fit_temperature(probs, truth)
    assert temperature > 1.0  # softened
    fresh, fresh_truth = _overconfident(4000, 1, accuracy=0.8)
    true = float((fresh.argmax(1) == fresh_truth).mean())
    assert abs(estimated_accuracy(fresh, temperature) - true) < 0.02
    # A shift the model is unsure about: the estimate follows the accuracy down.
    shifted, shifted_truth = _overconfident(4000, 2, accuracy=0.8)
    shifted = calibrated(shifted, 3.0)  # flatter: less sure, and here also less often right
    flip = np.random.default_rng(3).random(len(shifted_truth)) < 0.3
    shifted_truth = np.where(flip, (shifted_truth + 1) % 10, shifted_truth)
    assert estimated_accuracy(shifted, temperature) < estimated_accuracy(fresh, temperature)


def test_calibrated_rows_sum_to_one_and_keep_their_order() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    for t in (0.5, 1.0, 3.0):
        out = calibrated(probs, t)
        np.testing.assert_allclose(out.sum(axis=1), 1.0)
        assert (out.argmax(1) == probs.argmax(1)).all()
    np.testing.assert_allclose(calibrated(probs, 1.0), probs, rtol=1e-9)
    assert fit_temperature(probs, np.array([-1, -1])) == 1.0  # no known class: leave it be
