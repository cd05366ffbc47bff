"""The drift stage without Kafka: every input accounted for, references per version, PSI gauges."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from prodcat.core.metrics import DriftMetrics
from prodcat.core.settings import DriftSettings
from prodcat.schemas.serde import serde_for
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.drift_agent import DriftStage, ReferenceStore
from prodcat.training.drift import DriftReference, build_reference

CLASSES = ["c_a", "c_b", "c_c", "c_d"]


def prediction(
    product_id: str, category: str, confidence: float, *, model: str = "clf", version: int = 1
) -> dict[str, Any]:
    """A Prediction whose top-1 exclusive category is ``category`` with ``confidence``."""
    rest = [c for c in CLASSES if c != category][:2]
    runner_up = (1.0 - confidence) / 3  # below the top-1 for any confidence over 1/4
    return {
        "product_id": product_id,
        "content_hash": None,
        "model_name": model,
        "model_version": version,
        "exclusive_top_k": [
            {"category_id": category, "path": [category], "probability": confidence}
        ]
        + [{"category_id": c, "path": [c], "probability": runner_up} for c in rest],
        "rule_based_positives": [],
        "uncertainty": {
            "least_confidence": 1.0 - confidence,
            "margin": confidence - runner_up,
            "entropy": 0.5,
            "vote_entropy": None,
            "kl_consensus": None,
        },
        "predicted_at": 0,
    }


def reference(n: int = 2000, seed: int = 0) -> DriftReference:
    """Categories a:b:c:d = 4:3:2:1, confidences spread over 0.4-1.0."""
    rng = np.random.default_rng(seed)
    top = rng.choice(len(CLASSES), size=n, p=[0.4, 0.3, 0.2, 0.1])
    conf = rng.uniform(0.4, 1.0, size=n)
    probs = np.full((n, len(CLASSES)), 0.0)
    for row, (t, c) in enumerate(zip(top, conf, strict=True)):
        probs[row] = (1.0 - c) / (len(CLASSES) - 1)
        probs[row, t] = c
    return build_reference(probs, CLASSES, source="test")


def matching(count: int, seed: int, **kwargs: Any) -> list[dict[str, Any]]:
    """Predictions drawn like the reference."""
    rng = np.random.default_rng(seed)
    top = rng.choice(len(CLASSES), size=count, p=[0.4, 0.3, 0.2, 0.1])
    conf = rng.uniform(0.4, 1.0, size=count)
    return [
        prediction(f"p{seed}-{i}", CLASSES[t], float(c), **kwargs)
        for i, (t, c) in enumerate(zip(top, conf, strict=True))
    ]


def shifted(count: int, seed: int, **kwargs: Any) -> list[dict[str, Any]]:
    """Mostly the rarest category, and unsure."""
    rng = np.random.default_rng(seed)
    return [
        prediction(
            f"s{seed}-{i}", "c_d" if i % 5 else "c_a", float(rng.uniform(0.3, 0.5)), **kwargs
        )
        for i in range(count)
    ]


def write_reference(model_base: Path, model: str, version: int, ref: DriftReference) -> None:
    version_dir = model_base / model / str(version)
    version_dir.mkdir(parents=True)
    (version_dir / "model_card.json").write_text("{}")
    ref.write(version_dir)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _records(values: list[bytes | None], start: int = 0) -> list[SimpleNamespace]:
    return [
        SimpleNamespace(
            topic="products.predictions", partition=0, offset=start + i, key=b"k", value=value,
            headers=[("feed", b"f")],
        )
        for i, value in enumerate(values)
    ]  # fmt: skip


def _stage(model_base: Path, clock: Clock, **settings: Any) -> tuple[DriftStage, CollectorRegistry]:
    registry = CollectorRegistry()
    stage = DriftStage(
        predictions=serde_for("Prediction"),
        dead_letters=DeadLetters(
            "products.deadletter", serde_for("DeadLetter"), stage="drift", worker="w"
        ),
        references=ReferenceStore(model_base, clock=clock),
        settings=DriftSettings(
            **{"window_predictions": 500, "min_window": 100, "window_s": 60, **settings}
        ),
        metrics=DriftMetrics(registry),
        clock=clock,
    )
    return stage, registry


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_psi_per_window_against_the_versions_reference(tmp_path: Path) -> None:
    write_reference(tmp_path, "clf", 1, reference())
    clock = Clock()
    stage, registry = _stage(tmp_path, clock)
    serde = serde_for("Prediction")
    out = stage.process(_records([serde.encode(p) for p in matching(500, seed=1)]), 0)
    assert len(out) == 500 and all(o.topic is None and o.error_kind is None for o in out)
    low = _value(registry, "prodcat_drift_psi", model="clf", signal="category")
    assert low is not None and low < 0.05
    assert _value(registry, "prodcat_drift_psi", model="clf", signal="confidence") < 0.1  # type: ignore[operator]
    assert _value(registry, "prodcat_drift_window_predictions", model="clf") == 500
    assert _value(registry, "prodcat_drift_window_version", model="clf") == 1

    # A shifted stream: a window of 300 closes by age (over min_window, under the size).
    stage.process(_records([serde.encode(p) for p in shifted(300, seed=2)]), 0)
    assert _value(registry, "prodcat_drift_windows_total", model="clf") == 1
    clock.now += 61
    stage.process([], 0)
    assert _value(registry, "prodcat_drift_windows_total", model="clf") == 2
    assert _value(registry, "prodcat_drift_psi", model="clf", signal="category") > 0.25  # type: ignore[operator]
    assert _value(registry, "prodcat_drift_psi", model="clf", signal="confidence") > 0.25  # type: ignore[operator]
    assert _value(registry, "prodcat_drift_window_predictions", model="clf") == 300


def test_bad_records_are_dead_lettered_and_the_rest_counted(tmp_path: Path) -> None:
    write_reference(tmp_path, "clf", 1, reference())
    stage, registry = _stage(tmp_path, Clock())
    serde = serde_for("Prediction")
    no_top = prediction("x", "c_a", 0.9)
    no_top["exclusive_top_k"] = []
    too_sure = prediction("y", "c_a", 1.5)
    escaping = prediction("z", "c_a", 0.9, model="../../etc")
    values = [
        b"not avro",
        serde.encode(no_top),
        serde.encode(too_sure),
        serde.encode(escaping),
        None,  # a deleted product
        serde.encode(prediction("ok", "c_a", 0.9)),
        serde.encode(prediction("v9", "c_a", 0.9, version=9)),  # no reference for v9
        serde.encode(prediction("u", "c_a", 0.9, model="unknown_model")),
    ]
    out = stage.process(_records(values), 0)
    assert len(out) == len(values)
    dead = serde_for("DeadLetter")
    kinds = [o.error_kind for o in out]
    assert kinds[:4] == ["decode_error", "invalid_prediction", "invalid_prediction",
                         "invalid_prediction"]  # fmt: skip
    for o, original in zip(out[:4], values[:4], strict=True):
        letter = dead.decode(o.value or b"")
        assert letter["original_value"] == original and letter["stage"] == "drift"
        assert o.topic == "products.deadletter"
    assert [o.skipped for o in out[4:]] == ["deleted", None, "no_reference", "no_reference"]
    assert _value(registry, "prodcat_drift_reference_missing_total", model="clf") == 1
    assert _value(registry, "prodcat_drift_reference_missing_total", model="unknown") == 1
    # v9 is the newest version now: version 1 is stale.
    [stale] = stage.process(_records([serde.encode(prediction("old", "c_a", 0.9))]), 0)
    assert stale.skipped == "stale_version"


def test_a_new_version_uses_its_own_reference_and_ends_the_old_series(tmp_path: Path) -> None:
    write_reference(tmp_path, "clf", 1, reference())
    # Version 2 predicts mostly c_d, with little confidence: its own reference says so.
    shifted_probs = np.full((400, 4), 0.2)
    shifted_probs[:, 3] = np.linspace(0.3, 0.5, 400)
    write_reference(tmp_path, "clf", 2, build_reference(shifted_probs, CLASSES, source="v2"))
    stage, registry = _stage(tmp_path, Clock(), window_predictions=200, min_window=50)
    serde = serde_for("Prediction")
    stage.process(_records([serde.encode(p) for p in matching(120, seed=3)]), 0)
    v2 = [prediction(f"n{i}", "c_d", 0.3 + 0.2 * i / 200, version=2) for i in range(200)]
    stage.process(_records([serde.encode(p) for p in v2]), 0)
    # v1's partial window (120 ≥ min_window) was scored when v2 appeared, then v2's full one.
    assert _value(registry, "prodcat_drift_windows_total", model="clf") == 2
    assert _value(registry, "prodcat_drift_window_version", model="clf") == 2
    assert _value(registry, "prodcat_drift_psi", model="clf", signal="category") < 0.05  # type: ignore[operator]
    # Version 3 has no reference: the PSI series of version 2 ends, the miss is counted.
    stage.process(_records([serde.encode(prediction("w", "c_a", 0.9, version=3))]), 0)
    assert _value(registry, "prodcat_drift_psi", model="clf", signal="category") is None
    assert _value(registry, "prodcat_drift_reference_missing_total", model="clf") == 1
