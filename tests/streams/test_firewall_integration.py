"""The label firewall on a real broker: a retraining job holds the labels it suspects, publishes
them to ``labels.suspect`` and trains without them; a person's confirmation lets one back in.

Flipkart products of six level-2 classes, 60 labels each, 24 of them flipped to another of the
six classes (by annotator ``careless``); the job is ``run_retrain_job`` in process (a 2-epoch
logistic regression).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from prodcat.core.ids import label_key
from prodcat.core.settings import RetrainSettings, Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.acked import produce_acknowledged
from prodcat.streams.compacted import read_compacted
from prodcat.streams.retrain_job import job_dir, run_retrain_job
from prodcat.training.firewall import CONFIRMED, HELD, SuspectLabel
from prodcat.training.labels import read_snapshot
from tests.conftest import TrainedClassifier
from tests.streams.kafka_io import flipkart_products, produce, with_model_copy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUICK = "model: {family: logreg, multi_objective: false}\ntraining: {epochs: 2, batch_size: 64}\n"


def _label(product_id: str, category_id: str, annotator: str) -> tuple[bytes, bytes]:
    value = serde_for("Label").encode(
        {
            "product_id": product_id,
            "objective": "exclusive",
            "category_ids": [category_id],
            "source": "human",
            "annotator": annotator,
            "labelled_at": int(time.time() * 1000),
        }
    )
    return label_key(product_id, "exclusive"), value


def _rows(
    data_dir: Path, trained: TrainedClassifier, classes: int = 6, per_class: int = 60
) -> list[tuple[dict[str, Any], str]]:
    known = set(trained.class_ids)
    rows = [(p, c) for p, c in flipkart_products(data_dir, 3000) if c in known]
    common = [c for c, _ in Counter(c for _, c in rows).most_common(classes)]
    taken: Counter[str] = Counter()
    chosen = []
    for product, category in rows:
        if category in common and taken[category] < per_class:
            taken[category] += 1
            chosen.append((product, category))
    assert len(chosen) == classes * per_class
    return chosen


def _suspects(settings: Settings) -> dict[str, SuspectLabel]:
    live = read_compacted(settings.kafka, settings.topics.suspects)
    return {r.product_id: r for r in map(SuspectLabel.from_json, live.values.values())}


def test_a_job_holds_suspect_labels_and_trains_without_them_until_confirmed(
    pipeline_settings: Settings,
    data_dir: Path,
    tmp_path: Path,
    trained_classifier: TrainedClassifier,
) -> None:
    config = tmp_path / "quick.yaml"
    config.write_text(QUICK)
    retrain = RetrainSettings(
        config=config, work_dir=tmp_path / "retrain", epsilon=1.0, firewall_min_labels=100
    )
    settings = with_model_copy(pipeline_settings, tmp_path, trained_classifier.model_base)
    settings = settings.model_copy(update={"retrain": retrain})
    base = settings.serving.model_base
    rows = _rows(data_dir, trained_classifier)
    classes = sorted({c for _, c in rows})
    flipped: dict[str, str] = {}
    labels = []
    for index, (product, category) in enumerate(rows):
        pid = product["product_id"]
        if index % 15 == 7:  # 24 of 360: another of the six classes
            wrong = classes[(classes.index(category) + 1) % len(classes)]
            flipped[pid] = wrong
            labels.append(_label(pid, wrong, "careless"))
        else:
            labels.append(_label(pid, category, "careful"))
    products = serde_for("Product")
    produce(
        settings,
        settings.topics.normalized,
        [(p["product_id"].encode(), products.encode(p)) for p, _ in rows],
    )
    produce(settings, settings.topics.labels, labels)

    first = run_retrain_job(settings, version=2)
    assert first.outcome == "promoted", first.reason
    held = _suspects(settings)
    caught = set(held) & set(flipped)
    assert len(caught) >= 18, (len(caught), len(held))  # recall >= 75%
    assert len(held) - len(caught) <= 12  # and few correct labels held with them
    some = held[sorted(caught)[0]]
    assert (some.status, some.annotator, some.flagged_by) == (HELD, "careless", "retrain v2")
    assert some.category_id == flipped[some.product_id]
    assert some.suggested_id in classes and some.suggested_id != some.category_id
    report = json.loads((job_dir(settings.retrain.work_dir, 2) / "firewall.json").read_text())
    assert report["held"] == len(held) and report["screened"] == len(rows)
    assert report["held_by_annotator"]["careless"] == len(caught)

    # Not trained on, not in the holdout: the job's snapshot has no exclusive label for them.
    trained_on = {
        i.product_id: i.exclusive
        for i in read_snapshot(job_dir(tmp_path / "retrain", 2) / "snapshot.jsonl")
    }
    assert not set(held) & set(trained_on)
    assert len(trained_on) == len(rows) - len(held)
    card = json.loads((base / "classifier" / "2" / "model_card.json").read_text())
    assert card["data"]["exclusive_labels"] + card["metrics"]["holdout_size"] == len(trained_on)

    # A person confirms one held label: the next job trains on it and does not hold it again.
    confirmed = replace(some, status=CONFIRMED, reviewed_by="reviewer", reviewed_at=1)
    produce_acknowledged(
        settings.kafka, settings.topics.suspects, confirmed.key, confirmed.to_json(), what="review"
    )
    run_retrain_job(settings, version=3)
    after = _suspects(settings)
    assert after[some.product_id].status == CONFIRMED
    again = {pid for pid, r in after.items() if r.status == HELD}
    assert again == set(held) - {some.product_id}
    trained_on = {
        i.product_id for i in read_snapshot(job_dir(tmp_path / "retrain", 3) / "snapshot.jsonl")
    }
    assert some.product_id in trained_on and not again & trained_on
