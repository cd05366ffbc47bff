"""Precision@k of the similarity search per embedder version, from the judgements.

A *query* is one search setting: the query (product or uploaded image), the category filter and
the embedder version. Each judged neighbour has a rank (the best it was shown at) and a relevance
(the share of annotators who judged it relevant, so disagreement counts half). For a query whose
neighbours at ranks 1..k are all judged, precision@k is the mean relevance over those k ranks;
queries judged less deep are left out of that k (``n`` says how many queries count). The
macro-average over queries is reported per version.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

KS: Final = (1, 5, 10)


@dataclass
class VersionReport:
    """One embedder version: queries, judgements, and per k the mean precision and its ``n``."""

    model_version: int | None
    queries: int = 0
    judged: int = 0
    relevant: float = 0.0
    precision: dict[int, float | None] = field(default_factory=dict)
    counted: dict[int, int] = field(default_factory=dict)


def query_precision(relevance_by_rank: Mapping[int, float], k: int) -> float | None:
    """Precision@k of one query, or None when a rank in 1..k is not judged."""
    if any(rank not in relevance_by_rank for rank in range(1, k + 1)):
        return None
    return sum(relevance_by_rank[rank] for rank in range(1, k + 1)) / k


def precision_report(
    pairs: Iterable[Mapping[str, Any]], ks: Sequence[int] = KS
) -> list[VersionReport]:
    """Per version (newest first; unknown version last) from rows of
    ``{model_version, query, category_id, neighbour, rank, relevance}``."""
    queries: dict[Any, dict[tuple[str, str], dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    reports: dict[Any, VersionReport] = {}
    for pair in pairs:
        version = pair["model_version"]
        report = reports.setdefault(version, VersionReport(version))
        report.judged += 1
        report.relevant += float(pair["relevance"])
        ranks = queries[version][(pair["query"], pair["category_id"] or "")]
        ranks[int(pair["rank"])].append(float(pair["relevance"]))
    for version, by_query in queries.items():
        report = reports[version]
        report.queries = len(by_query)
        for k in ks:
            values = []
            for ranks in by_query.values():
                mean_by_rank = {rank: sum(v) / len(v) for rank, v in ranks.items()}
                value = query_precision(mean_by_rank, k)
                if value is not None:
                    values.append(value)
            report.counted[k] = len(values)
            report.precision[k] = sum(values) / len(values) if values else None
    return sorted(
        reports.values(),
        key=lambda r: (r.model_version is None, -(r.model_version or 0)),
    )
