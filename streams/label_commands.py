"""``prodcat labels import|rules|snapshot``: labels in and out of Kafka.

* ``import FILE``: parse a CSV / JSON-lines file (:mod:`prodcat.training.label_import`), publish the valid
  labels to ``labels`` and every invalid line to the dead-letter topic (stage ``labels``, the line's
  bytes and the reason, source ``file:<path>`` with the line number as offset).
* ``rules``: apply the configured taxonomy's keyword rules (``PRODCAT_TAXONOMY__RULES``, seeded by
  ``prodcat rules seed``) to the live products of ``products.normalized`` and publish
  ``rule_based`` labels with source ``rules`` (products no rule fires on get none).
* ``snapshot``: the live labels joined with the live products (:func:`prodcat.training.labels.join_snapshot`).

Labels are validated against the configured taxonomy's nodes when one is stored (or configured as
a file), else against the newest serving classifier's vocabulary
(:func:`prodcat.training.labels.load_vocabulary`).
"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prodcat.core.ids import label_key
from prodcat.core.settings import Settings
from prodcat.schemas.exceptions import RegistryError, SerdeError
from prodcat.schemas.records import Label
from prodcat.schemas.serde import serde_for
from prodcat.streams.acked import AckedProducer
from prodcat.streams.compacted import read_compacted
from prodcat.streams.deadletter import dead_letter
from prodcat.streams.exceptions import StreamsError
from prodcat.streams.taxonomy_store import configured_taxonomy, load_taxonomy
from prodcat.training.label_import import parse_label_file
from prodcat.training.labels import (
    LabelError,
    LabelledProduct,
    SnapshotCounts,
    Vocabulary,
    join_snapshot,
    load_vocabulary,
    validate_label,
)

logger = logging.getLogger(__name__)

STAGE = "labels"


@dataclass
class PublishReport:
    """What a labels command published: labels by objective, dead letters by reason."""

    published: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def format(self) -> str:
        dead = sum(self.dead_letters.values())
        text = f"published {sum(self.published.values())} labels {dict(self.published)}"
        text += f", {dead} dead letters {dict(self.dead_letters)}"
        if self.skipped:
            text += f", skipped {dict(self.skipped)}"
        return text


class _Publisher:
    def __init__(self, settings: Settings) -> None:
        registry, topics = settings.serde.registry_url, settings.topics
        self.topics = topics
        self.labels = serde_for("Label", registry, topic=topics.labels)
        self.letters = serde_for("DeadLetter", registry, topic=topics.deadletter)
        self.producer = AckedProducer(settings.kafka, what="labels and their dead letters")
        self.worker = f"{socket.gethostname()}:cli"

    def _produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.producer.send(topic, key, value)

    def label(self, label: Label) -> str | None:
        """Publish a label; returns None, or the reason it cannot be encoded."""
        try:
            value = self.labels.encode(label)
        except RegistryError:
            raise
        except SerdeError as exc:
            return str(exc)
        self._produce(self.topics.labels, label_key(label["product_id"], label["objective"]), value)
        return None

    def dead(self, source: str, number: int, original: bytes, kind: str, message: str) -> None:
        record = dead_letter(
            stage=STAGE,
            error_kind=kind,
            message=message,
            key=None,
            value=original,
            headers={},
            feed=None,
            topic=source,
            partition=0,
            offset=number,
            worker=self.worker,
            now_ms=time.time_ns() // 1_000_000,
        )
        logger.warning("%s line %d: dead-lettered (%s): %s", source, number, kind, message[:200])
        self._produce(self.topics.deadletter, None, self.letters.encode(record))

    def flush(self) -> None:
        self.producer.flush(60)


def vocabulary_of(settings: Settings) -> Vocabulary:
    """What labels are validated against: the configured taxonomy, else the served card."""
    serving = settings.serving
    return load_vocabulary(serving.model_base, serving.classifier, configured_taxonomy(settings))


def import_labels(settings: Settings, path: Path) -> PublishReport:
    """Publish the labels of a file; invalid lines become dead letters (counted by reason)."""
    vocabulary = vocabulary_of(settings)
    publisher = _Publisher(settings)
    report = PublishReport()
    source = f"file:{path}"
    for line in parse_label_file(path, vocabulary, time.time_ns() // 1_000_000):
        if line.label is not None:
            problem = publisher.label(line.label)
            if problem is None:
                report.published[line.label["objective"]] += 1
                continue
            kind, message = "malformed", problem
        else:
            assert line.error is not None
            kind, message = line.error.kind, line.error.message
        publisher.dead(source, line.number, line.original, kind, message)
        report.dead_letters[kind] += 1
    publisher.flush()
    return report


def live_products(settings: Settings) -> dict[str, dict[str, Any]]:
    """The live products of ``products.normalized`` by id (undecodable records are skipped)."""
    serde = serde_for("Product", settings.serde.registry_url, topic=settings.topics.normalized)
    products: dict[str, dict[str, Any]] = {}
    bad = 0
    for value in read_compacted(settings.kafka, settings.topics.normalized).values.values():
        try:
            product = serde.decode(value)
        except RegistryError:
            raise
        except SerdeError:
            bad += 1
            continue
        products[product["product_id"]] = product
    if bad:
        logger.warning("%d undecodable records in %s", bad, settings.topics.normalized)
    return products


def rule_labels(settings: Settings, rules_file: Path | None = None) -> PublishReport:
    """Run the taxonomy's keyword rules over the live products; publish ``rule_based`` labels."""
    from prodcat.training.rules import RuleEngine, load_rules

    tree = load_taxonomy(settings)
    serving = settings.serving
    vocabulary = load_vocabulary(serving.model_base, serving.classifier, tree)
    path = rules_file or settings.taxonomy.rules
    if not path.is_file():
        raise StreamsError(f"no rules file {path}: seed one with `prodcat rules seed`")
    engine = RuleEngine(load_rules(path, tree), tree)
    publisher = _Publisher(settings)
    report = PublishReport()
    now_ms = time.time_ns() // 1_000_000
    for product_id, product in sorted(live_products(settings).items()):
        ids = sorted(engine.apply(product))
        if not vocabulary.open:
            ids = [i for i in ids if vocabulary.knows(i, exclusive=False)]
        if not ids:
            report.skipped["no_rule"] += 1
            continue
        label: Label = {
            "product_id": product_id,
            "objective": "rule_based",
            "category_ids": ids,
            "source": "rules",
            "annotator": None,
            "strategy": None,
            "score": None,
            "time_taken_ms": None,
            "model_version": None,
            "labelled_at": now_ms,
        }
        problem = publisher.label(validate_label(label, vocabulary))
        if problem is not None:
            raise StreamsError(f"a rule label does not encode: {problem}")
        report.published["rule_based"] += 1
    publisher.flush()
    return report


@dataclass
class Snapshot:
    """A labelled snapshot and what it was made of."""

    items: list[LabelledProduct]
    counts: SnapshotCounts
    vocabulary: Vocabulary
    label_offsets: dict[int, int]
    #: product id → its live exclusive label (joined with a product)
    exclusive_labels: dict[str, Mapping[str, Any]] = field(default_factory=dict)


def _decoded_labels(
    values: Iterable[tuple[bytes, bytes]], settings: Settings
) -> Iterable[tuple[bytes | None, dict[str, Any] | LabelError]]:
    serde = serde_for("Label", settings.serde.registry_url, topic=settings.topics.labels)
    for key, value in values:
        try:
            yield key, serde.decode(value)
        except RegistryError:
            raise
        except SerdeError as exc:
            yield key, LabelError("decode_error", str(exc))


def materialise_snapshot(settings: Settings) -> Snapshot:
    """The live labels joined with the live products (compacted topics, read to their ends)."""
    vocabulary = vocabulary_of(settings)
    labels = read_compacted(settings.kafka, settings.topics.labels)
    products = live_products(settings)
    exclusive: dict[str, Mapping[str, Any]] = {}
    items, counts = join_snapshot(
        _decoded_labels(labels.values.items(), settings), products, vocabulary, exclusive
    )
    if labels.keyless:
        counts.invalid["key_mismatch"] += labels.keyless
        counts.labels += labels.keyless
    logger.info("snapshot: %s", counts.as_dict())
    return Snapshot(items, counts, vocabulary, labels.end_offsets, exclusive)
