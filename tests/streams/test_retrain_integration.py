"""The learning loop on a real broker: labels → trigger (single flight) → job → gate → hot swap.

A worker runs the ``retrain`` role (and ``classify`` in the loop test); the job is the real
``prodcat retrain run`` subprocess training a 2-epoch logistic regression on the snapshot.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from prodcat.core.ids import label_key
from prodcat.core.settings import RetrainSettings, ServingSettings, Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.readback import Record, read_topics
from prodcat.streams.worker_process import scrape_metric, wait_metric
from prodcat.training.drift import DriftReference
from tests.conftest import TrainedClassifier
from tests.streams.kafka_io import flipkart_products, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUICK = "model: {family: logreg, multi_objective: false}\ntraining: {epochs: 2, batch_size: 64}\n"


def _label(product_id: str, category_id: str) -> tuple[bytes, bytes]:
    value = serde_for("Label").encode(
        {
            "product_id": product_id,
            "objective": "exclusive",
            "category_ids": [category_id],
            "source": "human",
            "labelled_at": int(time.time() * 1000),
        }
    )
    return label_key(product_id, "exclusive"), value


def _setup(
    settings: Settings,
    tmp_path: Path,
    trained: TrainedClassifier,
    **retrain: Any,
) -> Settings:
    base = tmp_path / "models"
    shutil.copytree(trained.model_base, base)
    config = tmp_path / "quick.yaml"
    config.write_text(retrain.pop("config_text", QUICK))
    return settings.model_copy(
        update={
            "serving": ServingSettings(model_base=base, poll_interval_s=0.5, batch_size=64),
            "retrain": RetrainSettings(
                config=config,
                work_dir=tmp_path / "retrain",
                check_interval_s=0.5,
                max_wait_s=600,
                job_timeout_s=240,
                **retrain,
            ),
        }
    )


def _labelled(
    data_dir: Path, trained: TrainedClassifier, start: int, count: int
) -> list[tuple[dict[str, Any], str]]:
    known = set(trained.class_ids)
    rows = [(p, c) for p, c in flipkart_products(data_dir, 3000) if c in known]
    return rows[start : start + count]


def _publish(settings: Settings, rows: list[tuple[dict[str, Any], str]]) -> None:
    products = serde_for("Product")
    produce(
        settings,
        settings.topics.normalized,
        [(p["product_id"].encode(), products.encode(p)) for p, _ in rows],
    )
    produce(settings, settings.topics.labels, [_label(p["product_id"], c) for p, c in rows])


def _events(settings: Settings, expected: int, timeout_s: float = 30) -> list[dict[str, Any]]:
    serde = serde_for("ModelEvent")
    records = read_topics(
        settings.kafka, [settings.topics.model_events], expected=expected, timeout_s=timeout_s
    )
    return [serde.decode(r.value or b"") for r in records]


def _metric(settings: Settings, name: str, **labels: str) -> float:
    return scrape_metric(settings.worker.metrics_host, settings.worker.metrics_port, name, **labels)


def _wait(proc: Any, settings: Settings, name: str, at_least: float, **labels: str) -> float:
    worker = settings.worker
    return wait_metric(
        proc, worker.metrics_host, worker.metrics_port, name, at_least, timeout_s=240, **labels
    )


def test_labels_trigger_one_job_that_is_promoted_and_served(
    pipeline_settings: Settings,
    run_worker,
    data_dir: Path,
    tmp_path: Path,
    trained_classifier: TrainedClassifier,
) -> None:
    settings = _setup(
        pipeline_settings, tmp_path, trained_classifier, min_new_labels=300, epsilon=1.0
    )
    burst = _labelled(data_dir, trained_classifier, 0, 300)
    _publish(settings, burst)
    bad = [
        (b"garbage/exclusive", b"not avro"),
        _label("p-unknown", "c_000000000000"),  # unknown category
    ]
    produce(settings, settings.topics.labels, bad)
    proc = run_worker(settings, ["classify", "retrain"], stage="retrain")

    _wait(proc, settings, "prodcat_retrain_jobs_started_total", 1, model="classifier")
    late = _labelled(data_dir, trained_classifier, 300, 50)  # arrive while the job runs
    _publish(settings, late)
    _wait(proc, settings, "prodcat_retrain_jobs_finished_total", 1, model="classifier")
    _wait(proc, settings, "prodcat_labels_consumed_total", len(burst) + len(late))

    # Single flight: one job for the burst; the late labels wait for the next one.
    assert _metric(settings, "prodcat_retrain_jobs_started_total", model="classifier") == 1
    finished = "prodcat_retrain_jobs_finished_total"
    assert _metric(settings, finished, model="classifier", outcome="promoted") == 1
    assert _metric(settings, "prodcat_retrain_pending_labels", model="classifier") == len(late)
    # Every label is counted or dead-lettered with its reason.
    assert _metric(settings, "prodcat_labels_consumed_total") == len(burst) + len(late)
    assert _metric(settings, "prodcat_labels_invalid_total", reason="decode_error") == 1
    assert _metric(settings, "prodcat_labels_invalid_total", reason="unknown_category") == 1
    letters = serde_for("DeadLetter")
    dead = [
        letters.decode(r.value or b"")
        for r in read_topics(settings.kafka, [settings.topics.deadletter], expected=2)
    ]
    assert sorted((d["stage"], d["error_kind"]) for d in dead) == [
        ("labels", "decode_error"),
        ("labels", "unknown_category"),
    ]

    events = _events(settings, expected=3)
    assert [e["event"] for e in events] == ["trained", "evaluated", "promoted"]
    assert {e["model_version"] for e in events} == {2}
    promoted = events[-1]
    assert promoted["baseline_version"] == 1
    assert 0.0 <= promoted["metrics"]["holdout_accuracy"] <= 1.0
    assert "serving_holdout_accuracy" in promoted["metrics"]
    assert (settings.serving.model_base / "classifier" / "2" / "saved_model.pb").is_file()
    reference = DriftReference.read(settings.serving.model_base / "classifier" / "2")
    assert reference.source == "retrain holdout" and reference.size > 0

    # The classify agent in the same worker swaps to version 2.
    time.sleep(2.0)
    fresh = [p for p, _ in flipkart_products(data_dir, 3000)[2000:2040]]
    products = serde_for("Product")
    produce(
        settings,
        settings.topics.normalized,
        [(p["product_id"].encode(), products.encode(p)) for p in fresh],
    )
    keys = {p["product_id"].encode() for p in fresh}
    predictions = serde_for("Prediction")
    deadline = time.monotonic() + 60
    versions: Counter[int] = Counter()
    while time.monotonic() < deadline and sum(versions.values()) < len(keys):
        records: list[Record] = read_topics(
            settings.kafka, [settings.topics.predictions], expected=None, timeout_s=10
        )
        latest = {r.key: r for r in records if r.key in keys and r.value}
        versions = Counter(
            predictions.decode(r.value or b"")["model_version"] for r in latest.values()
        )
    assert versions == {2: len(keys)}
    # The classify stage's model series follow the swap.
    assert _metric(settings, "prodcat_model_version", model="classifier") == 2
    card = json.loads(
        (settings.serving.model_base / "classifier" / "2" / "model_card.json").read_text()
    )
    trained = _metric(settings, "prodcat_model_trained_timestamp_seconds", model="classifier")
    assert trained == card["exported_at"]
    assert _metric(settings, "prodcat_prediction_confidence_count", model="classifier") >= len(keys)


def test_a_worse_candidate_is_rejected_and_kept_for_inspection(
    pipeline_settings: Settings,
    run_worker,
    data_dir: Path,
    tmp_path: Path,
    trained_classifier: TrainedClassifier,
) -> None:
    settings = _setup(
        pipeline_settings, tmp_path, trained_classifier, min_new_labels=60, epsilon=0.0
    )
    _publish(settings, _labelled(data_dir, trained_classifier, 0, 80))
    proc = run_worker(settings, ["retrain"], stage="retrain")
    _wait(proc, settings, "prodcat_retrain_jobs_finished_total", 1, model="classifier")

    events = _events(settings, expected=3)
    assert [e["event"] for e in events] == ["trained", "evaluated", "rejected"]
    rejected = events[-1]
    assert rejected["baseline_version"] == 1
    assert "worse than serving" in rejected["reason"]
    assert rejected["metrics"]["holdout_accuracy"] < rejected["metrics"]["serving_holdout_accuracy"]
    kept = Path(rejected["artifact_uri"])
    assert kept.is_relative_to(settings.retrain.work_dir) and (kept / "saved_model.pb").is_file()
    assert not (
        settings.serving.model_base / "classifier" / str(rejected["model_version"])
    ).exists()
    assert _metric(settings, "prodcat_retrain_last_decision", model="classifier") == 0
    finished = "prodcat_retrain_jobs_finished_total"
    assert _metric(settings, finished, model="classifier", outcome="rejected") == 1


def test_a_failing_job_is_published_as_rejected_and_the_trigger_goes_on(
    pipeline_settings: Settings,
    run_worker,
    data_dir: Path,
    tmp_path: Path,
    trained_classifier: TrainedClassifier,
) -> None:
    settings = _setup(
        pipeline_settings,
        tmp_path,
        trained_classifier,
        min_new_labels=5,
        config_text="training: {no_such_option: 1}\n",
    )
    _publish(settings, _labelled(data_dir, trained_classifier, 0, 10))
    proc = run_worker(settings, ["retrain"], stage="retrain")
    _wait(
        proc,
        settings,
        "prodcat_retrain_jobs_finished_total",
        1,
        model="classifier",
        outcome="failed",
    )
    [event] = _events(settings, expected=1)
    assert event["event"] == "rejected" and "exit code" in event["reason"]
    assert _metric(settings, "prodcat_retrain_last_decision", model="classifier") == -1
    # The failed job's labels were committed: more labels start exactly one more job.
    _publish(settings, _labelled(data_dir, trained_classifier, 10, 5))
    _wait(proc, settings, "prodcat_retrain_jobs_finished_total", 2, model="classifier")
    assert _metric(settings, "prodcat_retrain_jobs_started_total", model="classifier") == 2
