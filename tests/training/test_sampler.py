"""The sampler's pure part: strategies rank known vectors, dedupe, random share, rate limit."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from prodcat.core.settings import SamplerSettings
from prodcat.training import acquisition
from prodcat.training.sampler import (
    RANDOM,
    Candidate,
    CandidateWindow,
    invalid_reason,
    mean_neighbour_similarity,
    select_requests,
    uncertainty_of,
)
from prodcat.training.sampler_state import Exclusions, TokenBucket

DAY_MS = 24 * 3600 * 1000
NOW = 10 * DAY_MS


def prediction(
    product_id: str,
    probs: list[float],
    *,
    version: int = 1,
    at: int = 0,
    committee: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """A Prediction record as the classify agent writes it for the distribution ``probs``."""
    p = np.array([probs])
    top = sorted(range(len(probs)), key=lambda i: -probs[i])[:3]
    return {
        "product_id": product_id,
        "content_hash": None,
        "model_name": "clf",
        "model_version": version,
        "exclusive_top_k": [
            {"category_id": f"c{i}", "path": [f"C{i}"], "probability": probs[i]} for i in top
        ],
        "rule_based_positives": [],
        "uncertainty": {
            "least_confidence": float(acquisition.least_confidence(p)[0]),
            "margin": float(1.0 - acquisition.margin(p)[0]),
            "entropy": float(acquisition.entropy(p)[0]),
            "vote_entropy": committee[0] if committee else None,
            "kl_consensus": committee[1] if committee else None,
        },
        "predicted_at": at,
    }


SURE = [0.98, 0.01, 0.01]
TORN = [0.49, 0.48, 0.03]  # two classes nearly tied: the smallest margin
SPREAD = [0.4, 0.3, 0.3]  # lowest top probability and highest entropy
CANDIDATES = [
    Candidate("sure", prediction("sure", SURE)),
    Candidate("torn", prediction("torn", TORN)),
    Candidate("spread", prediction("spread", SPREAD)),
]


def _settings(**kwargs: Any) -> SamplerSettings:
    return SamplerSettings(
        **{"random_share": 0.0, "batch_size": 10, "diversity_radius": 0.0, **kwargs}
    )


def _pick(candidates: list[Candidate], exclusions: Exclusions | None = None, **kwargs: Any):
    allowance = kwargs.pop("allowance", 1000)
    similarity = kwargs.pop("similarity", None)
    return select_requests(
        candidates,
        _settings(**kwargs),
        exclusions or Exclusions(DAY_MS),
        allowance=allowance,
        now_ms=NOW,
        similarity=similarity,
        rng=np.random.default_rng(0),
    )


@pytest.mark.parametrize(
    ("strategy", "order"),
    [
        ("least_confidence", ["spread", "torn", "sure"]),
        ("margin", ["torn", "spread", "sure"]),
        ("entropy", ["spread", "torn", "sure"]),
    ],
)
def test_single_model_strategies_rank_known_vectors(strategy: str, order: list[str]) -> None:
    selection = _pick(CANDIDATES, strategy=strategy)
    assert [r["product_id"] for r in selection.requests] == order
    assert {r["strategy"] for r in selection.requests} == {strategy}
    scores = [r["score"] for r in selection.requests]
    assert scores == sorted(scores, reverse=True)
    torn = next(r for r in selection.requests if r["product_id"] == "torn")
    expected = {"least_confidence": 0.51, "margin": 0.99, "entropy": None}[strategy]
    if expected is not None:
        assert torn["score"] == pytest.approx(expected)


def test_backed_off_and_abstained_predictions_are_asked_first() -> None:
    def decided(name: str, probs: list[float], kind: str) -> Candidate:
        record = prediction(name, probs)
        record["decision"] = {"kind": kind, "category_id": None, "path": ["C0"],
                              "probability": 0.9, "target": 0.95}  # fmt: skip
        return Candidate(name, record)

    candidates = [
        *CANDIDATES,  # no decision (a model without thresholds): ranked as before
        decided("sure-but-backed-off", [0.9, 0.05, 0.05], "backed_off"),
        decided("abstained", [0.95, 0.03, 0.02], "abstained"),
        decided("leaf", [0.5, 0.495, 0.005], "leaf"),
    ]
    order = [r["product_id"] for r in _pick(candidates, strategy="margin").requests]
    assert order[:2] == ["sure-but-backed-off", "abstained"]  # by margin within the group
    assert order[2:] == ["leaf", "torn", "spread", "sure"]
    requests = {r["product_id"]: r for r in _pick(candidates, strategy="margin").requests}
    assert requests["sure-but-backed-off"]["decision"] == "backed_off"
    assert requests["sure-but-backed-off"]["partial_path"] == ["C0"]
    assert requests["leaf"]["partial_path"] == [] and requests["torn"]["decision"] is None
    plain = [
        r["product_id"]
        for r in _pick(candidates, strategy="margin", undecided_first=False).requests
    ]
    assert plain[:2] == ["leaf", "torn"]


def test_uncertainty_of_reads_the_record_like_acquisition_scores() -> None:
    record, p = prediction("x", TORN), np.array([TORN])
    assert uncertainty_of(record, "margin") == pytest.approx(acquisition.margin(p)[0])
    assert uncertainty_of(record, "entropy") == pytest.approx(acquisition.entropy(p)[0])
    with pytest.raises(ValueError):
        uncertainty_of(record, "nope")


def test_a_request_carries_suggestions_and_the_model_version() -> None:
    request = _pick(CANDIDATES[:1], strategy="margin").requests[0]
    assert request["suggestions"][0] == {"category_id": "c0", "path": ["C0"], "probability": 0.98}
    assert (request["model_name"], request["model_version"]) == ("clf", 1)
    assert request["requested_at"] == NOW


def test_committee_strategies_rank_by_their_score_and_fall_back_after_them() -> None:
    committee = [
        Candidate("agree", prediction("agree", TORN, committee=(0.0, 0.01))),
        Candidate("split", prediction("split", SURE, committee=(0.69, 0.4))),
        Candidate("mild", prediction("mild", SURE, committee=(0.3, 0.9))),
        Candidate("alone", prediction("alone", SPREAD)),  # no committee (one version only)
    ]
    votes = _pick(committee, strategy="qbc_vote_entropy")
    assert [r["product_id"] for r in votes.requests] == ["split", "mild", "agree", "alone"]
    assert [r["strategy"] for r in votes.requests][-1] == "margin"  # the fallback's name
    assert votes.fallbacks == {"no_committee": 1}
    kl = _pick(committee, strategy="qbc_kl")
    assert [r["product_id"] for r in kl.requests] == ["mild", "split", "agree", "alone"]
    assert kl.requests[0]["score"] == pytest.approx(0.9)
    # Committee scores from acquisition rank a disagreeing committee first.
    members = np.array([[SURE, SURE], [SURE[::-1], SURE]])  # [members, products, classes]
    assert acquisition.vote_entropy(members)[0] > acquisition.vote_entropy(members)[1]


class _Neighbours:
    """Similarity by product id; None: no vector. Records which products were looked up."""

    def __init__(self, similarities: dict[str, float | None]) -> None:
        self.similarities = similarities
        self.calls: list[str] = []

    def __call__(self, product_id: str) -> float | None:
        self.calls.append(product_id)
        return self.similarities.get(product_id)


def test_density_weighs_uncertainty_by_typicality_and_falls_back_without_a_vector() -> None:
    # margin scores: torn 0.99, spread 0.9, sure 0.03; torn is an outlier.
    neighbours = _Neighbours({"torn": 0.2, "spread": 0.9, "sure": 0.95})
    selection = _pick(CANDIDATES, strategy="density", similarity=neighbours)
    assert [r["product_id"] for r in selection.requests] == ["spread", "torn", "sure"]
    assert selection.requests[0]["score"] == pytest.approx(0.9 * 0.9)
    assert selection.fallbacks == {"no_vector": 0}
    squared = _pick(CANDIDATES, strategy="density", similarity=neighbours, density_beta=2.0)
    assert squared.requests[1]["score"] == pytest.approx(0.99 * 0.2**2)
    flat = _pick(CANDIDATES, strategy="density", similarity=neighbours, density_beta=0.0)
    assert [r["product_id"] for r in flat.requests] == ["torn", "spread", "sure"]  # plain margin
    missing = _pick(CANDIDATES, strategy="density", similarity=_Neighbours({"sure": 0.5}))
    assert missing.fallbacks == {"no_vector": 2}
    assert missing.requests[0]["score"] == pytest.approx(0.99)  # torn: plain uncertainty


def test_density_looks_up_only_candidates_that_can_still_win() -> None:
    many = [
        Candidate(f"p{i}", prediction(f"p{i}", [0.5 + i / 100, 0.5 - i / 100])) for i in range(40)
    ]
    neighbours = _Neighbours({f"p{i}": 1.0 for i in range(40)})
    selection = _pick(many, strategy="density", similarity=neighbours, batch_size=3)
    assert [r["product_id"] for r in selection.requests] == ["p0", "p1", "p2"]
    assert neighbours.calls == ["p0", "p1", "p2"]  # p3's margin cannot beat p2's density
    with pytest.raises(ValueError, match="similarity"):
        _pick(many, strategy="density")


def test_random_share_is_respected_and_uniform_over_the_rest() -> None:
    many = [
        Candidate(f"p{i:02d}", prediction(f"p{i:02d}", [0.5 + i / 100, 0.5 - i / 100]))
        for i in range(40)
    ]
    settings = _settings(strategy="margin", batch_size=10, random_share=0.3)
    picked: Counter[str] = Counter()
    for seed in range(300):
        selection = select_requests(
            many, settings, Exclusions(DAY_MS), allowance=100, now_ms=NOW,
            rng=np.random.default_rng(seed),
        )  # fmt: skip
        strategies = Counter(r["strategy"] for r in selection.requests)
        assert strategies == {"margin": 7, RANDOM: 3}
        top = [r["product_id"] for r in selection.requests if r["strategy"] == "margin"]
        assert top == [f"p{i:02d}" for i in range(7)]
        picked.update(r["product_id"] for r in selection.requests if r["strategy"] == RANDOM)
    assert set(picked) == {f"p{i:02d}" for i in range(7, 40)}
    expected = 300 * 3 / 33
    assert all(abs(count - expected) < 0.5 * expected for count in picked.values())
    everything_random = _pick(many, strategy="random", batch_size=5)
    assert [r["strategy"] for r in everything_random.requests] == [RANDOM] * 5


def test_labelled_and_pending_products_are_never_requested() -> None:
    exclusions = Exclusions(DAY_MS)
    exclusions.apply_label(b"sure|exclusive", {"product_id": "sure", "objective": "exclusive"})
    exclusions.apply_label(b"torn|rule_based", {"product_id": "torn", "objective": "rule_based"})
    exclusions.apply_request({"product_id": "spread", "requested_at": NOW - 1000})
    selection = _pick(CANDIDATES, exclusions)
    assert [r["product_id"] for r in selection.requests] == ["torn"]  # rule labels do not count
    assert selection.excluded == {"labelled": 1, "pending": 1}
    # What was just requested is pending now: the next window does not ask again.
    again = _pick(CANDIDATES, exclusions)
    assert again.requests == [] and again.excluded == {"labelled": 1, "pending": 2}


def test_pending_expires_and_label_tombstones_unlabel() -> None:
    exclusions = Exclusions(1000, objectives=("exclusive", "rule_based"))
    exclusions.apply_request({"product_id": "a", "requested_at": 5000})
    exclusions.apply_request({"product_id": "a", "requested_at": 4000})  # an older copy
    assert exclusions.reason("a", 5999) == "pending" and exclusions.reason("a", 6000) is None
    assert exclusions.pending_count(5500) == 1 and exclusions.expire(6000) == 1
    exclusions.apply_label(b"k1", {"product_id": "b", "objective": "exclusive"})
    exclusions.apply_label(b"k2", {"product_id": "b", "objective": "rule_based"})
    exclusions.apply_label(b"k1", None)
    assert exclusions.is_labelled("b")
    exclusions.apply_label(b"k2", None)
    assert not exclusions.is_labelled("b") and exclusions.labelled_count == 0
    exclusions.apply_label(b"k3", None)  # a tombstone of a key never seen
    exclusions.apply_request(None)


def test_rate_limit_caps_a_window_and_refills() -> None:
    bucket = TokenBucket(per_minute=6, now_s=0.0)
    assert bucket.available(0.0) == 6
    selection = _pick(CANDIDATES, allowance=bucket.available(0.0) - 4)
    assert len(selection.requests) == 2 and selection.rate_limited == 1
    bucket.take(6, 0.0)
    assert bucket.available(9.9) == 0 and bucket.available(10.0) == 1
    assert bucket.available(1000.0) == 6  # never more than a minute's worth
    with pytest.raises(ValueError):
        bucket.take(7, 1000.0)
    assert _pick(CANDIDATES, allowance=0).rate_limited == 3


def test_window_keeps_the_newest_prediction_and_closes_on_time_or_size() -> None:
    window = CandidateWindow(window_s=5.0, max_candidates=3)
    assert not window.due(100.0) and window.remaining_s(100.0) == 5.0
    window.add(prediction("a", TORN, version=1, at=10), now_s=100.0)
    window.add(prediction("a", SURE, version=2, at=20), now_s=101.0)
    window.add(prediction("a", SPREAD, version=1, at=15), now_s=102.0)  # late, older version
    assert len(window) == 1 and window.candidates()[0].prediction["model_version"] == 2
    assert not window.due(104.9) and window.due(105.0) and window.remaining_s(103.0) == 2.0
    window.add(prediction("b", TORN), now_s=103.0)
    window.add(prediction("c", TORN), now_s=103.0)
    assert window.due(103.0)  # full
    window.remove("b")
    assert [c.product_id for c in window.drain()] == ["a", "c"]
    assert len(window) == 0 and not window.due(1e9)


def test_invalid_predictions_are_named() -> None:
    assert invalid_reason(prediction("ok", TORN)) is None
    assert invalid_reason({**prediction("", TORN)}) == "empty product_id"
    nan = prediction("x", TORN)
    nan["uncertainty"]["entropy"] = float("nan")
    assert "entropy" in (invalid_reason(nan) or "")
    big = prediction("x", TORN)
    big["uncertainty"]["margin"] = 3.0
    assert invalid_reason(big) is not None


def test_mean_neighbour_similarity_leaves_the_product_itself_out() -> None:
    class Hit:
        def __init__(self, product_id: str, score: float) -> None:
            self.product_id, self.score = product_id, score

    hits = [Hit("me", 1.0), Hit("a", 0.8), Hit("b", 0.4), Hit("c", -0.2)]
    assert mean_neighbour_similarity(hits, "me", 2) == pytest.approx(0.6)
    assert mean_neighbour_similarity(hits, "me", 3) == pytest.approx(0.4)  # negatives count as 0
    assert mean_neighbour_similarity([], "me", 3) is None
    assert mean_neighbour_similarity([Hit("me", 1.0)], "me", 3) == 0.0


def test_near_duplicates_in_a_window_are_asked_once() -> None:
    """Five colours of one shirt get the same prediction: one label answers for all of them."""
    shirt = [0.40, 0.35, 0.25]
    candidates = [Candidate(f"shirt-{c}", prediction(f"shirt-{c}", shirt)) for c in "abcde"]
    candidates += [
        Candidate("shirt-f", prediction("shirt-f", [0.41, 0.34, 0.25])),  # within radius
        Candidate("lamp", prediction("lamp", [0.30, 0.45, 0.25])),  # another confusion
        Candidate("mug", prediction("mug", [0.90, 0.05, 0.05])),  # confident
    ]
    settings = _settings(strategy="margin", batch_size=3, diversity_radius=0.1)
    selection = select_requests(candidates, settings, Exclusions(DAY_MS), allowance=100, now_ms=NOW)
    assert [r["product_id"] for r in selection.requests] == ["shirt-a", "lamp", "mug"]
    assert selection.excluded["near_duplicate"] == 5
    without = select_requests(
        candidates, _settings(strategy="margin", batch_size=3), Exclusions(DAY_MS),
        allowance=100, now_ms=NOW,
    )  # fmt: skip
    assert [r["product_id"] for r in without.requests] == ["shirt-a", "shirt-b", "shirt-c"]


def test_total_variation_of_top_k() -> None:
    assert acquisition.total_variation({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0
    assert acquisition.total_variation({"a": 1.0}, {"b": 1.0}) == 1.0
    assert acquisition.total_variation({"a": 0.6, "b": 0.4}, {"a": 0.4, "c": 0.6}) == pytest.approx(
        0.6
    )
