"""Query by committee at prediction time: aligning versions' classes, scores in the prediction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prodcat.core.model_store import ClassifierCard
from prodcat.schemas.serde import serde_for
from prodcat.serving.backends import ModelOutput
from prodcat.serving.classify import predictions
from prodcat.serving.committee import align, committee_scores, predict_with_committee


def _card(version: int, ids: tuple[str, ...]) -> ClassifierCard:
    return ClassifierCard("clf", version, ids, tuple((i,) for i in ids), (), ())


def _out(version: int, probs: list[list[float]]) -> ModelOutput:
    return ModelOutput("clf", version, {"exclusive_probs": np.array(probs)})


def test_members_are_aligned_on_the_newest_classes() -> None:
    probs = np.array([[0.5, 0.3, 0.2], [0.0, 0.0, 1.0]])
    aligned = align(probs, ["a", "b", "old"], ["b", "a", "new"])
    # "old" is dropped and the row renormalised; "new" is unknown to the member: 0.
    np.testing.assert_allclose(aligned[0], [0.3 / 0.8, 0.5 / 0.8, 0.0])
    np.testing.assert_allclose(aligned[1], [1 / 3, 1 / 3, 1 / 3])  # nothing shared: uniform


def test_committee_scores_rank_disagreement_first() -> None:
    ids = ["a", "b"]
    newest = np.array([[0.9, 0.1], [0.9, 0.1]])
    older = np.array([[0.9, 0.1], [0.1, 0.9]])  # agrees on product 0, not on product 1
    scores = committee_scores(ids, [(ids, newest), (ids, older)])
    assert scores is not None
    vote, kl = scores
    assert vote[0] == pytest.approx(0.0) and vote[1] == pytest.approx(math.log(2))
    assert kl[0] == pytest.approx(0.0, abs=1e-9) and kl[1] > 0.3
    assert committee_scores(ids, [(ids, newest)]) is None


def test_predictions_carry_committee_scores_only_with_a_committee() -> None:
    products = [{"product_id": "p1"}, {"product_id": "p2"}]
    v2 = _card(2, ("a", "b", "c"))
    v1 = _card(1, ("a", "b"))  # v2 added class c
    output = _out(2, [[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    alone = predictions(products, output, v2, top_k=2, rule_threshold=0.5, now_ms=1)
    assert alone[0]["uncertainty"]["vote_entropy"] is None
    assert alone[0]["uncertainty"]["kl_consensus"] is None
    older = _out(1, [[0.7, 0.3], [0.6, 0.4]])
    mismatched = _out(1, [[1.0]])  # does not fit its card: left out
    with_committee = predictions(
        products, output, v2, top_k=2, rule_threshold=0.5, now_ms=1,
        committee=[(v1, older), (v1, mismatched)],
    )  # fmt: skip
    first, second = (r["uncertainty"] for r in with_committee)
    assert first["vote_entropy"] == pytest.approx(0.0)  # both vote a
    assert second["vote_entropy"] == pytest.approx(math.log(2))  # c against a
    assert second["kl_consensus"] > first["kl_consensus"] >= 0.0
    serde = serde_for("Prediction")
    assert serde.decode(serde.encode(with_committee[1]))["uncertainty"] == second


class _Backend:
    name = "clf"

    def __init__(self) -> None:
        self.asked: list[tuple[int, int]] = []

    def predict(self, inputs: object) -> ModelOutput:
        return _out(3, [[1.0]])

    def predict_members(self, inputs: object, newest: int, size: int) -> list[ModelOutput]:
        self.asked.append((newest, size))
        return [_out(2, [[1.0]])]

    def close(self) -> None:
        return None


def test_predict_with_committee_asks_for_older_members_only_when_on() -> None:
    backend = _Backend()
    output, members = predict_with_committee(backend, {}, 0)
    assert output.version == 3 and members == [] and backend.asked == []
    output, members = predict_with_committee(backend, {}, 3)
    assert [m.version for m in members] == [2] and backend.asked == [(3, 2)]
