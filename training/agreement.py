"""Double labelling: which products two annotators label, and how far they agree.

A share of the products people label (chosen by a hash of the product id, so every process
agrees without coordination) is labelled a second time, blind, by another annotator. Their
agreement beyond chance is reported as

* **Cohen's kappa** over all pairs (first vs second annotator), and per annotator (their labels
  vs the other annotator's on the products they shared);
* **Fleiss' kappa per category** (two ratings per product): how reliably people agree on that
  category, ``κ_j = 1 - Σ_i n_ij (m - n_ij) / (N m (m - 1) p_j (1 - p_j))`` with ``m = 2`` ratings
  of each of ``N`` products, ``n_ij`` of them for category ``j``, ``p_j`` its share of all ratings.

Disagreements are held for adjudication (the web UI's Review queue) and not trained on until
someone decides.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["DISAGREEMENT", "Pair", "agreement_report", "cohen_kappa", "double_labelled", "kappa_of"]

#: ``flagged_by`` of a held label whose second opinion disagreed (labels.suspect).
DISAGREEMENT: Final = "double labelling"


def double_labelled(product_id: str, share: float) -> bool:
    """Whether a product is labelled twice: fixed per product, whatever else happens."""
    if share <= 0:
        return False
    digest = hashlib.sha1(f"double:{product_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


@dataclass(frozen=True)
class Pair:
    """Two annotators' exclusive labels of one product."""

    product_id: str
    first_annotator: str
    first: str  # category id
    second_annotator: str
    second: str


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Agreement of two raters beyond chance (1: identical, 0: as if independent); None
    without pairs. Both raters giving one single category: 1.0 when they agree."""
    return kappa_of(Counter(zip(a, b, strict=True)))


def kappa_of(cells: Mapping[tuple[str, str], int]) -> float | None:
    """Cohen's kappa from the contingency counts of (rater A's category, rater B's)."""
    n = sum(cells.values())
    if not n:
        return None
    observed = sum(k for (x, y), k in cells.items() if x == y) / n
    ca: Counter[str] = Counter()
    cb: Counter[str] = Counter()
    for (x, y), k in cells.items():
        ca[x] += k
        cb[y] += k
    expected = sum(ca[c] * cb[c] for c in ca) / (n * n)
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


def fleiss_per_category(pairs: Sequence[Pair]) -> dict[str, float | None]:
    """Fleiss' kappa of each category over products rated twice (None: undefined, every rating
    or none is that category)."""
    n = len(pairs)
    ratings: Counter[str] = Counter()
    disagreement: defaultdict[str, float] = defaultdict(float)
    for pair in pairs:
        counts = Counter((pair.first, pair.second))
        for category, k in counts.items():
            ratings[category] += k
            disagreement[category] += k * (2 - k)
    out: dict[str, float | None] = {}
    for category, total in ratings.items():
        p = total / (2 * n)
        denominator = n * 2 * 1 * p * (1 - p)
        out[category] = None if denominator == 0 else 1.0 - disagreement[category] / denominator
    return out


def agreement_report(pairs: Iterable[Pair], pending: int = 0) -> dict[str, Any]:
    """Overall, per-annotator and per-category agreement of double-labelled products;
    ``pending``: disagreements still waiting for adjudication."""
    items = list(pairs)
    per_annotator: defaultdict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for pair in items:
        for me, mine, theirs in (
            (pair.first_annotator, pair.first, pair.second),
            (pair.second_annotator, pair.second, pair.first),
        ):
            per_annotator[me][0].append(mine)
            per_annotator[me][1].append(theirs)
    per_category = fleiss_per_category(items)
    support: Counter[str] = Counter()
    for pair in items:
        support.update({pair.first, pair.second})
    return {
        "pairs": len(items),
        "agreed": sum(p.first == p.second for p in items),
        "pending": pending,
        "kappa": cohen_kappa([p.first for p in items], [p.second for p in items]),
        "annotators": [
            {
                "annotator": name,
                "pairs": len(mine),
                "agreed": sum(x == y for x, y in zip(mine, theirs, strict=True)),
                "kappa": cohen_kappa(mine, theirs),
            }
            for name, (mine, theirs) in sorted(per_annotator.items())
        ],
        "categories": sorted(
            (
                {"category_id": c, "products": support[c], "kappa": k}
                for c, k in per_category.items()
            ),
            key=lambda row: (-row["products"], row["category_id"]),
        ),
    }
