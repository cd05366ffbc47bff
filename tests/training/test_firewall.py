"""Confident learning flags the labels a model confidently disagrees with, and nothing else."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from prodcat.training.firewall import (
    CONFIRMED,
    HELD,
    LabelFacts,
    SuspectLabel,
    find_suspects,
    out_of_sample_probabilities,
    screen,
)


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


def test_a_class_with_too_few_labels_is_not_judged() -> None:
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.9, 0.1]])
    y = [0, 0, 0, 1]  # class 1 has one label (a new class)
    # Judged, its threshold (0.1) is so low that a plain 0 with p = 0.4 looks like a 1.
    assert find_suspects(y, p).mask.tolist() == [False, False, True, True]
    # Not judged: class 1 is never a confident class and its label is not held.
    assert find_suspects(y, p, min_class_count=2).mask.tolist() == [False] * 4


_WORDS = {
    "shoes": "running shoe sneaker sole lace",
    "watches": "analog watch strap dial quartz",
    "mugs": "ceramic coffee mug handle cup",
    "lamps": "desk lamp bulb shade led",
    "socks": "cotton ankle socks pair woven",
}


def _facts(n_per_class: int = 60, flips: int = 12) -> tuple[list[LabelFacts], set[str]]:
    rng = np.random.default_rng(3)
    classes = sorted(_WORDS)
    facts, wrong = [], set()
    for c in classes:
        for i in range(n_per_class):
            words = rng.choice(_WORDS[c].split(), size=3, replace=False)
            pid = f"{c}-{i}"
            facts.append(LabelFacts(pid, c, "human", f"ann{i % 3}", 1000 + i, " ".join(words)))
    for index in rng.choice(len(facts), size=flips, replace=False):
        f = facts[index]
        other = classes[(classes.index(f.category_id) + 1) % len(classes)]
        facts[index] = LabelFacts(f.product_id, other, "rules", None, f.labelled_at, f.text)
        wrong.add(f.product_id)
    return facts, wrong


def test_screening_holds_wrong_labels_with_evidence_and_respects_reviews() -> None:
    facts, wrong = _facts()
    first = screen(facts, {}, flagged_by="retrain v2", now_ms=5, min_labels=100)
    held = {s.product_id: s for s in first.held}
    assert len(set(held) & wrong) >= 10 and len(set(held) - wrong) <= 3
    some = held[sorted(set(held) & wrong)[0]]
    assert some.status == HELD and some.suggested_id == some.product_id.split("-")[0]
    assert some.suggested_probability > some.self_confidence
    assert (some.flagged_by, some.flagged_at, some.source) == ("retrain v2", 5, "rules")
    assert first.by_source["rules"] == sum(s.source == "rules" for s in first.held)
    assert SuspectLabel.from_json(some.to_json()) == some

    # A person confirmed one held label; another was held by an older job but its label has
    # since been corrected (so it is no longer suspect); the rest were held before.
    reviews = {s.product_id: s for s in first.held}
    confirmed = replace(some, status=CONFIRMED, reviewed_by="ann0", reviewed_at=9)
    reviews[some.product_id] = confirmed
    corrected_id = sorted(set(held) & wrong)[1]
    fixed = [
        replace(f, category_id=f.product_id.split("-")[0], labelled_at=99)
        if f.product_id == corrected_id
        else f
        for f in facts
    ]
    second = screen(fixed, reviews, flagged_by="retrain v3", now_ms=7, min_labels=100)
    again = {s.product_id: s for s in second.held}
    assert some.product_id not in again and second.confirmed == 1
    assert corrected_id in second.cleared and corrected_id not in again
    kept = sorted(set(again) & set(held))[0]
    assert (again[kept].flagged_by, again[kept].flagged_at) == ("retrain v2", 5)  # held since
    # A confirmation covers that label only: a newer label of the product is judged afresh.
    assert not confirmed.covers(replace(facts[0], labelled_at=1))

    few = screen(fixed[:50], reviews, flagged_by="retrain v4", now_ms=8, min_labels=100)
    assert few.held == [] and "fewer than 100" in (few.skipped or "")
    # nothing is held while too few labels are judged
    assert set(few.cleared) == {pid for pid, r in reviews.items() if r.status == HELD}
    with pytest.raises(ValueError, match="status"):
        SuspectLabel.from_json(replace(some, status="maybe").to_json())


def test_a_systematic_mistake_is_found_by_a_model_of_peoples_labels() -> None:
    """A keyword rule labels every product with "cup" in its title as a watch: a model fitted on
    every label learns the rule's mistake and finds little; one fitted on people's labels only
    sees mugs (the screening's default when people labelled enough)."""
    facts, _ = _facts(flips=0)
    rng = np.random.default_rng(5)
    systematic = set()
    for i, f in enumerate(facts):
        if f.category_id == "mugs" and "cup" in f.text.split():
            facts[i] = replace(f, category_id="watches", source="rules", annotator=None)
            systematic.add(f.product_id)
        elif rng.random() < 0.2:  # other rule labels, right
            facts[i] = replace(f, source="rules", annotator=None)
    assert len(systematic) >= 20
    found = screen(facts, {}, flagged_by="v", now_ms=0, min_labels=100)
    held = {s.product_id for s in found.held}
    assert found.reference == sum(f.source == "human" for f in facts)
    assert len(held & systematic) >= 0.9 * len(systematic)
    assert len(held - systematic) <= 3
    assert {s.suggested_id for s in found.held if s.product_id in systematic} == {"mugs"}
    # Every label teaching (too few people's labels): the rule's mistake is learnt, not found.
    everyone = screen(facts, {}, flagged_by="v", now_ms=0, min_labels=290)
    assert everyone.reference == len(facts)
    assert len({s.product_id for s in everyone.held} & systematic) <= 0.5 * len(systematic)


def test_a_hold_two_annotators_made_stays_until_decided() -> None:
    facts, _ = _facts(flips=0)
    target = facts[0]
    disagreement = SuspectLabel(
        target.product_id, target.category_id, "human", target.annotator, target.labelled_at,
        HELD, "mugs", 0.5, 0.5, 1, "double labelling (bob)",
    )  # fmt: skip
    reviews = {target.product_id: disagreement}
    for min_labels in (100, 10_000):  # judged or not, the screening keeps it
        found = screen(facts, reviews, flagged_by="retrain v5", now_ms=2, min_labels=min_labels)
        assert disagreement in found.held and target.product_id not in found.cleared
    relabelled = [replace(target, labelled_at=99), *facts[1:]]
    found = screen(relabelled, reviews, flagged_by="retrain v5", now_ms=2, min_labels=100)
    assert target.product_id in found.cleared  # the label changed: the hold is gone
