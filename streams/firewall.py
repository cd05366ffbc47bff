"""The label firewall of the retraining job: suspect labels are held before they teach.

Before a job trains, every live exclusive label of its snapshot is judged
(:func:`prodcat.training.firewall.screen`: confident learning on cross-fitted probabilities). With
``PRODCAT_RETRAIN__FIREWALL=hold`` (the default) a suspect label is left out of the candidate's
training set *and* of the hash holdout the promotion gate scores on (a product with rule-based
labels keeps those); with ``flag`` it is still trained on. Either way each suspect is published to
the compacted ``labels.suspect`` topic (key = the label's key) with the model's evidence, for the
web UI's Review queue, where a person confirms it (never held again while it is unchanged) or
corrects it (a new label, confirmed at once). A held label the firewall no longer suspects is
cleared (a tombstone). What was decided lies in the job's folder as ``firewall.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prodcat.core.ids import label_key
from prodcat.core.settings import Settings
from prodcat.streams.acked import AckedProducer
from prodcat.streams.compacted import read_compacted
from prodcat.training.firewall import JOB_FLAG, LabelFacts, Screening, SuspectLabel, screen
from prodcat.training.labels import LabelledProduct

logger = logging.getLogger(__name__)


def read_reviews(settings: Settings) -> dict[str, SuspectLabel]:
    """Product id → its live record on ``labels.suspect`` (records that do not parse are
    logged and ignored: the label is judged afresh)."""
    live = read_compacted(settings.kafka, settings.topics.suspects)
    reviews: dict[str, SuspectLabel] = {}
    for key, value in live.values.items():
        try:
            record = SuspectLabel.from_json(value)
        except (ValueError, TypeError) as exc:
            logger.warning("labels.suspect: ignoring the record of %r: %s", key, exc)
            continue
        reviews[record.product_id] = record
    return reviews


def label_facts(
    items: list[LabelledProduct], labels: Mapping[str, Mapping[str, Any]]
) -> list[LabelFacts]:
    """The snapshot's exclusive labels with what the firewall reads of them."""
    facts = []
    for item in items:
        label = labels.get(item.product_id)
        if item.exclusive is None or label is None:
            continue
        product = item.product
        text = f"{product.get('title') or ''} {product.get('brand') or ''}".strip()
        facts.append(
            LabelFacts(
                item.product_id,
                item.exclusive,
                str(label.get("source") or "unknown"),
                label.get("annotator"),
                int(label["labelled_at"]),
                text,
            )
        )
    return facts


def apply_firewall(
    settings: Settings,
    items: list[LabelledProduct],
    labels: Mapping[str, Mapping[str, Any]],
    *,
    version: int,
    folder: Path,
) -> tuple[list[LabelledProduct], Screening | None]:
    """Screen ``items`` (the snapshot; ``labels``: product id → its exclusive label), publish the
    suspects and the cleared ones, and return what the job trains on (``hold``: without the held
    exclusive labels)."""
    mode = settings.retrain.firewall
    if mode == "off":
        return items, None
    started = time.monotonic()
    screening = screen(
        label_facts(items, labels),
        read_reviews(settings),
        flagged_by=f"{JOB_FLAG} v{version}",
        now_ms=time.time_ns() // 1_000_000,
        min_labels=settings.retrain.firewall_min_labels,
    )
    _publish(settings, screening)
    summary = {**screening.as_dict(), "mode": mode, "seconds": round(time.monotonic() - started, 2)}
    (folder / "firewall.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    logger.info("retrain v%d: label firewall: %s", version, summary)
    if mode != "hold" or not screening.held:
        return items, screening
    held = screening.held_ids
    kept = []
    for item in items:
        if item.product_id not in held:
            kept.append(item)
        elif item.rule_based:  # its rule-based labels still teach
            kept.append(LabelledProduct(item.product, None, item.rule_based))
    return kept, screening


def _publish(settings: Settings, screening: Screening) -> None:
    topic = settings.topics.suspects
    sender = AckedProducer(settings.kafka, what="suspect labels", acks="all")
    for record in screening.held:
        sender.send(topic, record.key, record.to_json())
    for product_id in screening.cleared:
        sender.send(topic, label_key(product_id, "exclusive"), None)
    sender.flush()
