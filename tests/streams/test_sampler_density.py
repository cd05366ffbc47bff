"""Information density with neighbours from a real milvus-lite store, through the sampler stage."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from prodcat.core.metrics import SamplerMetrics
from prodcat.core.settings import MilvusSettings, SamplerSettings, load_settings
from prodcat.schemas.serde import serde_for
from prodcat.serving.vector_store import ImageVector, VectorStore
from prodcat.streams.sampler_agent import build_stage
from tests.training.test_sampler import prediction

pytestmark = pytest.mark.integration

DIM = 16


def test_density_prefers_typical_products_and_falls_back_without_a_vector(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    centre = rng.standard_normal(DIM)
    rows = [
        ImageVector(
            f"c{i}", (centre + 0.1 * rng.standard_normal(DIM)).astype(np.float32), ["A"], 1, ""
        )
        for i in range(8)
    ]
    rows.append(ImageVector("outlier", (-centre).astype(np.float32), ["B"], 1, ""))
    store = VectorStore(MilvusSettings(uri=str(tmp_path / "v.db"), collection="img", dim=DIM))
    store.ensure_collection()
    store.upsert(rows)
    settings = load_settings(
        sampler=SamplerSettings(
            strategy="density",
            random_share=0.0,
            batch_size=3,
            density_neighbours=3,
            diversity_radius=0.0,
        )
    )
    registry = CollectorRegistry()
    stage = build_stage(settings, SamplerMetrics(registry), store=store)
    try:
        serde = serde_for("Prediction")
        candidates = [
            prediction("outlier", [0.5, 0.5]),  # most uncertain, but unlike anything else
            prediction("c0", [0.55, 0.45]),
            prediction("no-vector", [0.6, 0.4]),
            prediction("c1", [0.9, 0.1]),
        ]
        records = [
            SimpleNamespace(
                topic="p",
                partition=0,
                offset=i,
                key=p["product_id"].encode(),
                value=serde.encode(p),
                headers=[],
            )
            for i, p in enumerate(candidates)
        ]
        stage.consume(records, now_ms=1)
        requests = [
            serde_for("AnnotationRequest").decode(out.value or b"")
            for out in stage.close_window(now_ms=2)
        ]
    finally:
        stage.close()
    # c0: 0.9 x ~1.0; no-vector: its plain margin 0.8; outlier: 1.0 x 0 (opposite of its neighbours)
    assert [r["product_id"] for r in requests] == ["c0", "no-vector", "c1"]
    assert requests[0]["score"] == pytest.approx(0.9, abs=0.03)
    assert {r["strategy"] for r in requests} == {"density"}
    assert (
        registry.get_sample_value("prodcat_sampler_fallbacks_total", {"reason": "no_vector"}) == 1
    )
