"""The Review queue: labels the firewall holds, with the model's evidence, for a second look.

A retraining job's label firewall (``streams/firewall.py``) publishes each exclusive label it
suspects to the compacted ``labels.suspect`` topic; the UI's view follows it. A reviewer sees the
product, what the label says (its source and annotator) and what the cross-fitted model says
instead (its probability against the label's own), and

* **confirms** the label: its record becomes ``confirmed``; later jobs train on it and never hold
  it again while it is unchanged;
* **corrects** it: a new exclusive label (source ``human``, strategy ``review``, the reviewer as
  annotator) on ``labels``, and the record ``confirmed`` for that new label (the old category kept
  as ``previous_category_id``).

Either is refused when the label changed after the firewall held it (the next job judges the new
label afresh). Counts per status, source and annotator are on the page and on ``/metrics``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import replace
from typing import Any, Final

from prodcat.core.ids import label_key
from prodcat.core.settings import Settings
from prodcat.schemas.serde import serde_for
from prodcat.serving.web.annotation import VocabularyCache, human_label
from prodcat.serving.web.exceptions import ConflictError
from prodcat.serving.web.metrics import WebMetrics
from prodcat.serving.web.publisher import Publisher
from prodcat.serving.web.view import TopicView
from prodcat.training.firewall import CONFIRMED, HELD, SuspectLabel

logger = logging.getLogger(__name__)

OBJECTIVE: Final = "exclusive"
#: The strategy a correction's label carries (what the progress page counts it under).
STRATEGY: Final = "review"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ReviewService:
    """What the Review queue does; thread-safe as the view and the publisher are."""

    def __init__(
        self,
        settings: Settings,
        view: TopicView,
        publisher: Publisher,
        vocabulary: VocabularyCache,
        metrics: WebMetrics,
    ) -> None:
        topics = settings.topics
        self.labels_topic, self.suspects_topic = topics.labels, topics.suspects
        self.serde = serde_for("Label", settings.serde.registry_url, topic=topics.labels)
        self.view = view
        self.publisher = publisher
        self.vocabulary = vocabulary
        self.metrics = metrics

    # -- the queue ------------------------------------------------------------------------------

    def _path(self, category_id: str | None) -> str:
        if category_id is None:
            return ""
        return self.vocabulary.get().path(category_id)

    def queue(self, limit: int) -> dict[str, Any]:
        """The held labels (``limit`` of them, longest held first) and the counts."""
        rows = []
        held = self.view.held_suspects(limit)
        products = self.view.products([s.product_id for s in held])
        for suspect in held:
            rows.append(
                {
                    "product_id": suspect.product_id,
                    "product": products.get(suspect.product_id),
                    "label": {
                        "category_id": suspect.category_id,
                        "path": self._path(suspect.category_id),
                        "source": suspect.source,
                        "annotator": suspect.annotator,
                        "labelled_at": suspect.labelled_at,
                        "probability": suspect.self_confidence,
                    },
                    "suggested": {
                        "category_id": suspect.suggested_id,
                        "path": self._path(suspect.suggested_id),
                        "probability": suspect.suggested_probability,
                    },
                    "flagged_by": suspect.flagged_by,
                    "flagged_at": suspect.flagged_at,
                }
            )
        return {"rows": rows, **self.counts()}

    def counts(self) -> dict[str, Any]:
        """Held and confirmed labels, in all and per source and annotator; the gauge is set."""
        by_status: Counter[str] = Counter()
        by_source: dict[str, Counter[str]] = {}
        by_annotator: dict[str, Counter[str]] = {}
        for row in self.view.suspect_counts():
            status, n = row["status"], row["n"]
            by_status[status] += n
            by_source.setdefault(row["source"], Counter())[status] += n
            by_annotator.setdefault(row["annotator"], Counter())[status] += n
        self.metrics.set_suspects({s: c[HELD] for s, c in by_source.items()})
        return {
            "held": by_status[HELD],
            "confirmed": by_status[CONFIRMED],
            "by_source": {k: dict(v) for k, v in sorted(by_source.items())},
            "by_annotator": {k: dict(v) for k, v in sorted(by_annotator.items())},
        }

    # -- decisions ------------------------------------------------------------------------------

    def _held(self, product_id: str) -> SuspectLabel:
        """The held record of ``product_id``, if its label is still the one held."""
        suspect = self.view.suspect(product_id)
        if suspect is None or suspect.status != HELD:
            raise ConflictError(f"the label of {product_id} is not held (reviewed or cleared)")
        live = self.view.live_label(label_key(product_id, OBJECTIVE))
        if live is None or live.labelled_at != suspect.labelled_at:
            raise ConflictError(
                f"the label of {product_id} changed after it was held: the next retraining "
                "job judges the new label"
            )
        return suspect

    def confirm(self, reviewer: str, product_id: str) -> SuspectLabel:
        """The held label is right: train on it again, never hold it while it is unchanged."""
        confirmed = replace(
            self._held(product_id), status=CONFIRMED, reviewed_by=reviewer, reviewed_at=_now_ms()
        )
        self._store(confirmed)
        self.metrics.reviews.labels("confirmed", confirmed.source).inc()
        logger.info("ui: %s confirmed the label of %s", reviewer, product_id)
        return confirmed

    def correct(self, reviewer: str, product_id: str, category_id: str) -> SuspectLabel:
        """The held label is wrong: the reviewer's label replaces it (and is confirmed)."""
        suspect = self._held(product_id)
        now_ms = _now_ms()
        key = label_key(product_id, OBJECTIVE)
        label = human_label(
            self.vocabulary.get(), product_id, category_id, reviewer, now_ms, strategy=STRATEGY
        )
        value = self.serde.encode(label)
        self.publisher.send(self.labels_topic, key, value)
        self.view.apply_label(key, label, value)
        corrected = replace(
            suspect,
            status=CONFIRMED,
            category_id=label["category_ids"][0],
            labelled_at=now_ms,
            previous_category_id=suspect.category_id,
            reviewed_by=reviewer,
            reviewed_at=now_ms,
        )
        self._store(corrected)
        self.metrics.reviews.labels("corrected", suspect.source).inc()
        logger.info(
            "ui: %s corrected the label of %s: %s → %s",
            reviewer, product_id, suspect.category_id, corrected.category_id,
        )  # fmt: skip
        return corrected

    def _store(self, record: SuspectLabel) -> None:
        value = record.to_json()
        self.publisher.send(self.suspects_topic, record.key, value)
        self.view.apply_suspect(record.key, value)
