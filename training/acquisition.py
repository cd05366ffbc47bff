"""Acquisition functions for active learning: which products a human label helps most.

Pure NumPy, shared by the sampler agent (streaming) and the active-learning experiment (offline).
Every score is "higher = more informative"; :func:`select` picks the top of a score while keeping a
random share for unbiased evaluation and never picking an excluded (labelled or pending) product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
_EPS = 1e-12

STRATEGIES = ("least_confidence", "margin", "entropy", "vote_entropy", "kl_consensus", "random")


def _probs(probs: Array) -> Array:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] == 0:
        raise ValueError(f"expected probabilities [n, classes], got shape {p.shape}")
    return p


def least_confidence(probs: Array) -> Array:
    """1 - p(top class)."""
    return np.asarray(1.0 - _probs(probs).max(axis=1))


def margin(probs: Array) -> Array:
    """1 - (p1 - p2): a small gap between the two best classes is informative."""
    p = _probs(probs)
    if p.shape[1] == 1:
        return np.zeros(len(p))
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    return np.asarray(1.0 - (top2[:, 0] - top2[:, 1]))


def entropy(probs: Array) -> Array:
    """Shannon entropy of each row, in nats."""
    p = _probs(probs)
    return np.asarray(np.maximum(-(p * np.log(np.clip(p, _EPS, 1.0))).sum(axis=1), 0.0))


def _committee(probs: Array) -> Array:
    c = np.asarray(probs, dtype=np.float64)
    if c.ndim != 3 or c.shape[0] < 2 or c.shape[2] == 0:
        raise ValueError(
            f"expected committee probabilities [members>=2, n, classes], got {c.shape}"
        )
    return c


def vote_entropy(committee: Array) -> Array:
    """Entropy of the members' hard votes (query by committee)."""
    c = _committee(committee)
    members, n, classes = c.shape
    votes = c.argmax(axis=2)  # [members, n]
    counts = np.zeros((n, classes))
    np.add.at(counts, (np.tile(np.arange(n), members), votes.ravel()), 1.0)
    return entropy(counts / members)


def kl_to_consensus(committee: Array) -> Array:
    """Mean KL divergence of each member's distribution from the committee's mean."""
    c = _committee(committee)
    consensus = c.mean(axis=0, keepdims=True)
    kl = (c * (np.log(np.clip(c, _EPS, 1.0)) - np.log(np.clip(consensus, _EPS, 1.0)))).sum(axis=2)
    return np.asarray(np.maximum(kl.mean(axis=0), 0.0))


def information_density(uncertainty: Array, similarity: Array, beta: float = 1.0) -> Array:
    """Uncertainty times (mean similarity to the product's neighbours)^β: favours typical products."""
    u = np.asarray(uncertainty, dtype=np.float64)
    s = np.clip(np.asarray(similarity, dtype=np.float64), 0.0, None)
    if u.shape != s.shape:
        raise ValueError(f"uncertainty {u.shape} and similarity {s.shape} differ in shape")
    return u * s**beta


def score(strategy: str, probs: Array) -> Array:
    """The single-model score of ``strategy`` for each row of ``probs``."""
    functions = {"least_confidence": least_confidence, "margin": margin, "entropy": entropy}
    if strategy not in functions:
        raise ValueError(f"unknown single-model strategy {strategy!r}; known: {sorted(functions)}")
    return functions[strategy](probs)


def select(
    scores: Array,
    k: int,
    *,
    exclude: Sequence[bool] | Array | None = None,
    random_share: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[Array, Array]:
    """Pick up to ``k`` rows: the best ``k - r`` by score and ``r = round(k * random_share)`` uniformly
    at random from the rest, never an excluded row. Returns (indices, was_random), score picks first.
    Ties in score keep the input order (stable)."""
    s = np.asarray(scores, dtype=np.float64)
    if not 0.0 <= random_share <= 1.0:
        raise ValueError(f"random_share must be in [0, 1], got {random_share}")
    allowed = np.ones(len(s), dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    if allowed.shape != s.shape:
        raise ValueError("exclude must have one flag per score")
    candidates = np.flatnonzero(allowed & np.isfinite(s))
    k = max(0, min(k, len(candidates)))
    n_random = round(k * random_share)
    order = candidates[np.argsort(-s[candidates], kind="stable")]
    top = order[: k - n_random]
    rest = np.setdiff1d(candidates, top, assume_unique=True)
    generator = rng or np.random.default_rng()
    randoms = generator.choice(rest, size=min(n_random, len(rest)), replace=False)
    indices = np.concatenate([top, randoms]).astype(np.int64)
    was_random = np.concatenate([np.zeros(len(top), bool), np.ones(len(randoms), bool)])
    return indices, was_random


def total_variation(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Total variation distance of two (top-k truncated) class distributions given as id → p."""
    keys = a.keys() | b.keys()
    return 0.5 * sum(abs(a.get(key, 0.0) - b.get(key, 0.0)) for key in keys)


def top_k_signature(probs: Array, k: int = 5) -> list[dict[str, float]]:
    """Each row's ``k`` most probable classes as id → p (what a Prediction record carries)."""
    p = _probs(probs)
    k = min(k, p.shape[1])
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return [{str(c): float(p[row, c]) for c in top[row]} for row in range(len(p))]


def pick_diverse(
    order: Sequence[int] | Array,
    signatures: Sequence[Mapping[str, float]],
    k: int,
    radius: float,
) -> list[int]:
    """Walk ``order`` (best first) and keep up to ``k`` rows, skipping a row whose predicted
    distribution is within total variation ``radius`` of one already kept: near-duplicate products
    (the same item in five colours) get near-identical predictions, and one label answers for all."""
    kept: list[int] = []
    for row in order:
        signature = signatures[int(row)]
        if all(total_variation(signature, signatures[other]) >= radius for other in kept):
            kept.append(int(row))
            if len(kept) == k:
                break
    return kept
