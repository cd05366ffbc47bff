"""Confident learning flags the labels a model confidently disagrees with, and nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from prodcat.training.firewall import find_suspects, out_of_sample_probabilities


def test_a_label_the_model_confidently_disagrees_with_is_suspect() -> None:
    p = np.array(
        [
            [0.9, 0.1, 0.0],  # labelled 0, model agrees
            [0.8, 0.2, 0.0],  # labelled 0, agrees
            [0.1, 0.9, 0.0],  # labelled 1, agrees
            [0.2, 0.7, 0.1],  # labelled 1, agrees
            [0.88, 0.12, 0.0],  # labelled 1: the model is confident it is a 0 -> suspect
            [0.4, 0.35, 0.25],  # labelled 2, unsure: no class reaches its threshold
        ]
    )
    y = [0, 0, 1, 1, 1, 2]
    found = find_suspects(y, p)
    assert found.mask.tolist() == [False, False, False, False, True, False]
    assert found.confident[4] == 0
    assert found.self_confidence[4] == pytest.approx(0.12)
    assert found.thresholds[0] == pytest.approx(0.85)
    assert found.count == 1
    with pytest.raises(ValueError, match="labels for"):
        find_suspects([0], p)


def test_cross_fitted_probabilities_find_flipped_labels() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 4
    x = np.vstack([rng.normal(centres[k], 1.0, size=(60, 3)) for k in range(3)])
    y = np.repeat([0, 1, 2], 60)
    flipped = y.copy()
    wrong = rng.choice(len(y), size=9, replace=False)
    flipped[wrong] = (y[wrong] + 1) % 3
    p = out_of_sample_probabilities(x, flipped, 3, folds=5, seed=0, temperature=0.5)
    assert p.shape == (180, 3) and np.allclose(p.sum(axis=1), 1.0)
    found = find_suspects(flipped, p)
    hits = set(np.flatnonzero(found.mask)) & set(wrong.tolist())
    assert len(hits) >= 6  # recall ≥ 2/3
    assert len(hits) / found.count >= 0.6  # precision
    clean = find_suspects(y, out_of_sample_probabilities(x, y, 3, folds=5, temperature=0.5))
    assert clean.count <= 3  # clean labels are (almost) never held
