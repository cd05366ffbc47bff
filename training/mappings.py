"""Feed categories → our taxonomy: a mapping table mined from predictions and labels.

Every feed's own category path (``Product.category_path``) is strong evidence: a retailer files
the same kind of product under the same path. :func:`mine` groups products by (feed, feed path)
and finds the node of our tree they belong to:

* each product votes with its **path in our tree**: its label's path when a person (or an import)
  labelled it, else its prediction's top-1 path;
* the mapped node is the **deepest** node whose share of the votes (counting a vote for a node's
  descendant as a vote for the node) reaches ``min_purity``; a feed path whose products disagree
  already at the top level maps to its most voted root, with that (low) purity;
* ``support`` = products of the feed path, ``labelled`` = of them with a label, ``purity`` = the
  mapped node's vote share, ``agreement`` = share of the products whose *prediction* is the node
  or below it (the model's agreement with the mapping), ``label_purity`` = the same among labels.

An operator's :class:`Decision` on a row (JSON on the compacted ``feeds.mappings`` topic) and the
``Label`` an approved mapping gives a product (:func:`mapping_label`) are defined here, for the
``mappings`` worker and the CLI (:mod:`prodcat.streams.mappings`) and the web UI's Mappings screen
(:mod:`prodcat.serving.web.mappings`) alike. Pure functions; reading topics is theirs.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prodcat.core.ids import path_id
from prodcat.schemas.records import Label

__all__ = [
    "PROTECTED_SOURCES",
    "Candidate",
    "Decision",
    "Evidence",
    "decision_of",
    "feed_path_key",
    "feed_path_of",
    "is_under",
    "mapping_label",
    "mine",
]

#: Label sources a mapping never overwrites (a person's or an import's).
PROTECTED_SOURCES = frozenset({"human", "import"})
#: Joins a feed and its category path into one key (``feeds.mappings``, the UI).
KEY_SEPARATOR = "\x1f"


def feed_path_key(feed: str, feed_path: Sequence[str]) -> str:
    """The key of a (feed, feed path) pair: stable, readable, unambiguous."""
    return feed + KEY_SEPARATOR + " > ".join(feed_path)


@dataclass(frozen=True)
class Evidence:
    """One product: its feed, its feed's category path, and what we know of it in our tree."""

    feed: str
    feed_path: tuple[str, ...]
    predicted: tuple[str, ...] = ()  # the top-1 prediction's path in our tree
    labelled: tuple[str, ...] = ()  # a person's (or an import's) label's path, if any


@dataclass(frozen=True)
class Candidate:
    """A mined mapping: ``feed_path`` of ``feed`` → ``path`` (node ``category_id``)."""

    feed: str
    feed_path: tuple[str, ...]
    category_id: str
    path: tuple[str, ...]
    support: int
    labelled: int
    purity: float
    agreement: float
    label_purity: float | None

    @property
    def key(self) -> str:
        return feed_path_key(self.feed, self.feed_path)


def feed_path_of(product: Mapping[str, Any]) -> tuple[str, ...]:
    """A product's own category path (``Product.category_path``), as strings."""
    return tuple(str(level) for level in product.get("category_path") or ())


def decision_of(
    decisions: Mapping[str, Decision], product: Mapping[str, Any], feed: str | None = None
) -> Decision | None:
    """The decision on the product's (feed, feed path), if any; ``feed`` when the product names
    none (e.g. its record's feed header)."""
    name = str(product.get("feed") or feed or "")
    return decisions.get(feed_path_key(name, feed_path_of(product)))


def _prefixes(path: Sequence[str]) -> list[tuple[str, ...]]:
    return [tuple(path[: depth + 1]) for depth in range(len(path))]


def is_under(path: Sequence[str], node: Sequence[str]) -> bool:
    """Whether ``path`` is ``node`` or below it (names compared as category ids compare them)."""
    return len(path) >= len(node) > 0 and path_id(path[: len(node)]) == path_id(node)


def mine(
    evidence: Iterable[Evidence], *, min_support: int = 5, min_purity: float = 0.8
) -> list[Candidate]:
    """One candidate per (feed, feed path) with ``min_support`` products or more that have a
    vote, most supported first (see the module docstring)."""
    groups: dict[tuple[str, tuple[str, ...]], list[Evidence]] = defaultdict(list)
    for item in evidence:
        if item.feed_path and (item.labelled or item.predicted):
            groups[(item.feed, item.feed_path)].append(item)
    out: list[Candidate] = []
    for (feed, feed_path), items in groups.items():
        if len(items) < min_support:
            continue
        votes = [item.labelled or item.predicted for item in items]
        counts: Counter[str] = Counter()
        names: dict[str, tuple[str, ...]] = {}
        for vote in votes:
            for prefix in _prefixes(vote):
                key = path_id(prefix)
                counts[key] += 1
                names.setdefault(key, prefix)
        node = _deepest_pure(counts, names, len(votes), min_purity)
        purity = counts[path_id(node)] / len(votes)
        agreement = sum(is_under(item.predicted, node) for item in items) / len(items)
        labels = [item.labelled for item in items if item.labelled]
        label_purity = (
            sum(is_under(path, node) for path in labels) / len(labels) if labels else None
        )
        out.append(
            Candidate(
                feed,
                feed_path,
                path_id(node),
                node,
                len(items),
                len(labels),
                round(purity, 4),
                round(agreement, 4),
                None if label_purity is None else round(label_purity, 4),
            )
        )
    out.sort(key=lambda c: (-c.support, c.feed, c.feed_path))
    return out


def _deepest_pure(
    counts: Counter[str], names: dict[str, tuple[str, ...]], total: int, min_purity: float
) -> tuple[str, ...]:
    """The deepest node with a vote share ≥ ``min_purity`` (of two at one depth, the more voted);
    else the most voted root."""
    pure = [(len(names[key]), count, names[key]) for key, count in counts.items()]
    chosen = max((item for item in pure if item[1] / total >= min_purity), default=None)
    if chosen is not None:
        return chosen[2]
    roots = [(count, path) for depth, count, path in pure if depth == 1]
    return max(roots)[1]


@dataclass(frozen=True)
class Decision:
    """An operator's decision on one (feed, feed path)."""

    feed: str
    feed_path: tuple[str, ...]
    status: str  # "approved" | "rejected"
    category_id: str | None = None
    path: tuple[str, ...] = ()
    decided_by: str | None = None
    decided_at: int = 0

    @property
    def key(self) -> str:
        return feed_path_key(self.feed, self.feed_path)

    def to_json(self) -> bytes:
        data = {
            "feed": self.feed,
            "feed_path": list(self.feed_path),
            "status": self.status,
            "category_id": self.category_id,
            "path": list(self.path),
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
        }
        return json.dumps(data, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Decision:
        data = json.loads(raw)
        return cls(
            feed=str(data["feed"]),
            feed_path=tuple(str(level) for level in data["feed_path"]),
            status=str(data["status"]),
            category_id=data.get("category_id"),
            path=tuple(str(level) for level in data.get("path") or ()),
            decided_by=data.get("decided_by"),
            decided_at=int(data.get("decided_at") or 0),
        )


def mapping_label(product_id: str, category_id: str, annotator: str | None, now_ms: int) -> Label:
    return {
        "product_id": product_id,
        "objective": "exclusive",
        "category_ids": [category_id],
        "source": "mapping",
        "annotator": annotator,
        "strategy": None,
        "score": None,
        "time_taken_ms": None,
        "model_version": None,
        "labelled_at": now_ms,
    }
