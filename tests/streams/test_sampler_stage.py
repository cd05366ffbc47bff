"""The sampler stage without Kafka: every input accounted for, windows, rate limit, metrics."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from prodcat.core.metrics import SamplerMetrics
from prodcat.core.settings import SamplerSettings
from prodcat.schemas.serde import serde_for
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.sampler_agent import SamplerStage
from tests.training.test_sampler import SPREAD, SURE, TORN, prediction


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(offset: int, key: bytes, value: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(
        topic="products.predictions", partition=0, offset=offset, key=key, value=value,
        headers=[],
    )  # fmt: skip


def _stage(clock: Clock, **settings: Any) -> tuple[SamplerStage, CollectorRegistry]:
    registry = CollectorRegistry()
    stage = SamplerStage(
        topic="annotation.requests",
        predictions=serde_for("Prediction"),
        requests=serde_for("AnnotationRequest"),
        dead_letters=DeadLetters(
            "products.deadletter", serde_for("DeadLetter"), stage="sample", worker="w"
        ),
        settings=SamplerSettings(
            **{"random_share": 0.0, "window_s": 5, "diversity_radius": 0.0, **settings}
        ),
        metrics=SamplerMetrics(registry),
        rng=np.random.default_rng(0),
        clock=clock,
    )
    return stage, registry


def test_the_stage_accounts_for_every_input_and_emits_on_window_close() -> None:
    clock = Clock()
    stage, registry = _stage(clock, batch_size=2, max_per_minute=3)
    serde = serde_for("Prediction")
    bad = prediction("bad", TORN)
    bad["uncertainty"]["margin"] = 2.0
    stage.exclusions.apply_label(
        b"sure/exclusive", {"product_id": "sure", "objective": "exclusive"}
    )
    records = [
        _record(0, b"torn", serde.encode(prediction("torn", TORN))),
        _record(1, b"spread", serde.encode(prediction("spread", SPREAD))),
        _record(2, b"sure", serde.encode(prediction("sure", SURE))),
        _record(3, b"x", b"\x00garbage"),
        _record(4, b"bad", serde.encode(bad)),
        _record(5, b"gone", serde.encode(prediction("gone", [0.5, 0.5]))),
        _record(6, b"gone", None),
    ]
    outputs = stage.consume(records, now_ms=1)
    assert len(outputs) == len(records)
    assert [o.error_kind for o in outputs] == [
        None, None, None, "decode_error", "invalid_prediction", None, None,
    ]  # fmt: skip
    dead = serde_for("DeadLetter").decode(outputs[4].value or b"")
    assert dead["stage"] == "sample" and "margin" in dead["message"]
    assert outputs[-1].skipped == "deleted" and outputs[0].topic is None
    assert len(stage.window) == 2  # torn, spread: sure is labelled, gone was deleted
    assert not stage.window.due(clock()) and stage.window.due(clock.now + 5)

    clock.now += 5
    requests = stage.close_window(now_ms=2)
    decoded = [serde_for("AnnotationRequest").decode(r.value or b"") for r in requests]
    assert [
        (r.key, d["product_id"], d["strategy"]) for r, d in zip(requests, decoded, strict=True)
    ] == [
        (b"torn", "torn", "margin"),
        (b"spread", "spread", "margin"),
    ]
    assert {r.topic for r in requests} == {"annotation.requests"}
    assert len(stage.window) == 0

    # Next window: the requested products are pending; the rate limit leaves one token.
    more = [prediction(f"n{i}", TORN) for i in range(3)] + [prediction("torn", TORN, version=2)]
    stage.consume([_record(10 + i, b"k", serde.encode(p)) for i, p in enumerate(more)], now_ms=3)
    clock.now += 5
    assert [r.key for r in stage.close_window(now_ms=4)] == [b"n0"]

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    assert value("prodcat_sampler_requests_total", strategy="margin") == 3
    assert value("prodcat_sampler_candidates_total") == 6  # gone counted before its tombstone
    assert value("prodcat_sampler_excluded_total", reason="labelled") == 1
    assert value("prodcat_sampler_excluded_total", reason="pending") == 1
    assert value("prodcat_sampler_rate_limited_total") == 1
