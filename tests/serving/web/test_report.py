"""Precision@k per embedder version from judged pairs."""

from __future__ import annotations

import pytest

from prodcat.serving.web.report import precision_report, query_precision


def pair(version, query, rank, relevance, category="", neighbour=None):
    return {
        "model_version": version,
        "query": query,
        "category_id": category,
        "neighbour": neighbour or f"{query}-n{rank}",
        "rank": rank,
        "relevance": relevance,
    }


def test_query_precision_needs_every_rank_up_to_k() -> None:
    assert query_precision({1: 1.0, 2: 0.0, 3: 1.0}, 1) == 1.0
    assert query_precision({1: 1.0, 2: 0.0, 3: 1.0}, 3) == pytest.approx(2 / 3)
    assert query_precision({1: 1.0, 3: 1.0}, 3) is None
    assert query_precision({}, 1) is None


def test_report_per_version_macro_averages_complete_queries() -> None:
    pairs = [
        pair(2, "a", r, 1.0 if r <= 4 else 0.0) for r in range(1, 11)
    ]  # P@1 1, P@5 .8, P@10 .4
    pairs += [pair(2, "b", r, 0.0) for r in range(1, 6)]  # P@1 0, P@5 0, not judged to 10
    pairs += [pair(1, "a", 1, 0.5), pair(1, "a", 3, 1.0)]  # annotators disagree on rank 1
    pairs += [pair(None, "sha256:x", 1, 1.0)]
    reports = precision_report(pairs)
    assert [r.model_version for r in reports] == [2, 1, None]
    v2, v1, unknown = reports
    assert (v2.queries, v2.judged, v2.relevant) == (2, 15, 4.0)
    assert v2.precision[1] == pytest.approx(0.5) and v2.counted[1] == 2
    assert v2.precision[5] == pytest.approx(0.4) and v2.counted[5] == 2
    assert v2.precision[10] == pytest.approx(0.4) and v2.counted[10] == 1
    assert v1.precision[1] == pytest.approx(0.5) and v1.precision[5] is None and v1.counted[5] == 0
    assert unknown.precision[1] == 1.0


def test_the_same_query_in_another_subtree_is_another_query() -> None:
    pairs = [pair(1, "a", 1, 1.0), pair(1, "a", 1, 0.0, category="c_000000000001")]
    (report,) = precision_report(pairs)
    assert report.queries == 2 and report.precision[1] == pytest.approx(0.5)


def test_no_judgements_no_rows() -> None:
    assert precision_report([]) == []
