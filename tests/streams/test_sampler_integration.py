"""The sampler worker against a real Kafka broker: predictions in, annotation requests out."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

import pytest

from prodcat.core.settings import SamplerSettings, Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.readback import Record, read_topics
from prodcat.streams.worker_process import scrape_metric
from tests.streams.kafka_io import produce
from tests.training.test_sampler import prediction

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TTL_S = 3600.0


def _predictions(items: list[tuple[str, list[float]]], version: int = 1) -> list[Any]:
    serde = serde_for("Prediction")
    now = time.time_ns() // 1_000_000
    return [
        (pid.encode(), serde.encode(prediction(pid, probs, version=version, at=now)))
        for pid, probs in items
    ]


def _label(product_id: str, objective: str = "exclusive") -> tuple[bytes, bytes]:
    value = {
        "product_id": product_id,
        "objective": objective,
        "category_ids": ["c0"],
        "source": "human" if objective == "exclusive" else "rules",
        "annotator": None,
        "strategy": None,
        "score": None,
        "time_taken_ms": None,
        "model_version": None,
        "labelled_at": 0,
    }
    return f"{product_id}/{objective}".encode(), serde_for("Label").encode(value)


def _request(product_id: str, requested_at: int) -> tuple[bytes, bytes]:
    value = {
        "product_id": product_id,
        "strategy": "margin",
        "score": 1.0,
        "suggestions": [],
        "model_name": "clf",
        "model_version": 1,
        "requested_at": requested_at,
    }
    return product_id.encode(), serde_for("AnnotationRequest").encode(value)


def _read(settings: Settings, expected: int) -> list[Record]:
    return read_topics(
        settings.kafka,
        [settings.topics.annotation_requests, settings.topics.deadletter],
        expected=expected,
        timeout_s=60,
    )


def test_predictions_in_annotation_requests_out(pipeline_settings: Settings, run_worker) -> None:
    sampler = SamplerSettings(
        strategy="margin",
        random_share=0.4,
        batch_size=5,
        window_s=2.0,
        max_per_minute=6,  # 6 at once, then one every 10 s
        pending_ttl_s=TTL_S,
        diversity_radius=0.0,  # synthetic predictions repeat distributions; tested in test_sampler
    )
    settings = pipeline_settings.model_copy(update={"sampler": sampler})
    topics = settings.topics
    start_ms = time.time_ns() // 1_000_000
    # State from before the worker starts: labels (human, and rule-based ones that do not count)
    # and open requests (one expired), to be rebuilt from Kafka on start-up.
    labelled = [f"L{i}" for i in range(5)]
    pending = [f"P{i}" for i in range(3)]
    produce(settings, topics.labels, [_label(p) for p in labelled] + [_label("R1", "rule_based")])
    old_requests = [_request(p, start_ms - 1000) for p in pending]
    old_requests.append(_request("O1", start_ms - int(3 * TTL_S * 1000)))
    produce(settings, topics.annotation_requests, old_requests)
    proc = run_worker(settings, ["sample"], stage="sample")
    started = time.monotonic()

    # The most uncertain products are labelled, pending or deleted: none may be requested.
    tie = [0.5, 0.5]
    wave1 = _predictions(
        [(p, tie) for p in [*labelled, *pending, "gone"]]
        + [("R1", [0.505, 0.495]), ("O1", [0.505, 0.495])]
        + [(f"F{i:02d}", [0.52 + i / 100, 0.48 - i / 100]) for i in range(20)]
    )
    garbage = [(b"bad-1", b"not avro at all"), (b"bad-2", None)]  # bad-2: a harmless tombstone
    invalid = prediction("bad-3", tie)
    invalid["uncertainty"]["margin"] = 7.0
    garbage.append((b"bad-3", serde_for("Prediction").encode(invalid)))
    produce(settings, topics.predictions, [*wave1, (b"gone", None), *garbage])

    outputs = _read(settings, expected=len(old_requests) + 5 + 2)
    requests_serde = serde_for("AnnotationRequest")
    new = [
        (r, requests_serde.decode(r.value or b""))
        for r in outputs
        if r.topic == topics.annotation_requests
    ]
    new = [(r, d) for r, d in new if d["requested_at"] >= start_ms]
    assert len(new) == 5
    assert all(r.key == d["product_id"].encode() for r, d in new)
    by_strategy = {d["product_id"]: d["strategy"] for _, d in new}
    assert sorted(by_strategy.values()) == ["margin"] * 3 + ["random"] * 2  # round(5 * 0.4)
    assert {p for p, s in by_strategy.items() if s == "margin"} == {"R1", "O1", "F00"}
    assert not set(by_strategy) & {*labelled, *pending, "gone"}
    first = next(d for _, d in new if d["product_id"] == "R1")
    assert first["suggestions"][0]["category_id"] == "c0" and first["model_version"] == 1
    dead = [serde_for("DeadLetter").decode(r.value or b"") for r in outputs if r.value and
            r.topic == topics.deadletter]  # fmt: skip
    assert sorted((d["original_key"], d["error_kind"]) for d in dead) == [
        (b"bad-1", "decode_error"),
        (b"bad-3", "invalid_prediction"),
    ]
    assert all(d["stage"] == "sample" and d["message"] for d in dead)

    # A label arrives while running; then a new model version re-predicts everything seen so far.
    produce(settings, topics.labels, [_label("H1")])
    time.sleep(1.0)
    wave2 = _predictions(
        [(p, tie) for p in [*by_strategy, *labelled, *pending, "H1"]]
        + [(f"G{i:02d}", [0.53 + i / 100, 0.47 - i / 100]) for i in range(10)],
        version=2,
    )
    produce(settings, topics.predictions, wave2)
    outputs = _read(settings, expected=len(old_requests) + 5 + 2 + 1)
    time.sleep(sampler.window_s + 1.0)  # nothing more may come: the rate limit allows one token
    outputs = read_topics(settings.kafka, [topics.annotation_requests], timeout_s=10)
    elapsed = time.monotonic() - started
    decoded = [requests_serde.decode(r.value or b"") for r in outputs]
    emitted = [d for d in decoded if d["requested_at"] >= start_ms]
    assert len(emitted) <= 6 + elapsed / 10
    first_window = min(d["requested_at"] for d in emitted)
    second = [d for d in emitted if d["requested_at"] > first_window]
    assert [d["product_id"] for d in second] == ["G00"]  # k = 1: no random pick (round(0.4) = 0)
    assert second[0]["model_version"] == 2
    ids = [d["product_id"] for d in emitted]
    assert len(ids) == len(set(ids))  # nothing requested twice

    host, port = settings.worker.metrics_host, settings.worker.metrics_port

    def metric(name: str, **labels: str) -> float:
        if labels:
            return scrape_metric(host, port, name, **labels)
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
            lines = resp.read().decode().splitlines()
        return sum(float(line.split()[1]) for line in lines if line.startswith(name + " "))

    assert metric("prodcat_sampler_requests_total", strategy="random") == 2
    assert metric("prodcat_sampler_requests_total", strategy="margin") == 4
    assert metric("prodcat_sampler_rate_limited_total") >= 4
    assert metric("prodcat_sampler_excluded_total", reason="labelled") == 2 * len(labelled) + 1
    assert metric("prodcat_sampler_excluded_total", reason="pending") == 2 * len(pending) + 5
    assert metric("prodcat_dead_letters_total", stage="sample") == 2
    assert metric("prodcat_events_in_total", stage="sample") == len(wave1) + 4 + len(wave2)
    assert metric("prodcat_sampler_state_records_total", outcome="ok") >= 6 + 4 + 5 + 1
    assert proc.poll() is None


def test_backed_off_and_abstained_predictions_are_requested_first(
    pipeline_settings: Settings, run_worker
) -> None:
    """The model could not name a category at its precision target for three products: they are
    requested before six products whose decided predictions are more uncertain by margin."""
    sampler = SamplerSettings(
        strategy="margin",
        random_share=0.0,
        batch_size=3,
        window_s=2.0,
        max_per_minute=60,
        pending_ttl_s=TTL_S,
        diversity_radius=0.0,
    )
    settings = pipeline_settings.model_copy(update={"sampler": sampler})
    serde = serde_for("Prediction")
    now = time.time_ns() // 1_000_000

    def decided(pid: str, probs: list[float], kind: str) -> tuple[bytes, bytes]:
        record = prediction(pid, probs, at=now)
        path = ["C0"] if kind == "backed_off" else []
        record["decision"] = {
            "kind": kind,
            "category_id": None if kind == "abstained" else ("c0" if kind == "leaf" else "p0"),
            "path": path if kind != "leaf" else ["C0"],
            "probability": probs[0],
            "target": 0.95,
        }
        return pid.encode(), serde.encode(record)

    records = [decided(f"T{i}", [0.5, 0.5], "leaf") for i in range(6)]  # the most uncertain
    records += [decided("B1", [0.8, 0.2], "backed_off"), decided("B2", [0.85, 0.15], "backed_off")]
    records += [decided("A1", [0.7, 0.3], "abstained")]
    proc = run_worker(settings, ["sample"], stage="sample")
    produce(settings, settings.topics.predictions, records)
    outputs = read_topics(
        settings.kafka, [settings.topics.annotation_requests], expected=3, timeout_s=60
    )
    requests = {
        d["product_id"]: d
        for d in (serde_for("AnnotationRequest").decode(r.value) for r in outputs)
    }
    assert set(requests) == {"B1", "B2", "A1"}
    assert requests["B1"]["decision"] == "backed_off" and requests["B1"]["partial_path"] == ["C0"]
    assert requests["A1"]["decision"] == "abstained" and requests["A1"]["partial_path"] == []
    assert all(d["strategy"] == "margin" for d in requests.values())
    assert proc.poll() is None
