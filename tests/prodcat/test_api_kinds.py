"""`prodcat api` follows products.predictions for the similarity search's same-kind term."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from prodcat.cli import _follow_kinds
from prodcat.core.settings import Settings, SimilaritySettings
from prodcat.schemas.serde import serde_for
from tests.streams.kafka_io import produce

pytestmark = [pytest.mark.integration]


def _prediction(pid: str, category: str, probability: float) -> dict[str, Any]:
    return {
        "product_id": pid, "content_hash": None, "model_name": "classifier", "model_version": 1,
        "exclusive_top_k": [{"category_id": category, "path": [category],
                             "probability": probability}],
        "rule_based_positives": [],
        "uncertainty": {"least_confidence": 1 - probability, "margin": probability,
                        "entropy": 0.1, "vote_entropy": None, "kl_consensus": None},
        "predicted_at": 0, "decision": None,
    }  # fmt: skip


def test_the_api_reads_predicted_kinds_from_the_predictions_topic(
    pipeline_settings: Settings,
) -> None:
    settings = pipeline_settings
    serde = serde_for("Prediction")
    topic = settings.topics.predictions
    produce(settings, topic, [
        (b"p1", serde.encode(_prediction("p1", "c_shirts", 0.8))),
        (b"p2", serde.encode(_prediction("p2", "c_shoes", 0.6))),
    ])  # fmt: skip
    vectors = SimpleNamespace(kinds=None)
    stop = _follow_kinds(settings, vectors)
    assert stop is not None and vectors.kinds is not None
    try:
        deadline = time.monotonic() + 30
        while vectors.kinds(["p1", "p2", "p3"]) != {
            "p1": ("c_shirts", 0.8),
            "p2": ("c_shoes", 0.6),
        }:
            assert time.monotonic() < deadline, vectors.kinds(["p1", "p2", "p3"])
            time.sleep(0.2)
        produce(settings, topic, [(b"p2", None)])  # deleted: no kind any more
        while "p2" in vectors.kinds(["p2"]):
            assert time.monotonic() < deadline + 30
            time.sleep(0.2)
        folders = list(Path(vectors.kinds.__self__.path).parents)[:1]
    finally:
        stop()
    assert not folders[0].exists()  # the API's view of the predictions is removed on exit

    off = settings.model_copy(update={"similarity": SimilaritySettings(kind_weight=0.0)})
    untouched = SimpleNamespace(kinds=None)
    assert _follow_kinds(off, untouched) is None and untouched.kinds is None
