"""The agent's per-message step without Kafka: products, dead letters, headers, never an exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from prodcat.core.metrics import WorkerMetrics
from prodcat.core.settings import TopicNames
from prodcat.schemas.serde import serde_for
from prodcat.streams.normalize_agent import SOURCE_HEADER, NormalizeStage

TOPICS = TopicNames()


@pytest.fixture(scope="module")
def stage() -> NormalizeStage:
    return NormalizeStage(TOPICS, serde_for("Product"), serde_for("DeadLetter"), worker="w1")


def _process(stage: NormalizeStage, value: bytes | None, headers=(("feed", b"shop"),)):  # type: ignore[no-untyped-def]
    return stage.process(
        key=b"k1",
        value=value,
        headers=headers,
        topic="raw",
        partition=2,
        offset=41,
        now_ms=1_700_000_000_000,
    )


def test_a_product_goes_to_the_normalized_topic(stage: NormalizeStage) -> None:
    out = _process(stage, json.dumps({"name": "Red Mug", "id": "m-1", "price": "$4.50"}).encode())
    assert out.topic == TOPICS.normalized and out.error_kind is None
    product = serde_for("Product").decode(out.value)
    assert out.key == product["product_id"].encode()
    assert product["title"] == "Red Mug" and product["feed"] == "shop"
    assert product["price"] == {"value": 4.5, "currency": "USD"}
    assert dict(out.headers) == {SOURCE_HEADER: b"raw/2/41", "feed": b"shop"}


def test_garbage_becomes_a_dead_letter_with_the_original(stage: NormalizeStage) -> None:
    out = _process(stage, b"<html>not json</html>", headers={"feed": b"shop", "x": b"1"})
    assert out.topic == TOPICS.deadletter and out.error_kind == "not_json" and out.key == b"k1"
    letter = serde_for("DeadLetter").decode(out.value)
    assert letter["original_value"] == b"<html>not json</html>"
    assert letter["original_headers"] == {"feed": b"shop", "x": b"1"}
    assert (letter["source_topic"], letter["source_partition"], letter["source_offset"]) == (
        "raw",
        2,
        41,
    )
    assert letter["stage"] == "normalize" and letter["worker"] == "w1"


def test_a_tombstone_is_an_empty_input(stage: NormalizeStage) -> None:
    out = _process(stage, None, headers=[])
    assert out.error_kind == "empty" and out.feed is None


@settings(max_examples=200, deadline=None)
@given(value=st.binary(max_size=2000), feed=st.binary(max_size=40))
def test_any_bytes_give_exactly_one_output(
    stage: NormalizeStage, value: bytes, feed: bytes
) -> None:
    out = _process(stage, value, headers=[("feed", feed)])
    assert out.topic in (TOPICS.normalized, TOPICS.deadletter)
    assert (out.error_kind is None) == (out.topic == TOPICS.normalized)


def test_feed_labels_stay_bounded() -> None:
    stage_metrics = WorkerMetrics(CollectorRegistry()).stage("normalize")
    assert stage_metrics.feed_label(None) == "unknown"
    assert stage_metrics.feed_label("bad feed name!") == "invalid"
    labels = {stage_metrics.feed_label(f"feed{i}") for i in range(500)}
    assert "other" in labels and len(labels) <= 201
