"""The hybrid weight suggested from judged pairs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from prodcat.training.exceptions import TrainingError
from prodcat.training.similarity_weights import MIN_EACH, auc, choose_text_weight


def test_auc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 200).astype(float)  # many ties
    relevant = rng.random(200) < 0.4
    assert auc(scores, relevant) == pytest.approx(roc_auc_score(relevant, scores))


def test_the_weight_follows_the_side_that_tells_relevant_pairs_apart() -> None:
    rng = np.random.default_rng(0)
    relevant = rng.random(400) < 0.5
    informative = relevant * 0.3 + rng.normal(0, 0.1, 400)
    noise = rng.normal(0.5, 0.1, 400)
    by_text = choose_text_weight(noise, informative, relevant, current=0.5)
    by_image = choose_text_weight(informative, noise, relevant, current=0.5)
    assert by_text.text_weight >= 0.9 and by_image.text_weight <= 0.1
    assert by_text.best_auc > 0.9 and by_text.auc_by_weight[0.0] < 0.6
    assert (by_text.relevant, by_text.irrelevant) == (int(relevant.sum()), int((~relevant).sum()))


def test_a_flat_curve_keeps_the_current_weight() -> None:
    relevant = [True] * 12 + [False] * 12
    same = [1.0] * 12 + [0.0] * 12  # both sides separate perfectly at every weight
    assert choose_text_weight(same, same, relevant, current=0.35).text_weight == 0.35


def test_too_few_judgements_say_what_to_do() -> None:
    relevant = [True] * MIN_EACH + [False] * (MIN_EACH - 1)
    scores = [0.5] * len(relevant)
    with pytest.raises(TrainingError, match="Similarity page"):
        choose_text_weight(scores, scores, relevant, current=0.5)
