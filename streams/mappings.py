"""Feed categories → our taxonomy, as operations: mine, approve or reject, label in bulk.

    prodcat mappings mine [--feed F] [--min-support N] [--min-purity P]
    prodcat mappings approve --feed F --path 'A > B' [--to NODE] [--annotator NAME]
    prodcat mappings reject --feed F --path 'A > B'

**Mine** reads the live products (``products.normalized``: feed header, ``category_path``), their
latest predictions (top-1 path) and labels (exclusive; a person's or an import's) and builds the
table of :func:`prodcat.training.mappings.mine`, with each row's decision, if any.

**Approve** stores the decision on the compacted ``feeds.mappings`` topic (key: feed + feed path)
and publishes an exclusive ``Label`` (source ``mapping``) for every live product of that feed path
that has no label from a person or an import (those are never overwritten). The ``mappings``
worker role (:class:`MappingStage`) then labels the products of approved feed paths that arrive
later, the same way. **Reject** stores the decision; nothing is labelled.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from prodcat.core.ids import category_reference, label_key
from prodcat.core.metrics import StageMetrics
from prodcat.core.settings import Settings
from prodcat.schemas.exceptions import SerdeError
from prodcat.schemas.records import Product
from prodcat.schemas.serde import AvroSerde, serde_for
from prodcat.streams.acked import AckedProducer, produce_acknowledged
from prodcat.streams.compacted import read_compacted
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.decoding import decode_records
from prodcat.streams.exceptions import StreamsError, TopicError
from prodcat.streams.label_commands import live_products
from prodcat.streams.profile_follower import TopicFollower
from prodcat.streams.runtime import StageHandler, register_stage
from prodcat.streams.stage import Input, Outgoing, Outputs
from prodcat.training.mappings import (
    PROTECTED_SOURCES,
    Candidate,
    Decision,
    Evidence,
    decision_of,
    feed_path_of,
    is_under,
    mapping_label,
    mine,
)

__all__ = [
    "DecisionFollower",
    "MappingStage",
    "agreement",
    "approve",
    "decisions",
    "mine_table",
    "register_mappings",
    "reject",
]

logger = logging.getLogger(__name__)

STAGE = "mappings"


def decisions(settings: Settings) -> dict[str, Decision]:
    """The latest decision per (feed, feed path), from ``feeds.mappings``."""
    try:
        latest = read_compacted(settings.kafka, settings.topics.mappings)
    except TopicError as exc:
        raise StreamsError(f"{exc}; create it with `prodcat topics create`") from exc
    out: dict[str, Decision] = {}
    for value in latest.values.values():
        try:
            decision = Decision.from_json(value)
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("skipping an unreadable mapping decision: %s", exc)
            continue
        out[decision.key] = decision
    return out


@dataclass
class _Catalogue:
    """What mining and approving read: live products, top-1 predicted paths, protected labels."""

    products: dict[str, dict[str, Any]]
    predicted: dict[str, tuple[str, ...]]
    labelled: dict[str, tuple[str, ...]]  # product id → a person's/import's label's path
    protected: set[str]  # product ids with a person's/import's exclusive label
    paths: dict[str, tuple[str, ...]] = field(default_factory=dict)  # category id → path


def _catalogue(settings: Settings) -> _Catalogue:
    registry, topics = settings.serde.registry_url, settings.topics
    products = live_products(settings)
    predictions = serde_for("Prediction", registry, topic=topics.predictions)
    predicted: dict[str, tuple[str, ...]] = {}
    paths: dict[str, tuple[str, ...]] = {}
    for value in read_compacted(settings.kafka, topics.predictions).values.values():
        try:
            record = predictions.decode(value)
        except SerdeError:
            continue
        for rank, entry in enumerate(record.get("exclusive_top_k") or []):
            path = tuple(entry.get("path") or ())
            if path:
                paths.setdefault(str(entry["category_id"]), path)
                if rank == 0:
                    predicted[str(record["product_id"])] = path
    labels = serde_for("Label", registry, topic=topics.labels)
    labelled: dict[str, tuple[str, ...]] = {}
    protected: set[str] = set()
    for value in read_compacted(settings.kafka, topics.labels).values.values():
        try:
            label = labels.decode(value)
        except SerdeError:
            continue
        if label["objective"] != "exclusive" or label.get("source") not in PROTECTED_SOURCES:
            continue
        product_id = str(label["product_id"])
        protected.add(product_id)
        ids = label.get("category_ids") or []
        if ids and str(ids[0]) in paths:
            labelled[product_id] = paths[str(ids[0])]
    return _Catalogue(products, predicted, labelled, protected, paths)


def mine_table(
    settings: Settings,
    *,
    feeds: Sequence[str] = (),
    min_support: int = 5,
    min_purity: float = 0.8,
) -> list[tuple[Candidate, Decision | None]]:
    """The mined table (most supported first) with each row's decision."""
    catalogue = _catalogue(settings)
    evidence = (
        Evidence(
            str(product.get("feed") or ""),
            feed_path_of(product),
            catalogue.predicted.get(product_id, ()),
            catalogue.labelled.get(product_id, ()),
        )
        for product_id, product in catalogue.products.items()
        if not feeds or product.get("feed") in feeds
    )
    decided = decisions(settings)
    table = mine(evidence, min_support=min_support, min_purity=min_purity)
    return [(candidate, decided.get(candidate.key)) for candidate in table]


def format_table(rows: Iterable[tuple[Candidate, Decision | None]]) -> str:
    lines = [
        f"{'feed':<16} {'feed path':<40} {'→ node':<40} {'support':>7} {'labelled':>8} "
        f"{'purity':>6} {'agree':>6}  decision"
    ]
    for c, decision in rows:
        status = "-" if decision is None else decision.status
        lines.append(
            f"{c.feed[:16]:<16} {' > '.join(c.feed_path)[:40]:<40} {' > '.join(c.path)[:40]:<40} "
            f"{c.support:>7,} {c.labelled:>8,} {c.purity:>6.2f} {c.agreement:>6.2f}  {status}"
        )
    return "\n".join(lines)


@dataclass
class ApproveReport:
    decision: Decision
    labelled: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def format(self) -> str:
        d = self.decision
        skipped = ", ".join(f"{n:,} {why}" for why, n in self.skipped.most_common()) or "none"
        return (
            f"{d.feed}: {' > '.join(d.feed_path)} → {' > '.join(d.path)} ({d.category_id}) "
            f"approved; {self.labelled:,} products labelled (source mapping); skipped: {skipped}"
        )


def _node(target: str, catalogue: _Catalogue) -> tuple[str, tuple[str, ...]]:
    """``--to``: a category id (its path known from predictions) or a path ``A > B``."""
    try:
        category, levels = category_reference(target)
    except ValueError as exc:
        raise StreamsError(
            f"--to {target!r}: give a category id (c_...) or a path (A > B)"
        ) from exc
    if levels:
        return category, levels
    if category not in catalogue.paths:
        raise StreamsError(
            f"--to {category}: no prediction names this category; give its path (A > B)"
        )
    return category, catalogue.paths[category]


def approve(
    settings: Settings,
    *,
    feed: str,
    feed_path: Sequence[str],
    to: str | None = None,
    annotator: str | None = None,
    min_purity: float = 0.8,
) -> ApproveReport:
    """Approve ``feed_path`` of ``feed`` → its mined node (or ``to``), then label its products."""
    feed_path = tuple(feed_path)
    catalogue = _catalogue(settings)
    if to is not None:
        category_id, path = _node(to, catalogue)
    else:
        evidence = [
            Evidence(
                feed, feed_path, catalogue.predicted.get(pid, ()), catalogue.labelled.get(pid, ())
            )
            for pid, product in catalogue.products.items()
            if product.get("feed") == feed and feed_path_of(product) == feed_path
        ]
        found = mine(evidence, min_support=1, min_purity=min_purity)
        if not found:
            raise StreamsError(
                f"no scored product of feed {feed!r} has the path {' > '.join(feed_path)!r}: "
                "see `prodcat mappings mine`, or choose the node with --to"
            )
        # the id predictions give the node (a taxonomy's own id), else its path id
        ids = {path: category for category, path in catalogue.paths.items()}
        category_id, path = ids.get(found[0].path, found[0].category_id), found[0].path
    now_ms = time.time_ns() // 1_000_000
    decision = Decision(feed, feed_path, "approved", category_id, path, annotator, now_ms)
    _store(settings, decision)
    report = ApproveReport(decision)
    serde = serde_for("Label", settings.serde.registry_url, topic=settings.topics.labels)
    sender = AckedProducer(settings.kafka, what="mapping labels", acks="all")
    for product_id, product in sorted(catalogue.products.items()):
        if product.get("feed") != feed or feed_path_of(product) != feed_path:
            continue
        if product_id in catalogue.protected:
            report.skipped["labelled by a person or an import"] += 1
            continue
        label = mapping_label(product_id, category_id, annotator, now_ms)
        sender.send(
            settings.topics.labels, label_key(product_id, "exclusive"), serde.encode(label), []
        )
        report.labelled += 1
    sender.flush()
    return report


def reject(
    settings: Settings, *, feed: str, feed_path: Sequence[str], annotator: str | None = None
) -> Decision:
    """Store a rejection: the feed path is not mapped (and not offered as approved again)."""
    decision = Decision(
        feed, tuple(feed_path), "rejected", None, (), annotator, time.time_ns() // 1_000_000
    )
    _store(settings, decision)
    return decision


def _store(settings: Settings, decision: Decision) -> None:
    produce_acknowledged(
        settings.kafka,
        settings.topics.mappings,
        decision.key.encode(),
        decision.to_json(),
        what=f"the mapping decision of {decision.feed}",
        acks="all",
    )


class DecisionFollower(TopicFollower):
    """Keeps ``approved`` (key → decision) equal to the approved mappings on ``feeds.mappings``."""

    def __init__(self, settings: Settings, approved: dict[str, Decision]) -> None:
        super().__init__(settings, settings.topics.mappings, name="feed mappings")
        self.approved = approved

    def handle(self, message: Any) -> bool:
        key = (message.key or b"").decode("utf-8", "replace")
        if message.value is None:
            self.approved.pop(key, None)
            return False
        try:
            decision = Decision.from_json(message.value)
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("skipping an unreadable mapping decision: %s", exc)
            return False
        if decision.status == "approved" and decision.category_id:
            self.approved[decision.key] = decision
        else:
            self.approved.pop(decision.key, None)
        return True


def agreement(
    products: Iterable[Mapping[str, Any]],
    predicted: Iterable[Sequence[str]],
    approved: Mapping[str, Decision],
) -> dict[str, tuple[int, int]]:
    """Per feed, (products of an approved feed path, of them whose predicted top-1 path is the
    mapped node or below it): how pure an approved mapping still is, by the model's account."""
    out: dict[str, tuple[int, int]] = {}
    for product, path in zip(products, predicted, strict=True):
        decision = decision_of(approved, product)
        if decision is None:
            continue
        feed = str(product.get("feed") or "")
        checked, agreed = out.get(feed, (0, 0))
        out[feed] = (checked + 1, agreed + is_under(path, decision.path))
    return out


class _ProtectedFollower(TopicFollower):
    """Product ids with an exclusive label from a person or an import (never overwritten)."""

    def __init__(self, settings: Settings, protected: set[str], serde: AvroSerde) -> None:
        super().__init__(settings, settings.topics.labels, name="protected labels")
        self.protected = protected
        self.serde = serde

    def handle(self, message: Any) -> bool:
        if message.value is None:
            return False
        try:
            label = self.serde.decode(message.value)
        except SerdeError:
            return False
        if label.get("objective") == "exclusive" and label.get("source") in PROTECTED_SOURCES:
            self.protected.add(str(label["product_id"]))
            return True
        return False


class MappingStage(StageHandler):
    """``products.normalized`` → a ``mapping`` label for each product of an approved feed path
    that no person or import labelled."""

    def __init__(self, settings: Settings) -> None:
        registry, topics = settings.serde.registry_url, settings.topics
        super().__init__(STAGE, topics.normalized, DeadLetters.for_stage(settings, STAGE))
        self.labels_topic = topics.labels
        self.products = serde_for("Product", registry, topic=topics.normalized)
        self.labels = serde_for("Label", registry, topic=topics.labels)
        self.approved: dict[str, Decision] = {}
        self.protected: set[str] = set()
        self.followers = [
            DecisionFollower(settings, self.approved),
            _ProtectedFollower(settings, self.protected, self.labels),
        ]

    def process(self, batch: Sequence[Input]) -> Outputs:
        now_ms = time.time_ns() // 1_000_000
        decoded, dead = decode_records(batch, self.products, self.dead_letters, now_ms, Product)
        out: list[Outgoing] = list(dead.values())
        for item in decoded:
            product = item.value
            if product is None:
                out.append(item.output(None, skipped="deleted"))
                continue
            decision = decision_of(self.approved, product, item.feed)
            product_id = str(product["product_id"])
            if decision is None or decision.category_id is None:
                out.append(item.output(None, skipped="unmapped"))
            elif product_id in self.protected:
                out.append(item.output(None, skipped="protected"))
            else:
                label = mapping_label(product_id, decision.category_id, decision.decided_by, now_ms)
                labelled = item.output(self.labels_topic, self.labels.encode(label))
                out.append(dataclasses.replace(labelled, key=label_key(product_id, "exclusive")))
        return Outputs.of(out)


def register_mappings(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    """Declare the mapping labeller on ``app`` (a task of the stage runtime)."""
    return register_stage(app, settings, metrics, MappingStage(settings))
