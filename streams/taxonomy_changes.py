"""Taxonomy changes applied everywhere they matter, as events on ``taxonomy.events``.

    prodcat taxonomy rename NODE --name N
    prodcat taxonomy move NODE --parent P|--root
    prodcat taxonomy merge NODE --into T
    prodcat taxonomy split NODE --into A --into B
    (each: [--by NAME] [--no-model] [--backfill] [--dry-run])

:func:`change_taxonomy` applies one :class:`~prodcat.training.taxonomy_changes.Change`:

1. the new tree (:func:`~prodcat.training.taxonomy_changes.apply_change`) is stored as the live
   version on the ``taxonomy`` topic: label validation and the UI's category search follow it
   within a minute;
2. every live label on ``labels`` naming a node whose id changed is rewritten to the new id, its
   source, annotator and time kept, and what it said before appended to its ``history``;
3. the rules file (``PRODCAT_TAXONOMY__RULES``), when there is one, is rewritten onto the new
   tree (rules of merged nodes name the target);
4. the served classifier gets a new version remapped onto the new classes
   (:func:`~prodcat.training.model_remap.remap_classifier`; the weights are the same), so re-scored
   products carry the new ids and paths;
5. with ``backfill``, the products predicted under the changed node are re-scored through the
   classify stage (:func:`prodcat.streams.backfill.backfill`);
6. the change, its id map and the report are appended to ``taxonomy.events`` (key: change id).

Products, labels and rules outside the changed subtree are not touched; ids of unchanged nodes
stay. A change that does not fit the tree (an unknown node, a name already taken, a move under
its own subtree) is refused before anything is written, with what to do.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prodcat.core.ids import label_key
from prodcat.core.settings import Settings
from prodcat.schemas.exceptions import SerdeError
from prodcat.schemas.serde import serde_for
from prodcat.streams.acked import AckedProducer, produce_acknowledged
from prodcat.streams.compacted import read_compacted
from prodcat.streams.exceptions import StreamsError, TopicError
from prodcat.streams.taxonomy_store import load_taxonomy, publish_taxonomy
from prodcat.training.rules import dump_rules, load_rules
from prodcat.training.taxonomy_changes import (
    Applied,
    Change,
    apply_change,
    remap_ids,
    resolve_change,
)

__all__ = ["ChangeReport", "change_taxonomy", "read_changes"]

logger = logging.getLogger(__name__)


@dataclass
class ChangeReport:
    """What one change did."""

    applied: Applied
    labels: Counter[str] = field(default_factory=Counter)  # rewritten, per source
    partial: int = 0  # labels at a split node (still valid, now above the new leaves)
    rules: int = 0  # rules rewritten
    model_version: int | None = None  # the remapped classifier version, if one was written
    rescored: int | None = None  # products re-scored by the backfill, when it ran
    taxonomy_sequence: int | None = None
    dry_run: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            **self.applied.as_json(),
            "labels": dict(self.labels),
            "partial_labels": self.partial,
            "rules": self.rules,
            "model_version": self.model_version,
            "rescored": self.rescored,
            "taxonomy_sequence": self.taxonomy_sequence,
        }

    def format(self) -> str:
        a = self.applied
        head = ("would " if self.dry_run else "") + a.change.describe()
        labels = ", ".join(f"{n:,} {s}" for s, n in self.labels.most_common()) or "none"
        lines = [
            f"{head} (change {a.change.change_id})",
            f"  taxonomy: {a.before.version} → {a.after.version}"
            + (f" (live as v{self.taxonomy_sequence})" if self.taxonomy_sequence else ""),
            f"  nodes re-identified: {len(a.ids):,}; paths changed: {len(a.moved):,}; "
            f"added: {len(a.added):,}",
            f"  labels rewritten: {labels}",
            f"  rules rewritten: {self.rules:,}",
        ]
        if self.partial:
            lines.append(f"  labels at the split node, now partial: {self.partial:,}")
        if self.model_version is not None:
            lines.append(f"  classifier remapped: version {self.model_version}")
        if self.rescored is not None:
            lines.append(f"  products re-scored: {self.rescored:,}")
        return "\n".join(lines)


def _rewrite_labels(
    settings: Settings, applied: Applied, report: ChangeReport, *, dry_run: bool
) -> None:
    topic = settings.topics.labels
    serde = serde_for("Label", settings.serde.registry_url, topic=topic)
    try:
        latest = read_compacted(settings.kafka, topic)
    except TopicError as exc:
        raise StreamsError(f"{exc}; create it with `prodcat topics create`") from exc
    split_node = applied.change.node if applied.change.op == "split" else None
    now_ms = time.time_ns() // 1_000_000
    sender = None if dry_run else AckedProducer(settings.kafka, what="rewritten labels", acks="all")
    for key, value in latest.values.items():
        try:
            label = serde.decode(value)
        except SerdeError:
            continue
        ids = list(label.get("category_ids") or [])
        if split_node is not None and split_node in ids:
            report.partial += 1
        if not any(i in applied.ids for i in ids):
            continue
        history = list(label.get("history") or [])
        history.append(
            {
                "category_ids": ids,
                "labelled_at": int(label["labelled_at"]),
                "change": applied.change.change_id,
                "changed_at": now_ms,
            }
        )
        rewritten = {**label, "category_ids": remap_ids(ids, applied.ids), "history": history}
        report.labels[str(label.get("source") or "unknown")] += 1
        if sender is not None:
            out_key = key or label_key(str(label["product_id"]), str(label["objective"]))
            sender.send(topic, out_key, serde.encode(rewritten), [])
    if sender is not None:
        sender.flush()


def _rewrite_rules(path: Path, applied: Applied, *, dry_run: bool) -> int:
    rules = load_rules(path, applied.before)
    changed = 0
    out = []
    for rule in rules:
        new_id = applied.ids.get(rule.category, rule.category)
        node = applied.after[new_id]
        if new_id != rule.category or node.path != rule.path:
            changed += 1
            rule = dataclasses.replace(rule, category=new_id, path=node.path)
        out.append(rule)
    if changed and not dry_run:
        text = path.read_text(encoding="utf-8")
        header = "".join(
            line[2:] + "\n" if line.startswith("# ") else "\n"
            for line in text.splitlines()
            if line.startswith("#")
        ).rstrip("\n")
        dump_rules(out, path, header=header)
    return changed


def change_taxonomy(
    settings: Settings,
    change: Change,
    *,
    model: bool = True,
    backfill: bool = False,
    dry_run: bool = False,
) -> ChangeReport:
    """Apply ``change`` everywhere (see the module docstring); ``dry_run`` reports only."""
    tree = load_taxonomy(settings)
    change = resolve_change(tree, change)
    applied = apply_change(tree, change)  # refuses before anything is written
    report = ChangeReport(applied, dry_run=dry_run)
    rules_path = settings.taxonomy.rules
    if not dry_run:
        stored, _written = publish_taxonomy(settings, applied.after, reason=change.describe())
        report.taxonomy_sequence = stored.sequence
    _rewrite_labels(settings, applied, report, dry_run=dry_run)
    if rules_path is not None and Path(rules_path).is_file():
        report.rules = _rewrite_rules(Path(rules_path), applied, dry_run=dry_run)
    if model and not dry_run and (applied.ids or applied.moved):
        from prodcat.training.model_remap import remap_classifier

        serving = settings.serving
        written = remap_classifier(
            serving.model_base, serving.classifier, applied.ids, applied.after,
            moved=applied.moved, reason=f"taxonomy change {change.change_id}: {change.describe()}",
        )  # fmt: skip
        report.model_version = None if written is None else written[1]
    if backfill and not dry_run and change.op != "split":
        from prodcat.streams.backfill import backfill as run_backfill

        old = applied.before[change.node]
        done = run_backfill(
            settings, job=f"taxonomy-{change.change_id}", category=" > ".join(old.path),
            rate=0, progress=False,
        )  # fmt: skip
        report.rescored = done.scored
    if not dry_run:
        produce_acknowledged(
            settings.kafka,
            settings.topics.taxonomy_events,
            change.change_id.encode(),
            json.dumps(report.as_json(), ensure_ascii=False).encode(),
            what="the taxonomy change event",
            acks="all",
        )
    return report


def read_changes(settings: Settings) -> list[dict[str, Any]]:
    """Every change on ``taxonomy.events``, oldest first."""
    try:
        latest = read_compacted(settings.kafka, settings.topics.taxonomy_events)
    except TopicError as exc:
        raise StreamsError(f"{exc}; create it with `prodcat topics create`") from exc
    out = []
    for value in latest.values.values():
        try:
            out.append(json.loads(value))
        except ValueError:
            logger.error("skipping an unreadable taxonomy change event")
    return sorted(out, key=lambda event: int(event.get("at") or 0))
