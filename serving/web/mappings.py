"""The Mappings screen: feed categories → our taxonomy, mined, approved or rejected by a person.

The table is :func:`prodcat.training.mappings.mine` over the UI's view: every product of the view
with a feed category path votes with its path in our tree, a person's or an import's exclusive
label when it has one, else its latest top-1 prediction (the view keeps both). Rows carry their
decision from ``feeds.mappings``, if any.

**Approve** stores the :class:`~prodcat.training.mappings.Decision` on the compacted
``feeds.mappings`` topic, then writes an exclusive ``Label`` (source ``mapping``) for every
product of that feed path in the view that no person or import labelled (those are never
overwritten), all acknowledged before the answer. The ``mappings`` worker labels the products of
the feed path that arrive later. **Reject** stores the decision; nothing is labelled. The same
operations as ``prodcat mappings approve|reject`` (:mod:`prodcat.streams.mappings`), which read
the topics themselves instead of a view.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from prodcat.core.ids import label_key
from prodcat.core.settings import Settings
from prodcat.schemas.serde import serde_for
from prodcat.serving.web.annotation import VocabularyCache
from prodcat.serving.web.exceptions import InvalidInputError
from prodcat.serving.web.metrics import WebMetrics
from prodcat.serving.web.publisher import Publisher
from prodcat.serving.web.view import TopicView
from prodcat.training.mappings import Candidate, Decision, Evidence, mapping_label, mine

logger = logging.getLogger(__name__)

#: The orders the table can be read in (each most first).
SORTS: Final = ("support", "purity", "agreement", "labelled")
#: The share of a feed path's votes its node must hold (as ``prodcat mappings mine``).
MIN_PURITY: Final = 0.8


@dataclass(frozen=True)
class Approved:
    """What an approval did: the decision stored and the products labelled or left alone."""

    decision: Decision
    labelled: int
    protected: int

    def as_json(self) -> dict[str, Any]:
        return {
            **_decision_json(self.decision),
            "labelled": self.labelled,
            "protected": self.protected,
        }


def _decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "status": decision.status,
        "category_id": decision.category_id,
        "path": list(decision.path),
        "decided_by": decision.decided_by,
        "decided_at": decision.decided_at,
    }


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class MappingService:
    """What the Mappings screen does; every method is thread-safe (the view and the publisher
    are)."""

    def __init__(
        self,
        settings: Settings,
        view: TopicView,
        publisher: Publisher,
        vocabulary: VocabularyCache,
        metrics: WebMetrics,
    ) -> None:
        topics = settings.topics
        self.labels_topic, self.mappings_topic = topics.labels, topics.mappings
        self.serde = serde_for("Label", settings.serde.registry_url, topic=topics.labels)
        self.view = view
        self.publisher = publisher
        self.vocabulary = vocabulary
        self.metrics = metrics

    # -- the table ------------------------------------------------------------------------------

    def _evidence(
        self, feed: str | None, predicted: dict[str, tuple[str, ...]]
    ) -> Iterator[Evidence]:
        """The view's products as votes; ``predicted``: category id → path of the predictions
        (for label ids the vocabulary does not hold)."""
        vocabulary = self.vocabulary.get()
        for group in self.view.mapping_evidence(feed):
            category_id = group["labelled"]
            labelled = (
                vocabulary.levels(category_id) or predicted.get(category_id, ())
                if category_id
                else ()
            )
            item = Evidence(group["feed"], group["feed_path"], group["predicted"], labelled)
            yield from [item] * group["n"]

    def _category_id(self, path: tuple[str, ...], predicted: dict[str, tuple[str, ...]]) -> str:
        """The id of a node of our tree: the one predictions give it, else the vocabulary's."""
        ids = {levels: category_id for category_id, levels in predicted.items()}
        return ids.get(path) or self.vocabulary.get().resolve(" > ".join(path))

    def table(
        self,
        *,
        feed: str | None = None,
        sort: str = "support",
        min_support: int = 5,
        limit: int = 200,
    ) -> dict[str, Any]:
        """The mined rows (``limit`` of them, in ``sort`` order) with their decisions."""
        if sort not in SORTS:
            raise InvalidInputError(f"sort by one of {', '.join(SORTS)}, not {sort!r}")
        predicted = self.view.predicted_paths()
        mined = mine(
            self._evidence(feed, predicted), min_support=min_support, min_purity=MIN_PURITY
        )
        mined.sort(key=lambda c: (-getattr(c, sort), -c.support, c.feed, c.feed_path))
        decisions = self.view.mapping_decisions()
        rows = []
        for candidate in mined[:limit]:
            decision = decisions.get(candidate.key)
            rows.append(
                {
                    "key": candidate.key,
                    "feed": candidate.feed,
                    "feed_path": list(candidate.feed_path),
                    "category_id": self._category_id(candidate.path, predicted),
                    "path": list(candidate.path),
                    "support": candidate.support,
                    "labelled": candidate.labelled,
                    "purity": candidate.purity,
                    "agreement": candidate.agreement,
                    "label_purity": candidate.label_purity,
                    "decision": None if decision is None else _decision_json(decision),
                }
            )
        return {
            "rows": rows,
            "total": len(mined),
            "feeds": self.view.feeds(),
            "approved": sum(d.status == "approved" for d in decisions.values()),
        }

    # -- decisions ------------------------------------------------------------------------------

    def _mined(
        self, feed: str, feed_path: tuple[str, ...], predicted: dict[str, tuple[str, ...]]
    ) -> Candidate:
        evidence = (e for e in self._evidence(feed, predicted) if e.feed_path == feed_path)
        found = mine(evidence, min_support=1, min_purity=MIN_PURITY)
        if not found:
            raise InvalidInputError(
                f"no product of feed {feed!r} with the path {' > '.join(feed_path)!r} has a "
                "prediction or a label yet: choose its category"
            )
        return found[0]

    def approve(
        self, annotator: str, feed: str, feed_path: list[str], category_id: str | None = None
    ) -> Approved:
        """Approve ``feed_path`` of ``feed`` → its mined node, or ``category_id`` (a node of the
        taxonomy or a class of the served model), then label its products."""
        path_of = tuple(feed_path)
        predicted = self.view.predicted_paths()
        if category_id is None:
            candidate = self._mined(feed, path_of, predicted)
            category_id, path = self._category_id(candidate.path, predicted), candidate.path
        else:
            vocabulary = self.vocabulary.get()
            known = (
                vocabulary.levels(category_id)
                if vocabulary.knows(category_id, exclusive=True)
                else ()
            )
            path = known or predicted.get(category_id, ())
            if not path:
                raise InvalidInputError(
                    f"unknown category {category_id!r}: choose one the category search offers"
                )
        now_ms = _now_ms()
        decision = Decision(feed, path_of, "approved", category_id, path, annotator, now_ms)
        self._store(decision)
        free, protected = self.view.feed_path_products(feed, list(path_of))
        labels = [
            (
                label_key(product_id, "exclusive"),
                mapping_label(product_id, category_id, annotator, now_ms),
            )
            for product_id in free
        ]
        encoded = [(key, self.serde.encode(label)) for key, label in labels]
        self.publisher.send_all(self.labels_topic, encoded)
        with self.view.batch():  # the screen and the queue show them at once
            for (key, label), (_, value) in zip(labels, encoded, strict=True):
                self.view.apply_label(key, label, value)
        self.metrics.mapping_labels.inc(len(encoded))
        logger.info(
            "ui: %s approved %s: %s → %s (%s); %d products labelled, %d protected",
            annotator, feed, " > ".join(path_of), " > ".join(path), category_id,
            len(encoded), protected,
        )  # fmt: skip
        return Approved(decision, len(encoded), protected)

    def reject(self, annotator: str, feed: str, feed_path: list[str]) -> Decision:
        """Store a rejection: the feed path is not mapped; nothing is labelled."""
        decision = Decision(feed, tuple(feed_path), "rejected", None, (), annotator, _now_ms())
        self._store(decision)
        return decision

    def _store(self, decision: Decision) -> None:
        key, value = decision.key.encode(), decision.to_json()
        self.publisher.send(self.mappings_topic, key, value)
        self.view.apply_mapping(key, value)
        self.metrics.mapping_decisions.labels(decision.status).inc()
