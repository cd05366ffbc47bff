"""Feed-category mappings on a real broker: mined from real predictions, approved → labels for the
feed path's products that exist and for those that arrive later (the ``mappings`` worker role);
a person's label is never overwritten; a rejected path labels nothing."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from prodcat.core.ids import label_key
from prodcat.core.settings import Settings
from prodcat.schemas.records import Label
from prodcat.schemas.serde import serde_for
from prodcat.streams.backfill import backfill
from prodcat.streams.mappings import approve, decisions, mine_table, reject
from prodcat.streams.normalize import normalize_event
from prodcat.streams.readback import read_topics
from prodcat.streams.replay import dataset_events
from prodcat.streams.stage import FEED_HEADER
from tests.conftest import TrainedClassifier
from tests.streams.kafka_io import produce, with_model_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _products(data_dir: Path, count: int) -> list[dict]:
    out = []
    for event in dataset_events(data_dir, ["flipkart"], limit=count):
        out.append(normalize_event(event.value, feed="shop", key=event.key, seen_at_ms=0))
    return out


def _publish(settings: Settings, products: list[dict]) -> None:
    serde = serde_for("Product")
    records = [(p["product_id"].encode(), serde.encode(p)) for p in products]
    produce(settings, settings.topics.normalized, records, {FEED_HEADER: b"shop"})


def _mapping_labels(settings: Settings, expected: int | None = None) -> dict[bytes, dict]:
    serde = serde_for("Label")
    latest: dict[bytes, dict] = {}
    for record in read_topics(
        settings.kafka, [settings.topics.labels], expected=expected, timeout_s=90, idle_s=1.0
    ):
        latest[record.key or b""] = serde.decode(record.value or b"")
    return {k: v for k, v in latest.items() if v["source"] == "mapping"}


def test_an_approved_mapping_labels_existing_and_later_products_of_its_feed_path(
    pipeline_settings: Settings,
    run_worker,
    data_dir: Path,
    tmp_path: Path,
    trained_classifier: TrainedClassifier,
) -> None:
    settings = with_model_copy(pipeline_settings, tmp_path, trained_classifier.model_base)
    catalogue = _products(data_dir, 900)
    paths = Counter(tuple(p["category_path"]) for p in catalogue[:600])
    recurring = {tuple(p["category_path"]) for p in catalogue[600:]} & set(paths)
    chosen = max(recurring, key=lambda path: (paths[path], path))
    other = max(set(paths) - {chosen}, key=lambda path: (paths[path], path))
    existing = catalogue[:600]
    later_same = [p for p in catalogue[600:] if tuple(p["category_path"]) == chosen]
    later_other = [p for p in catalogue[600:] if tuple(p["category_path"]) != chosen][:5]
    assert later_same, "the feed path recurs among later products"
    _publish(settings, existing)
    assert backfill(settings, job="scores", rate=0, progress=False).scored == len(existing)

    # A person labelled one product of the chosen path: a mapping never overwrites it.
    of_chosen = [p for p in existing if tuple(p["category_path"]) == chosen]
    person = of_chosen[0]["product_id"]
    human: Label = {
        "product_id": person,
        "objective": "exclusive",
        "category_ids": ["c_000000000001"],
        "source": "human",
        "annotator": "ann",
        "strategy": None,
        "score": None,
        "time_taken_ms": None,
        "model_version": None,
        "labelled_at": 1,
    }
    produce(
        settings,
        settings.topics.labels,
        [(label_key(person, "exclusive"), serde_for("Label").encode(human))],
    )

    rows = mine_table(settings, min_support=5)
    by_path = {row.feed_path: (row, decision) for row, decision in rows}
    row, decision = by_path[chosen]
    assert decision is None and row.feed == "shop"
    assert row.support == len(of_chosen) and 0 < row.purity <= 1 and 0 <= row.agreement <= 1
    assert all(r.support >= 5 for r, _ in rows)
    assert [r.support for r, _ in rows] == sorted((r.support for r, _ in rows), reverse=True)

    report = approve(settings, feed="shop", feed_path=chosen, annotator="ops")
    assert report.labelled == len(of_chosen) - 1
    assert report.skipped == {"labelled by a person or an import": 1}
    assert report.decision.category_id == row.category_id
    labels = _mapping_labels(settings, expected=len(of_chosen))
    assert set(labels) == {
        label_key(p["product_id"], "exclusive") for p in of_chosen if p["product_id"] != person
    }
    assert {tuple(v["category_ids"]) for v in labels.values()} == {(row.category_id,)}
    assert {v["annotator"] for v in labels.values()} == {"ops"}

    reject(settings, feed="shop", feed_path=other)
    assert {d.status for d in decisions(settings).values()} == {"approved", "rejected"}

    # Later products: the worker role labels those of the approved path, and nothing else.
    run_worker(settings, ["mappings"], stage="mappings")
    _publish(settings, later_same + later_other)
    wanted = {
        label_key(p["product_id"], "exclusive")
        for p in [*of_chosen, *later_same]
        if p["product_id"] != person
    }
    deadline = time.monotonic() + 90
    while True:
        labels = _mapping_labels(settings)
        if set(labels) >= wanted or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert set(labels) == wanted
    everything = read_topics(settings.kafka, [settings.topics.labels], idle_s=1.0)
    serde = serde_for("Label")
    latest = {r.key: serde.decode(r.value or b"") for r in everything}
    assert latest[label_key(person, "exclusive")]["source"] == "human"
