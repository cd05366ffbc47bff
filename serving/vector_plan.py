"""How the vector store answers one search: which filter, which search parameters, exact or not.

milvus-lite 3.2.2 hands a filtered search to faiss with the matching rows as an ``IDSelector``.
HNSW (any ``ef``) and IVF with a small ``nprobe`` then miss most true neighbours when the filter
is selective and the query lies outside the subset (recall@10 0.03-0.45 measured, fewer hits than
asked). IVF_FLAT with ``nprobe == nlist`` scans every list but computes distances only for rows
the selector admits: an exact answer whose cost grows with the number of matching rows. So on
milvus-lite the store uses IVF_FLAT and chooses per query:

- no restriction: ANN, ``nprobe = NPROBE`` (more when ``k`` is large for the collection);
- a restriction estimated to match at most ``exact_max_rows`` rows: exact, ``nprobe = NLIST``;
- a broader restriction: ANN with ``nprobe = 2 * NPROBE / share`` (share of rows matching).

The estimate comes from :class:`CategoryStats`, a deterministic sample of the collection (rows
whose ``sample_bucket`` is below a cut-off) refreshed now and then: cheap per query, and a stale
or missing estimate errs towards the exact path. A Milvus server's indexes handle filters
themselves (they switch to brute force for selective filters), so there HNSW is used with a beam
(``ef``) widened by the share of rows a broad restriction keeps.
``bench/milvus_search.py`` measures the three kinds of query against a FLAT and a fixed-ANN baseline.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from prodcat.core.ids import CATEGORY_ID_PATTERN

__all__ = [
    "CATEGORY_LEVELS",
    "Backend",
    "CategoryStats",
    "IndexType",
    "SearchPlan",
    "category_filter",
    "index_build_params",
    "plan_search",
    "resolve_index",
    "sample_bucket",
]

Backend = Literal["lite", "server"]
IndexType = Literal["HNSW", "IVF_FLAT", "FLAT"]

CATEGORY_LEVELS: Final = 6
"""Category levels stored as ``cat_1..cat_6``; deeper levels cannot be searched by."""
NLIST: Final = 128
"""IVF lists per segment when the store builds the index (milvus-lite clamps it to the segment's
rows); ``nprobe == nlist`` makes an IVF_FLAT search exact."""
NPROBE: Final = 16
"""IVF lists probed by an unrestricted search (recall@10 ≥ 0.99 in the benchmark)."""
MIN_SCAN_PER_HIT: Final = 20
"""IVF probes enough lists to scan about this many rows per hit asked for (else hits run short)."""
HNSW_M: Final = 16
HNSW_EF_CONSTRUCTION: Final = 200
HNSW_EF: Final = 64
HNSW_EF_MAX: Final = 4096
SAMPLE_BUCKETS: Final = 1024
SAMPLE_TARGET_ROWS: Final = 2000
_CATEGORY_ID: Final = re.compile(CATEGORY_ID_PATTERN)


def resolve_index(setting: str, backend: Backend) -> IndexType:
    """The index for ``MilvusSettings.index``: ``auto`` is IVF_FLAT on milvus-lite, HNSW on a server."""
    if setting == "auto":
        return "IVF_FLAT" if backend == "lite" else "HNSW"
    if setting in ("HNSW", "IVF_FLAT", "FLAT"):
        return setting  # type: ignore[return-value]  # narrowed by the membership test
    raise ValueError(f"unknown index type {setting!r}")


def index_build_params(index_type: IndexType, backend: Backend) -> dict[str, Any]:
    """Keyword arguments for ``IndexParams.add_index`` (besides field, type and metric).

    pymilvus 3 flattens ``params`` into top-level key/value pairs, which milvus-lite 3.2.2 ignores
    (it reads only a JSON ``params`` key): for milvus-lite the build parameters are nested once more.
    """
    build: dict[str, Any] = {
        "HNSW": {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION},
        "IVF_FLAT": {"nlist": NLIST},
        "FLAT": {},
    }[index_type]
    if backend == "lite" and build:
        return {"params": {"params": build}}
    return {"params": build}


def sample_bucket(product_id: str) -> int:
    """A stable pseudo-random bucket in ``[0, SAMPLE_BUCKETS)`` for sampling the collection."""
    digest = hashlib.sha1(product_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % SAMPLE_BUCKETS


def category_filter(category_id: str, level: int | None = None) -> str:
    """The filter restricting a search to a category subtree (at a known level, or at any level)."""
    if not _CATEGORY_ID.fullmatch(category_id):
        raise ValueError(f"not a category id: {category_id!r} (expected c_ + 12 hex digits)")
    if level is not None:
        return f'cat_{level} == "{category_id}"'
    return " or ".join(f'cat_{d} == "{category_id}"' for d in range(1, CATEGORY_LEVELS + 1))


@dataclass(frozen=True, slots=True)
class CategoryStats:
    """Row counts per category, estimated from a sample of ``fraction`` of the collection."""

    total: int
    fraction: float
    counts: Mapping[str, int]
    levels: Mapping[str, int]
    taken_at: float

    @classmethod
    def from_sample(
        cls, total: int, fraction: float, rows: Iterable[Mapping[str, Any]], taken_at: float
    ) -> CategoryStats:
        counts: dict[str, int] = {}
        levels: dict[str, int] = {}
        for row in rows:
            for level in range(1, CATEGORY_LEVELS + 1):
                value = row.get(f"cat_{level}")
                if value:
                    counts[value] = counts.get(value, 0) + 1
                    levels[value] = level
        return cls(total, fraction, counts, levels, taken_at)

    @staticmethod
    def sample_cutoff(total: int) -> int:
        """Buckets to sample so that about ``SAMPLE_TARGET_ROWS`` rows come back."""
        wanted = math.ceil(SAMPLE_BUCKETS * SAMPLE_TARGET_ROWS / max(total, 1))
        return max(1, min(SAMPLE_BUCKETS, wanted))

    def estimate(self, category_id: str) -> int:
        """Estimated rows in the subtree; 0 for a category the sample did not meet."""
        if self.fraction <= 0:
            return 0
        return round(self.counts.get(category_id, 0) / self.fraction)


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """The filter expression and engine parameters of one search."""

    expr: str
    params: dict[str, Any]
    exact: bool
    estimated_rows: int | None = None


def plan_search(
    *,
    index_type: IndexType,
    backend: Backend,
    k: int,
    exact_max_rows: int,
    category_id: str | None = None,
    stats: CategoryStats | None = None,
    nlist: int = NLIST,
) -> SearchPlan:
    """Choose the filter and ``nprobe``/``ef`` for one top-``k`` search (see the module docstring)."""
    if category_id is None:
        if index_type == "IVF_FLAT":
            nprobe = _nprobe(NPROBE, stats.total if stats is not None else None, k, nlist)
            return SearchPlan("", {"nprobe": nprobe}, exact=nprobe >= nlist)
        if index_type == "HNSW":
            return SearchPlan("", {"ef": max(HNSW_EF, k)}, exact=False)
        return SearchPlan("", {}, exact=True)

    level = stats.levels.get(category_id) if stats is not None else None
    expr = category_filter(category_id, level)
    if index_type == "FLAT":
        return SearchPlan(expr, {}, exact=True)
    estimated = stats.estimate(category_id) if stats is not None else None
    share = estimated / stats.total if stats is not None and estimated and stats.total else 0.0
    if index_type == "HNSW" and backend == "server":
        # The server brute-forces selective filters itself; a broad one is searched in the graph,
        # where the filter discards most of the beam: widen it by the share the filter keeps
        # (ef 64 gave recall@10 0.90 on level-1 categories of 5-30% at 100k rows).
        ef = HNSW_EF if share <= 0 else min(HNSW_EF_MAX, math.ceil(HNSW_EF / share))
        return SearchPlan(expr, {"ef": max(ef, k)}, exact=False, estimated_rows=estimated)
    if index_type == "IVF_FLAT":
        if estimated is None or estimated <= exact_max_rows or share <= 0:
            return SearchPlan(expr, {"nprobe": nlist}, exact=True, estimated_rows=estimated)
        # twice the share-scaled probes: NPROBE / share gave recall@10 0.84 at a 31% share, this 0.997
        nprobe = _nprobe(math.ceil(2 * NPROBE / share), estimated, k, nlist)
        return SearchPlan(expr, {"nprobe": nprobe}, exact=nprobe >= nlist, estimated_rows=estimated)
    # HNSW on milvus-lite: no exact path exists; widen the beam as far as is affordable.
    ef = HNSW_EF_MAX if share <= 0 else min(HNSW_EF_MAX, math.ceil(HNSW_EF / share))
    return SearchPlan(expr, {"ef": max(ef, k)}, exact=False, estimated_rows=estimated)


def _nprobe(wanted: int, rows: int | None, k: int, nlist: int) -> int:
    """``wanted`` lists, or more so that about ``MIN_SCAN_PER_HIT * k`` rows get scanned."""
    if rows:
        wanted = max(wanted, math.ceil(nlist * MIN_SCAN_PER_HIT * k / rows))
    return min(nlist, wanted)
