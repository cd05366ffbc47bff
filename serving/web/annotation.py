"""The annotation queue: handing products to annotators, and their labels, skips and undos.

The queue is the view's unanswered requests (:meth:`TopicView.open_requests`, oldest first,
optionally one strategy or every uncertainty strategy), minus products leased to someone else or
skipped by this annotator (:class:`~prodcat.serving.web.leases.LeaseBook`). A label is validated against
the vocabulary (the configured taxonomy's nodes when one is stored, else the newest serving
classifier's classes and nodes, see :class:`VocabularyCache`) before it is written to ``labels``
(key ``<product_id>/exclusive``) and acknowledged; the view is updated at once, so the product
leaves the queue without waiting for the follower.

**Undo** on a compacted topic: the label's key gets back what it held before, the previous
label's value when there was one, otherwise a tombstone (the retrain trigger skips tombstones as
``tombstone``; snapshots and the sampler treat them as "no label"). The product then has no live
exclusive label, so its request is open again, and it goes straight back to the annotator.
Only the annotator's own label can be undone, and only while it is still the live one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from prodcat.core.ids import label_key
from prodcat.core.settings import Settings
from prodcat.schemas.records import Label
from prodcat.schemas.serde import serde_for
from prodcat.serving.subtrees import LiveTree
from prodcat.serving.web.exceptions import ConflictError, InvalidInputError
from prodcat.serving.web.leases import LeaseBook
from prodcat.serving.web.metrics import WebMetrics
from prodcat.serving.web.publisher import Publisher
from prodcat.serving.web.view import QueuedRequest, TopicView
from prodcat.training.agreement import DISAGREEMENT, Pair, agreement_report, kappa_of
from prodcat.training.firewall import HELD, SuspectLabel
from prodcat.training.labels import (
    LabelError,
    Vocabulary,
    load_vocabulary,
    newest_version,
    validate_label,
)
from prodcat.training.taxonomy import CategoryTree

logger = logging.getLogger(__name__)

OBJECTIVE: Final = "exclusive"
#: The sampler's uniform share (its requests measure the model's accuracy without bias).
RANDOM_STRATEGY: Final = "random"
#: Successive model versions agreeing at least this much (kappa) on the products both predicted:
#: predictions have stabilised (the active-learning experiment's stopping criterion).
STABLE_KAPPA: Final = 0.99
#: How far back the labelled accuracy of the random share looks.
LABELLED_ACCURACY_WINDOW_MS: Final = 7 * 24 * 3_600_000
_VOCABULARY_CHECK_S = 10.0
_TAXONOMY_CHECK_S = 60.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Undoable:
    key: bytes
    product_id: str
    labelled_at: int
    previous: bytes | None


class VocabularyCache:
    """The vocabulary labels are checked against and the category search looks in: the
    configured taxonomy's nodes (``taxonomy``: a callable giving the live tree or None, re-asked
    every minute; the process entry point passes one that reads the taxonomy topic) with the
    serving classifier's classes, else the newest serving classifier's vocabulary; re-read when
    a new classifier version or a new tree appears."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        taxonomy: Callable[[], CategoryTree | None] | None = None,
    ) -> None:
        self.model_base = settings.serving.model_base
        self.name = settings.serving.classifier
        self.clock = clock
        self.tree = LiveTree(taxonomy, clock=clock, check_s=_TAXONOMY_CHECK_S, who="ui")
        self._vocabulary: Vocabulary | None = None
        self._checked = -1e18
        self._lock = threading.Lock()

    def expire(self) -> None:
        """Read the tree and the vocabulary again at the next :meth:`get`."""
        self.tree.expire()
        with self._lock:
            self._checked = -1e18

    def get(self) -> Vocabulary:
        with self._lock:
            now = self.clock()
            if self._vocabulary is None or now - self._checked >= _VOCABULARY_CHECK_S:
                self._checked = now
                tree = self.tree.get()
                newest = newest_version(self.model_base, self.name)
                if (
                    self._vocabulary is None
                    or self._vocabulary.version != newest
                    or self._vocabulary.taxonomy != (tree.version if tree else None)
                ):
                    self._vocabulary = load_vocabulary(self.model_base, self.name, tree)
                    logger.info("ui: vocabulary of %s", self._vocabulary.origin)
            return self._vocabulary

    def search(self, text: str, limit: int) -> list[dict[str, str]]:
        """Exclusive classes, then other tree nodes, whose path contains every word of ``text``."""
        vocabulary = self.get()
        words = text.casefold().split()
        out: list[dict[str, str]] = []
        for kind, table in (("class", vocabulary.classes), ("node", vocabulary.nodes)):
            for category_id, path in table.items():
                if kind == "node" and category_id in vocabulary.classes:
                    continue
                folded = path.casefold()
                if all(word in folded for word in words):
                    out.append({"category_id": category_id, "path": path, "kind": kind})
                    if len(out) >= limit:
                        return out
        return out


class AnnotationService:
    """What the annotation pages do; every method is thread-safe."""

    def __init__(
        self,
        settings: Settings,
        view: TopicView,
        leases: LeaseBook,
        publisher: Publisher,
        metrics: WebMetrics,
        vocabulary: VocabularyCache | None = None,
        taxonomy: Callable[[], CategoryTree | None] | None = None,
    ) -> None:
        self.topic = settings.topics.labels
        self.second_topic, self.suspects_topic = (
            settings.topics.second_opinions,
            settings.topics.suspects,
        )
        self.serde = serde_for("Label", settings.serde.registry_url, topic=settings.topics.labels)
        self.view = view
        self.leases = leases
        self.publisher = publisher
        self.metrics = metrics
        self.vocabulary = vocabulary or VocabularyCache(settings, taxonomy=taxonomy)
        self.undo_depth = settings.ui.undo_depth
        self._undo: dict[str, deque[Undoable]] = {}
        self._lock = threading.Lock()

    # -- the queue ------------------------------------------------------------------------------

    def next_item(self, annotator: str, strategy: str | None) -> dict[str, Any] | None:
        """The annotator's current product if it is still open (and fits the filter), else the
        oldest open request nobody else holds; leased to them."""
        lease = self.leases.current(annotator)
        if lease is not None:
            request = self.view.open_request(lease.product_id) or self.view.second_opinion_pending(
                lease.product_id, annotator
            )
            if request is not None and _fits(request, strategy):
                return self._card(request, annotator)
        # Second opinions first: a disagreement waits for them before anyone adjudicates it.
        for request in self.view.second_opinion_requests(annotator):
            if _fits(request, strategy) and self.leases.available(request.product_id, annotator):
                card = self._card(request, annotator)
                if card is not None:
                    return card
        for request in self.view.open_requests(strategy):
            if self.leases.available(request.product_id, annotator):
                card = self._card(request, annotator)
                if card is not None:
                    return card
        return None

    def _card(self, request: QueuedRequest, annotator: str) -> dict[str, Any] | None:
        lease = self.leases.acquire(request.product_id, annotator)
        if lease is None:
            return None
        vocabulary = self.vocabulary.get()
        suggestions = [
            {
                "category_id": s["category_id"],
                "path": " > ".join(s.get("path") or []) or vocabulary.path(s["category_id"]),
                "probability": float(s["probability"]),
                "known": vocabulary.knows(s["category_id"], exclusive=True),
            }
            for s in request.suggestions
        ]
        return {
            "product_id": request.product_id,
            "product": self.view.product(request.product_id),
            "strategy": request.strategy,
            "score": request.score,
            "model_name": request.model_name,
            "model_version": request.model_version,
            "suggestions": suggestions[:9],  # digits 1-9 pick them
            # a backed-off prediction: the part of the path the model is sure of
            "decision": request.decision,
            "partial_path": request.partial_path,
            "lease_s": round(self.leases.ttl_s),
            # labelled once already: this annotator's label is a blind second opinion
            "second_opinion": self.view.open_request(request.product_id) is None,
        }

    def agreement(self) -> dict[str, Any]:
        """How far the annotators of double-labelled products agree (kappa overall, per
        annotator and per category) and how many disagreements wait for adjudication."""
        pairs = [
            Pair(r["product_id"], r["first_annotator"], r["first_category_id"], r["annotator"],
                 r["category_id"])
            for r in self.view.second_opinions()
        ]  # fmt: skip
        pending = 0
        for pair in pairs:
            if pair.first != pair.second:
                suspect = self.view.suspect(pair.product_id)
                pending += suspect is not None and suspect.status == HELD
        report = agreement_report(pairs, pending)
        vocabulary = self.vocabulary.get()
        for row in report["categories"]:
            row["path"] = vocabulary.path(row["category_id"])
        return report

    def labelled_accuracy(self, since_ms: int) -> dict[str, tuple[int, int]]:
        """Per feed, (correct, labels): how often the model's top-1 suggestion of a random-strategy
        request agreed with the person's answer (the label at the suggestion's node or above it
        counts as agreeing). Random requests are a uniform sample, so this is the model's accuracy
        measured with labels, beside the label-free estimate."""
        vocabulary = self.vocabulary.get()
        out: dict[str, list[int]] = {}
        for row in self.view.answered_requests(RANDOM_STRATEGY, since_ms):
            if not row["suggestions"]:
                continue
            top = row["suggestions"][0]
            label = row["category_id"]
            levels = vocabulary.levels(label)
            path = tuple(top.get("path") or ())
            agreed = top["category_id"] == label or (bool(levels) and path[: len(levels)] == levels)
            slot = out.setdefault(row["feed"], [0, 0])
            slot[0] += agreed
            slot[1] += 1
        accuracy = {feed: (c, n) for feed, (c, n) in out.items()}
        self.metrics.set_labelled_accuracy(accuracy)
        return accuracy

    def stability(self, threshold: float = STABLE_KAPPA) -> dict[str, Any]:
        """How much each new model version changed the top-1 of the products both it and the
        version before predicted (Cohen's kappa; as small-text's stopping criterion): two
        successive versions at ``threshold`` or above say more labels of this kind pay off
        little."""
        cells: dict[tuple[int, int], Counter[tuple[str, str]]] = {}
        for row in self.view.version_changes():
            step = cells.setdefault((row["prev_version"], row["version"]), Counter())
            step[(row["prev_category_id"], row["category_id"])] += row["n"]
        steps = [
            {
                "from": old,
                "to": new,
                "products": sum(counts.values()),
                "changed": sum(n for (a, b), n in counts.items() if a != b),
                "kappa": kappa_of(counts),
            }
            for (old, new), counts in sorted(cells.items())
        ]
        last = [step["kappa"] for step in steps[-2:]]
        stable = len(last) == 2 and all(k is not None and k >= threshold for k in last)
        return {"steps": steps, "stable": stable, "threshold": threshold}

    def depth(self) -> dict[str, int]:
        depth = self.view.depth()
        self.metrics.set_depth(depth)
        return depth

    # -- writes ---------------------------------------------------------------------------------

    def submit(self, annotator: str, product_id: str, category_id: str) -> Label:
        """Write the annotator's exclusive label for a queued product; returns the label."""
        held = self.leases.current(annotator)
        # Taking the lease (kept if it is already theirs) makes the check and the write one
        # annotator's: of two concurrent submits for one product, the second gets a conflict.
        lease = self.leases.acquire(product_id, annotator)
        if lease is None:
            raise ConflictError(
                f"{product_id} is being labelled by {self.leases.holder(product_id)}"
            )
        request = self.view.open_request(product_id)
        # the time from the card shown to the label, when the annotator held this product's card
        taken_ms = None
        if held is not None and held.product_id == product_id:
            taken_ms = max(0, int((self.leases.clock() - lease.started) * 1000))
        if request is None:
            second = self.view.second_opinion_pending(product_id, annotator)
            if second is not None:
                return self._second_opinion(annotator, second, category_id, taken_ms)
            self.leases.release(product_id, annotator)
            raise ConflictError(f"{product_id} is not in the queue (labelled or never requested)")
        key = label_key(product_id, OBJECTIVE)
        labelled_at = _now_ms()
        label = human_label(
            self.vocabulary.get(), product_id, category_id, annotator, labelled_at,
            request=request, taken_ms=taken_ms,
        )  # fmt: skip
        value = self.serde.encode(label)
        previous = self.view.live_label(key)
        self.publisher.send(self.topic, key, value)
        self.view.apply_label(key, label, value)
        self.leases.release(product_id, annotator)
        with self._lock:
            stack = self._undo.setdefault(annotator, deque(maxlen=self.undo_depth))
            stack.append(
                Undoable(key, product_id, labelled_at, previous.value if previous else None)
            )
        self.metrics.labels.labels(request.strategy).inc()
        if taken_ms is not None:
            self.metrics.seconds.observe(taken_ms / 1000)
        return label

    def _second_opinion(
        self, annotator: str, request: QueuedRequest, category_id: str, taken_ms: int | None
    ) -> Label:
        """A blind second label of a double-labelled product: stored on ``labels.second``
        (``labels`` keeps the first); a disagreement holds the first label for adjudication
        (``labels.suspect``, the Review queue)."""
        product_id = request.product_id
        live = self.view.live_label(label_key(product_id, OBJECTIVE))
        if live is None:
            self.leases.release(product_id, annotator)
            raise ConflictError(f"the label of {product_id} was removed; not labelled twice")
        first = self.serde.decode(live.value)
        now_ms = _now_ms()
        label = human_label(
            self.vocabulary.get(), product_id, category_id, annotator, now_ms,
            request=request, taken_ms=taken_ms,
        )  # fmt: skip
        first_category = first["category_ids"][0]
        opinion = {
            "product_id": product_id,
            "annotator": annotator,
            "category_id": label["category_ids"][0],
            "labelled_at": now_ms,
            "time_taken_ms": taken_ms,
            "first_annotator": first.get("annotator") or "",
            "first_category_id": first_category,
            "first_labelled_at": first["labelled_at"],
        }
        value = json.dumps(opinion, ensure_ascii=False, sort_keys=True).encode()
        agreed = opinion["category_id"] == first_category
        if not agreed:  # held for adjudication before the opinion is kept (never lost between)
            suspect = SuspectLabel(
                product_id=product_id,
                category_id=first_category,
                source=str(first.get("source") or "human"),
                annotator=first.get("annotator"),
                labelled_at=int(first["labelled_at"]),
                status=HELD,
                suggested_id=opinion["category_id"],
                self_confidence=0.5,  # one annotator of two
                suggested_probability=0.5,
                flagged_at=now_ms,
                flagged_by=f"{DISAGREEMENT} ({annotator})",
            )
            self.publisher.send(self.suspects_topic, suspect.key, suspect.to_json())
            self.view.apply_suspect(suspect.key, suspect.to_json())
        self.publisher.send(self.second_topic, product_id.encode(), value)
        self.view.apply_second_opinion(product_id.encode(), value)
        self.leases.release(product_id, annotator)
        self.metrics.second_opinions.labels("true" if agreed else "false").inc()
        if taken_ms is not None:
            self.metrics.seconds.observe(taken_ms / 1000)
        return label

    def _drop_undo(self, annotator: str, entry: Undoable) -> None:
        with self._lock:
            stack = self._undo.get(annotator)
            if stack and stack[-1] is entry:
                stack.pop()

    def skip(self, annotator: str, product_id: str) -> None:
        self.leases.skip(product_id, annotator)

    def undo(self, annotator: str) -> dict[str, Any]:
        """Retract the annotator's last label; returns the product's card (leased to them)."""
        with self._lock:
            stack = self._undo.get(annotator)
            if not stack:
                raise ConflictError("nothing to undo")
            last = stack[-1]
        live = self.view.live_label(last.key)
        if live is None or live.annotator != annotator or live.labelled_at != last.labelled_at:
            self._drop_undo(annotator, last)
            who = "removed" if live is None else f"relabelled by {live.annotator}"
            raise ConflictError(f"the label of {last.product_id} was {who} since; not undone")
        # Popped only once the retraction is acknowledged: a failed send leaves it to retry, so
        # a second `u` cannot undo the label before it.
        self.publisher.send(self.topic, last.key, last.previous)
        self._drop_undo(annotator, last)
        self.view.apply_label(
            last.key,
            None if last.previous is None else self.serde.decode(last.previous),
            last.previous,
        )
        self.leases.forget_skip(last.product_id, annotator)
        request = self.view.open_request(last.product_id)
        card = None if request is None else self._card(request, annotator)
        return {"product_id": last.product_id, "card": card}


def human_label(
    vocabulary: Vocabulary,
    product_id: str,
    category_id: str,
    annotator: str,
    labelled_at: int,
    *,
    request: QueuedRequest | None = None,
    strategy: str | None = None,
    taken_ms: int | None = None,
) -> Label:
    """A person's exclusive label, validated against ``vocabulary`` (an unknown category is an
    :class:`InvalidInputError`); with ``request``, the request it answers (strategy, score, the
    model version whose suggestions were shown)."""
    label: Label = {
        "product_id": product_id,
        "objective": OBJECTIVE,
        "category_ids": [category_id],
        "source": "human",
        "annotator": annotator,
        "strategy": request.strategy if request is not None else strategy,
        "score": request.score if request is not None else None,
        "time_taken_ms": taken_ms,
        "model_version": request.model_version if request is not None else None,
        "labelled_at": labelled_at,
    }
    try:
        return validate_label(label, vocabulary, label_key(product_id, OBJECTIVE))
    except LabelError as exc:
        raise InvalidInputError(exc.message) from exc


def _fits(request: QueuedRequest, strategy: str | None) -> bool:
    if not strategy:
        return True
    if strategy == "uncertainty":
        return request.strategy != "random"
    return request.strategy == strategy
