"""Back-off decisions: per-node thresholds meet the precision target on the data they were chosen
on, and a prediction emits the deepest node that meets its threshold."""

from __future__ import annotations

import numpy as np

from prodcat.core.ids import path_id
from prodcat.training.decisions import (
    ABSTAINED,
    BACKED_OFF,
    LEAF,
    DecisionModel,
    coverage_report,
    fit_thresholds,
)

PATHS = [("Shoes", "Boots"), ("Shoes", "Sandals"), ("Bags", "Totes")]
IDS = ["c_boots", "c_sandals", "c_totes"]


def _data(n: int, seed: int) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Boots and sandals are confused with each other (never with bags) when the model is unsure."""
    rng = np.random.default_rng(seed)
    probs, truth = [], []
    for _ in range(n):
        true = int(rng.integers(3))
        confident = rng.random() < 0.6
        p = np.full(3, 0.02)
        if confident or true == 2:
            p[true] = 0.96
        else:  # unsure between the two shoes, right half of the time
            guess = true if rng.random() < 0.5 else 1 - true
            p[guess], p[1 - guess] = 0.52, 0.46
        probs.append(p / p.sum())
        truth.append(PATHS[true])
    return np.array(probs), truth


def test_thresholds_meet_the_target_and_unsure_leaves_back_off_to_their_parent() -> None:
    probs, truth = _data(2000, 0)
    model = fit_thresholds(DecisionModel(IDS, PATHS), probs, truth, target=0.95)
    decisions = model.decide(probs)
    report = {row.depth: row for row in coverage_report(decisions, truth)}
    assert report[1].precision >= 0.95 and report[2].precision >= 0.95
    kinds = {d.kind for d in decisions}
    assert kinds == {LEAF, BACKED_OFF}
    unsure = [d for d, p in zip(decisions, probs, strict=True) if p.max() < 0.6]
    assert unsure and all(d.kind == BACKED_OFF for d in unsure)
    assert {d.path for d in unsure} == {("Shoes",)}
    assert {d.category_id for d in unsure} == {path_id(["Shoes"])}  # an ancestor's path id
    sure = [d for d, p in zip(decisions, probs, strict=True) if p.max() > 0.9]
    assert all(d.kind == LEAF and d.category_id in IDS for d in sure)
    top1 = np.mean([PATHS[i] == t for i, t in zip(probs.argmax(1), truth, strict=True)])
    assert top1 < 0.95 < report[2].precision  # backing off is what buys the precision

    fresh_probs, fresh_truth = _data(2000, 1)  # and it holds on data it was not chosen on
    fresh = {r.depth: r for r in coverage_report(model.decide(fresh_probs), fresh_truth)}
    assert fresh[2].precision >= 0.93 and fresh[2].coverage > 0.6


def test_a_node_that_never_reaches_the_target_is_never_emitted() -> None:
    probs = np.array([[0.5, 0.5, 0.0]] * 40)
    truth = [PATHS[0]] * 20 + [PATHS[1]] * 20  # the model always says boots: half right
    truth = truth + [("Bags", "Totes")] * 0
    model = fit_thresholds(DecisionModel(IDS, PATHS), probs, truth, target=0.95)
    assert "c_boots" not in model.thresholds
    assert model.thresholds[path_id(["Shoes"])] <= 1.0
    decisions = model.decide(probs)
    assert {(d.kind, d.path) for d in decisions} == {(BACKED_OFF, ("Shoes",))}
    nothing = DecisionModel(IDS, PATHS, {}, 0.95).decide(probs[:1])
    assert nothing[0].kind == ABSTAINED and nothing[0].category_id is None
