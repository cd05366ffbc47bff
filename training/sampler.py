"""Choosing products to label from a stream of predictions: the sampler agent's pure part.

Predictions are gathered in a :class:`CandidateWindow` (the newest prediction of a product
replaces an older one); when the window closes, :func:`select_requests` scores its candidates with
the configured strategy, leaves out labelled and pending products, and picks up to
``min(batch_size, rate-limit allowance)`` of them — the best by score, and a ``random_share``
uniformly at random (:func:`prodcat.training.acquisition.select`) — as ``AnnotationRequest`` records.

Scores come from the ``Prediction`` record (``schemas/prediction.avsc``): its uncertainty scores,
and for query by committee the ``vote_entropy`` / ``kl_consensus`` the classify agent computes
over the newest model versions. Where a strategy cannot score a candidate (no committee scores;
no vector for information density) the fallback is documented on :func:`select_requests`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prodcat.core.settings import SamplerSettings
from prodcat.schemas.records import AnnotationRequest, Prediction
from prodcat.training import acquisition
from prodcat.training.sampler_state import Exclusions

RANDOM = "random"
COMMITTEE_FIELDS = {"qbc_vote_entropy": "vote_entropy", "qbc_kl": "kl_consensus"}

#: Mean cosine similarity of a product to its nearest neighbours, None when it has no vector.
Similarity = Callable[[str], float | None]


def uncertainty_of(prediction: Mapping[str, Any], kind: str) -> float:
    """A single-model uncertainty of a Prediction, higher = more uncertain (as in acquisition)."""
    scores = prediction["uncertainty"]
    if kind == "least_confidence":
        return float(scores["least_confidence"])
    if kind == "margin":
        return 1.0 - float(scores["margin"])  # the record holds p1 - p2
    if kind == "entropy":
        return float(scores["entropy"])
    raise ValueError(f"unknown uncertainty {kind!r}")


def invalid_reason(prediction: Mapping[str, Any]) -> str | None:
    """Why a decoded Prediction cannot be a candidate, or None if it can."""
    if not prediction.get("product_id"):
        return "empty product_id"
    scores = prediction["uncertainty"]
    for name in ("least_confidence", "margin", "entropy", "vote_entropy", "kl_consensus"):
        value = scores.get(name)
        if value is not None and (not math.isfinite(value) or value < 0):
            return f"uncertainty.{name} is {value}"
    if scores["least_confidence"] > 1 or scores["margin"] > 1:
        return "least_confidence and margin must lie in [0, 1]"
    return None


@dataclass(frozen=True, slots=True)
class Candidate:
    product_id: str
    prediction: Prediction


class CandidateWindow:
    """Candidates gathered since the window opened, one per product (the newest prediction)."""

    def __init__(self, window_s: float, max_candidates: int) -> None:
        self.window_s = window_s
        self.max_candidates = max_candidates
        self.opened_at: float | None = None
        self._items: dict[str, Candidate] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, prediction: Prediction, now_s: float) -> None:
        product_id = str(prediction["product_id"])
        old = self._items.get(product_id)
        if old is None or prediction["predicted_at"] >= old.prediction["predicted_at"]:
            self._items[product_id] = Candidate(product_id, prediction)
        if self.opened_at is None:
            self.opened_at = now_s

    def remove(self, product_id: str) -> None:
        """The product was deleted (a prediction tombstone)."""
        self._items.pop(product_id, None)

    def due(self, now_s: float) -> bool:
        if not self._items or self.opened_at is None:
            return False
        return len(self._items) >= self.max_candidates or now_s - self.opened_at >= self.window_s

    def remaining_s(self, now_s: float) -> float:
        """Seconds until the window closes (the window length when it is empty)."""
        if self.opened_at is None:
            return self.window_s
        return max(0.0, self.opened_at + self.window_s - now_s)

    def candidates(self) -> list[Candidate]:
        return list(self._items.values())

    def drain(self) -> list[Candidate]:
        items, self._items, self.opened_at = list(self._items.values()), {}, None
        return items


@dataclass
class Selection:
    """The requests of one window and what was left out, for the metrics."""

    requests: list[AnnotationRequest]
    excluded: dict[str, int]  # reason (labelled, pending) → candidates
    rate_limited: int = 0
    fallbacks: dict[str, int] | None = None  # reason (no_committee, no_vector) → candidates


def _request(candidate: Candidate, strategy: str, score: float, now_ms: int) -> AnnotationRequest:
    prediction = candidate.prediction
    decision = prediction.get("decision")
    return {
        "product_id": candidate.product_id,
        "strategy": strategy,
        "score": float(score),
        "suggestions": [
            {
                "category_id": s["category_id"],
                "path": list(s.get("path") or []),
                "probability": float(s["probability"]),
            }
            for s in prediction.get("exclusive_top_k") or []
        ],
        "model_name": prediction["model_name"],
        "model_version": int(prediction["model_version"]),
        "requested_at": now_ms,
        "decision": decision.get("kind") if decision else None,
        "partial_path": list(decision.get("path") or [])
        if decision and decision.get("kind") == "backed_off"
        else [],
    }


def _density(u: float, similarity: float | None, beta: float) -> float:
    if similarity is None:  # no vector: the plain uncertainty (an upper bound of the density)
        return u
    return float(acquisition.information_density(np.array([u]), np.array([similarity]), beta)[0])


def select_requests(
    candidates: Sequence[Candidate],
    settings: SamplerSettings,
    exclusions: Exclusions,
    *,
    allowance: int,
    now_ms: int,
    similarity: Similarity | None = None,
    rng: np.random.Generator | None = None,
) -> Selection:
    """Pick a window's annotation requests and mark them pending in ``exclusions``.

    * ``least_confidence`` / ``margin`` / ``entropy``: the prediction's uncertainty.
    * ``qbc_vote_entropy`` / ``qbc_kl``: the committee score; candidates without one rank after
      every committee-scored candidate, by ``density_uncertainty`` (and are requested under that
      strategy name, so labels record what really chose them).
    * ``density``: ``density_uncertainty * similarity^β``; a product without a vector keeps its
      plain uncertainty (its density term counts as 1, the most typical). Similarities are looked
      up lazily, best uncertainty first, and only until no unscored candidate can still win
      (``similarity ≤ 1``, so the uncertainty bounds the density).
    * ``random``: every pick is uniform at random.

    With ``undecided_first``, predictions whose ``decision`` backed off to a parent or abstained
    rank before all others (each group by the strategy's score): the model could not give them a
    category at the precision target, so a label there teaches where the model is weakest.

    ``random_share`` of the picks are uniform over the candidates the score did not pick; they are
    requested with strategy ``random``. Never more than ``allowance`` (rate limit) picks.
    """
    excluded = {"labelled": 0, "pending": 0}
    allowed: list[Candidate] = []
    for candidate in candidates:
        reason = exclusions.reason(candidate.product_id, now_ms)
        if reason is None:
            allowed.append(candidate)
        else:
            excluded[reason] += 1
    wanted = min(settings.batch_size, len(allowed))
    k = max(0, min(wanted, allowance))
    selection = Selection([], excluded, rate_limited=wanted - k, fallbacks={})
    if k == 0:
        return selection
    strategy = settings.strategy
    fallback = settings.density_uncertainty
    u = np.array([uncertainty_of(c.prediction, fallback) for c in allowed])
    scores = u.copy()
    names = [strategy] * len(allowed)
    tier = np.zeros(len(allowed))  # rank by (tier, score): tier 1 ranks after every tier 0
    share = 1.0 if strategy == RANDOM else settings.random_share
    similarities: dict[int, float | None] = {}
    if strategy in ("least_confidence", "margin", "entropy"):
        scores = np.array([uncertainty_of(c.prediction, strategy) for c in allowed])
    elif strategy in COMMITTEE_FIELDS:
        field = COMMITTEE_FIELDS[strategy]
        for i, candidate in enumerate(allowed):
            value = candidate.prediction["uncertainty"].get(field)
            if value is None:
                tier[i], names[i] = 1, fallback
            else:
                scores[i] = value
        selection.fallbacks = {"no_committee": int(tier.sum())}
    elif strategy == "density":
        if similarity is None:
            raise ValueError("the density strategy needs a similarity source")
        n_top = k - round(k * share)
        tier[:] = 1  # not scored yet: after every scored candidate
        best: list[float] = []
        for i in np.argsort(-u, kind="stable"):
            if n_top == 0 or (len(best) >= n_top and best[n_top - 1] >= u[i]):
                break  # no unscored candidate can beat the n_top-th density
            similarities[int(i)] = similarity(allowed[i].product_id)
            scores[i] = _density(u[i], similarities[int(i)], settings.density_beta)
            tier[i] = 0
            best = sorted([*best, scores[i]], reverse=True)[:n_top]
    if settings.undecided_first:  # backed off or abstained: before every decided prediction
        for i, candidate in enumerate(allowed):
            decision = candidate.prediction.get("decision")
            if decision is not None and decision.get("kind") != "leaf":
                tier[i] -= 2
    order = np.lexsort((-scores, tier))  # by tier, then score descending; stable
    rank = np.empty(len(allowed))
    rank[order] = -np.arange(len(allowed), dtype=np.float64)
    if settings.diversity_radius > 0 and strategy != RANDOM:
        indices, was_random, skipped = _diverse(allowed, order, k, share, settings, rng)
        selection.excluded["near_duplicate"] = skipped
    else:
        indices, was_random = acquisition.select(rank, k, random_share=share, rng=rng)
    for i, is_random in zip(indices.tolist(), was_random.tolist(), strict=True):
        if (
            strategy == "density" and i not in similarities
        ):  # a random pick: score it for the record
            similarities[i] = similarity(allowed[i].product_id) if similarity else None
            scores[i] = _density(u[i], similarities[i], settings.density_beta)
        name = RANDOM if is_random else names[i]
        selection.requests.append(_request(allowed[i], name, scores[i], now_ms))
    for request in selection.requests:  # only now: a lookup that raised above changed nothing
        exclusions.apply_request(request)
    if strategy == "density":
        selection.fallbacks = {"no_vector": sum(s is None for s in similarities.values())}
    return selection


def _diverse(
    allowed: Sequence[Candidate],
    order: np.ndarray[Any, Any],
    k: int,
    share: float,
    settings: SamplerSettings,
    rng: np.random.Generator | None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], int]:
    """Score picks in ``order``, skipping near duplicates of earlier picks (their top-k predictions
    within ``diversity_radius``); the random share is uniform over everything not picked."""
    n_random = round(k * share)
    signatures = [
        {s["category_id"]: float(s["probability"]) for s in c.prediction["exclusive_top_k"]}
        for c in allowed
    ]
    top = acquisition.pick_diverse(order, signatures, k - n_random, settings.diversity_radius)
    last = int(np.flatnonzero(order == top[-1])[0]) + 1 if top else 0
    skipped = last - len(top)  # candidates passed over as near duplicates
    rest = np.setdiff1d(np.arange(len(allowed)), np.asarray(top, dtype=np.int64))
    generator = rng or np.random.default_rng()
    randoms = generator.choice(rest, size=min(n_random, len(rest)), replace=False)
    indices = np.concatenate([np.asarray(top, dtype=np.int64), randoms.astype(np.int64)])
    was_random = np.concatenate([np.zeros(len(top), bool), np.ones(len(randoms), bool)])
    return indices, was_random, skipped


def mean_neighbour_similarity(hits: Sequence[Any], product_id: str, n: int) -> float | None:
    """Mean cosine similarity of the ``n`` nearest other products (``Hit``s of a search by id);
    None when the search found nothing (the product has no vector)."""
    if not hits:
        return None
    others = [float(h.score) for h in hits if h.product_id != product_id][:n]
    return float(np.mean(np.clip(others, 0.0, 1.0))) if others else 0.0
