"""Serving metrics against the real components: model calls (a SavedModel in process), the
classify stage's confidence / version / age series, and Milvus operations (milvus-lite)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from prodcat.core.metrics import MilvusMetrics, ModelMetrics
from prodcat.core.model_store import load_card
from prodcat.core.settings import MilvusSettings, ServingSettings, load_settings
from prodcat.schemas.serde import serde_for
from prodcat.serving.backends import MeteredBackend, create_backend
from prodcat.serving.exceptions import (
    BackendUnavailableError,
    ModelSignatureError,
    VectorStoreError,
)
from prodcat.serving.vector_store import ImageVector, VectorStore
from prodcat.streams.classify_agent import build_stage
from prodcat.streams.normalize import normalize_event
from prodcat.training.inputs import model_inputs

pytestmark = pytest.mark.integration

TITLES = ["Sonata Analog Watch - For Men", "Alisha Solid Women's Cycling Shorts", "Gold Ring"]


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_model_calls_are_timed_and_failures_counted_by_kind(trained_classifier, tmp_path: Path):
    registry = CollectorRegistry()
    metrics = ModelMetrics(registry)
    serving = ServingSettings(model_base=trained_classifier.model_base, poll_interval_s=60)
    backend = create_backend(serving, "classifier", observe=metrics.call)
    missing = create_backend(
        ServingSettings(model_base=tmp_path, poll_interval_s=60), "classifier", observe=metrics.call
    )
    try:
        assert isinstance(backend, MeteredBackend) and backend.version == 1  # delegated
        inputs = model_inputs([{"title": t, "brand": "", "description": ""} for t in TITLES])
        assert backend.predict(inputs).version == 1
        labels = {"model": "classifier", "backend": "inprocess"}
        assert _value(registry, "prodcat_model_request_seconds_count", **labels) == 1
        assert _value(registry, "prodcat_model_request_seconds_sum", **labels) > 0  # type: ignore[operator]
        with pytest.raises(ModelSignatureError):
            backend.predict({"no_such_input": np.array([b"x"], dtype=object)})
        with pytest.raises(BackendUnavailableError):
            missing.predict(inputs)
        assert (
            _value(registry, "prodcat_model_request_errors_total", kind="signature", **labels) == 1
        )
        assert (
            _value(registry, "prodcat_model_request_errors_total", kind="unavailable", **labels)
            == 1
        )
        assert _value(registry, "prodcat_model_request_seconds_count", **labels) == 3
    finally:
        backend.close()
        missing.close()
    # Without an observer the backend is the plain one.
    plain = create_backend(serving, "classifier")
    assert not isinstance(plain, MeteredBackend)
    plain.close()


def test_the_classify_stage_reports_confidence_version_and_training_time(trained_classifier):
    registry = CollectorRegistry()
    settings = load_settings(
        serving=ServingSettings(model_base=trained_classifier.model_base, poll_interval_s=60)
    )
    stage = build_stage(settings, metrics=ModelMetrics(registry))
    products = serde_for("Product")
    records = [
        SimpleNamespace(
            topic="products.normalized", partition=0, offset=i, key=b"k", headers=[],
            value=products.encode(
                normalize_event(b'{"title": "%s"}' % t.encode(), feed="f", key=None, seen_at_ms=0)
            ),
        )
        for i, t in enumerate(TITLES * 4)
    ]  # fmt: skip
    try:
        outputs = stage.process(records, now_ms=1)
    finally:
        stage.backend.close()
    predictions = [serde_for("Prediction").decode(o.value or b"") for o in outputs]
    top1 = [p["exclusive_top_k"][0]["probability"] for p in predictions]
    model = {"model": "classifier"}
    assert _value(registry, "prodcat_prediction_confidence_count", **model) == len(records)
    assert _value(registry, "prodcat_prediction_confidence_sum", **model) == pytest.approx(
        sum(top1)
    )
    under_half = sum(p <= 0.5 for p in top1)
    assert _value(registry, "prodcat_prediction_confidence_bucket", le="0.5", **model) == under_half
    assert _value(registry, "prodcat_model_version", **model) == 1
    card = load_card(trained_classifier.model_base / "classifier" / "1")
    assert (
        _value(registry, "prodcat_model_trained_timestamp_seconds", **model) == card["exported_at"]
    )
    calls = _value(registry, "prodcat_model_request_seconds_count", backend="inprocess", **model)
    assert calls is not None and calls >= 1


def test_milvus_operations_are_timed_and_failures_counted(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = MilvusMetrics(registry)
    settings = MilvusSettings(uri=str(tmp_path / "m.db"), dim=8, collection="metrics_test")
    store = VectorStore(settings, observe=metrics.operation)
    rng = np.random.default_rng(0)
    rows = [
        ImageVector(f"p{i}", rng.standard_normal(8).astype(np.float32), ["A", "B"], 1, "u")
        for i in range(5)
    ]
    try:
        store.ensure_collection()
        assert store.upsert(rows) == 5
        assert store.search(rows[0].vector, 3)[0].product_id == "p0"
        assert store.get_vector("p1") is not None
        assert store.delete(["p2"]) == 1
        for operation in ("upsert", "search", "get", "delete"):
            assert _value(registry, "prodcat_milvus_seconds_count", operation=operation) == 1
        store.drop()
        with pytest.raises(VectorStoreError):
            store.search(rows[0].vector, 3)
        assert _value(registry, "prodcat_milvus_seconds_count", operation="search") == 2
        failed = [
            s
            for metric in registry.collect()
            if metric.name == "prodcat_milvus_errors"
            for s in metric.samples
            if s.name.endswith("_total")
        ]
        assert [(s.labels["operation"], s.value) for s in failed] == [("search", 1.0)]
        assert failed[0].labels["kind"].endswith("Error")
    finally:
        store.close()
