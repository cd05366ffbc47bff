"""Acquisition functions rank known probability vectors as expected; selection dedupes and mixes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prodcat.training.acquisition import (
    entropy,
    information_density,
    kl_to_consensus,
    least_confidence,
    margin,
    score,
    select,
    vote_entropy,
)

SURE = [0.98, 0.01, 0.01]
TORN = [0.49, 0.48, 0.03]  # two classes nearly tied
FLAT = [1 / 3, 1 / 3, 1 / 3]
PROBS = np.array([SURE, TORN, FLAT])


def test_single_model_strategies_rank_known_vectors() -> None:
    assert list(np.argsort(-least_confidence(PROBS))) == [2, 1, 0]
    assert list(np.argsort(-entropy(PROBS))) == [2, 1, 0]
    # Margin prefers the near tie over the flat row? No: flat has p1 - p2 = 0, the tie 0.01.
    assert list(np.argsort(-margin(PROBS))) == [2, 1, 0]
    assert margin(PROBS)[1] == pytest.approx(0.99)
    assert entropy(PROBS)[2] == pytest.approx(math.log(3))
    assert least_confidence(PROBS)[0] == pytest.approx(0.02)
    # Where they disagree: a near tie between two classes vs a spread over many.
    tie = [0.45, 0.45, 0.1, 0.0, 0.0]
    spread = [0.6, 0.1, 0.1, 0.1, 0.1]
    both = np.array([tie, spread])
    assert margin(both)[0] > margin(both)[1]
    assert entropy(both)[1] > entropy(both)[0]
    assert np.allclose(score("entropy", both), entropy(both))
    with pytest.raises(ValueError):
        score("vote_entropy", both)


def test_committee_disagreement() -> None:
    agree = np.array([[SURE], [SURE], [SURE]])
    split = np.array([[[0.9, 0.1, 0.0]], [[0.1, 0.9, 0.0]], [[0.0, 0.1, 0.9]]])
    assert vote_entropy(agree)[0] == pytest.approx(0.0)
    assert vote_entropy(split)[0] == pytest.approx(math.log(3))
    assert kl_to_consensus(agree)[0] == pytest.approx(0.0, abs=1e-9)
    assert kl_to_consensus(split)[0] > 0.5
    with pytest.raises(ValueError):
        vote_entropy(np.array([PROBS]))  # one member is not a committee


def test_information_density_weighs_typical_products() -> None:
    u = np.array([0.9, 0.9, 0.2])
    sim = np.array([0.1, 0.8, 0.8])
    assert list(np.argsort(-information_density(u, sim, beta=1.0))) == [1, 2, 0]
    assert np.allclose(information_density(u, sim, beta=0.0), u)


def test_select_excludes_labelled_and_pending_and_keeps_the_random_share() -> None:
    scores = np.arange(100, dtype=float)
    exclude = np.zeros(100, bool)
    exclude[90:] = True  # the ten best are labelled or pending
    idx, was_random = select(
        scores, 20, exclude=exclude, random_share=0.25, rng=np.random.default_rng(0)
    )
    assert len(idx) == 20 and len(set(idx.tolist())) == 20
    assert not exclude[idx].any()
    assert was_random.sum() == 5
    assert sorted(idx[~was_random].tolist()) == list(range(75, 90))
    assert not set(idx[was_random].tolist()) & set(range(75, 90))
    # Fewer candidates than asked: all of them, once.
    idx, _ = select(scores[:3], 10)
    assert sorted(idx.tolist()) == [0, 1, 2]


@given(
    n=st.integers(0, 60),
    k=st.integers(0, 70),
    share=st.floats(0, 1),
    seed=st.integers(0, 10),
)
def test_select_never_repeats_or_picks_excluded(n: int, k: int, share: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    exclude = rng.random(n) < 0.3
    idx, was_random = select(scores, k, exclude=exclude, random_share=share, rng=rng)
    assert len(idx) == len(set(idx.tolist())) == min(k, int((~exclude).sum()))
    assert not exclude[idx].any()
    assert len(was_random) == len(idx)
