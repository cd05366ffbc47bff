"""The hybrid similarity weight that people's judgements support.

Each judgement says whether one neighbour was relevant to one query product. With both products'
image and title vectors, every judged pair has an image cosine and a title cosine; for each
candidate ``text_weight`` the fused score ``w x title + (1 - w) x image`` should rank the relevant
pairs above the others. The weight with the highest ROC AUC over the judged pairs (the chance that
a random relevant pair outscores a random irrelevant one) is suggested; ties go to the weight
closest to the current one, so a flat curve changes nothing. Pure numpy; ``prodcat similarity
weights`` gathers the pairs (``prodcat.streams.similarity_commands``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from prodcat.training.exceptions import TrainingError

__all__ = ["MIN_EACH", "WeightChoice", "auc", "choose_text_weight"]

#: Fewer relevant or irrelevant judged pairs than this say nothing about the weight.
MIN_EACH: Final = 10
GRID: Final = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 21))


@dataclass(frozen=True)
class WeightChoice:
    """The suggested weight, the AUC at every weight tried, and what it was computed from."""

    text_weight: float
    auc_by_weight: dict[float, float]
    relevant: int
    irrelevant: int

    @property
    def best_auc(self) -> float:
        return self.auc_by_weight[self.text_weight]


def auc(scores: np.ndarray, relevant: np.ndarray) -> float:
    """ROC AUC of ``scores`` for the boolean ``relevant`` (ties count one half)."""
    ranks = _average_ranks(scores)
    positives = int(relevant.sum())
    negatives = len(relevant) - positives
    if positives == 0 or negatives == 0:
        raise TrainingError("the AUC needs relevant and irrelevant pairs")
    rank_sum = float(ranks[relevant].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def choose_text_weight(
    image_scores: Sequence[float],
    text_scores: Sequence[float],
    relevant: Sequence[bool],
    current: float,
) -> WeightChoice:
    """The weight whose fused scores best separate relevant from irrelevant judged pairs."""
    image = np.asarray(image_scores, dtype=np.float64)
    text = np.asarray(text_scores, dtype=np.float64)
    wanted = np.asarray(relevant, dtype=bool)
    positives = int(wanted.sum())
    negatives = len(wanted) - positives
    if min(positives, negatives) < MIN_EACH:
        raise TrainingError(
            f"{positives} relevant and {negatives} irrelevant judged pairs with both vectors: "
            f"at least {MIN_EACH} of each are needed. Judge more neighbours on the web UI's "
            "Similarity page (y / n on each card), then run this again."
        )
    by_weight = {w: round(auc(w * text + (1 - w) * image, wanted), 4) for w in GRID}
    best = max(by_weight.values())
    chosen = min((w for w, a in by_weight.items() if a == best), key=lambda w: abs(w - current))
    return WeightChoice(chosen, by_weight, positives, negatives)
