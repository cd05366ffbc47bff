"""``prodcat similarity weights`` on a real broker and milvus-lite: judgements on the topic, the
products' image and title vectors in the store, the suggested weight printed."""

from __future__ import annotations

import numpy as np
import pytest

from prodcat.cli import main
from prodcat.core.settings import MilvusSettings, Settings, SimilaritySettings
from prodcat.schemas.serde import serde_for
from prodcat.serving.product_vectors import ProductVectors
from prodcat.serving.vector_store import ImageVector
from tests.streams.kafka_io import produce

pytestmark = [pytest.mark.integration]


def test_the_weight_people_judgements_support(
    pipeline_settings: Settings, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    settings = pipeline_settings.model_copy(
        update={
            "milvus": MilvusSettings(uri=str(tmp_path / "v.db"), dim=16),
            "similarity": SimilaritySettings(text_weight=0.0),  # images only, so far
        }
    )
    rng = np.random.default_rng(1)
    # Titles decide relevance here: neighbours with the query's kind of title were judged
    # relevant; images are noise.
    kinds = {"shirt": "linen shirt blue", "kettle": "electric kettle steel"}
    products = {f"{kind}{i}": kind for kind in kinds for i in range(12)}
    vectors = ProductVectors(settings.milvus, settings.similarity)
    vectors.ensure_collections()
    vectors.images.upsert(
        ImageVector(pid, rng.standard_normal(16).astype(np.float32), ["A"], 1, "")
        for pid in products
    )
    vectors.texts.upsert(
        vectors.title_rows(
            (pid, f"{kinds[kind]} {i}", ["A"], "") for i, (pid, kind) in enumerate(products.items())
        )
    )
    vectors.close()
    serde = serde_for("SimilarityJudgement")
    records = []
    for query in ("shirt0", "kettle0"):
        for neighbour, kind in products.items():
            if neighbour == query:
                continue
            record = {
                "query_product_id": query, "query_image_sha256": None,
                "neighbour_product_id": neighbour, "rank": 1, "score": 0.5,
                "relevant": kind == products[query], "category_id": None, "model_version": 1,
                "annotator": "alice", "judged_at": 1,
            }  # fmt: skip
            records.append((f"{query}/{neighbour}".encode(), serde.encode(record)))
    upload = {**record, "query_product_id": None, "query_image_sha256": "ab" * 32}
    records.append((b"upload", serde.encode(upload)))
    produce(settings, settings.topics.judgements, records)

    monkeypatch.setattr("prodcat.cli.load_settings", lambda **_: settings)
    assert main(["similarity", "weights"]) == 0
    out = capsys.readouterr().out
    assert "22 relevant and 24 irrelevant judged pairs (1 upload queries" in out
    table = {
        float(line.split()[0]): (float(line.split()[1]), line)
        for line in out.splitlines()
        if line.startswith("  ")
    }
    assert table[0.0][0] < 0.7 and "(current)" in table[0.0][1]
    (suggested,) = [w for w, (_, line) in table.items() if "suggested" in line]
    assert suggested > 0 and table[suggested][0] == 1.0
    assert out.splitlines()[-1] == f"PRODCAT_SIMILARITY__TEXT_WEIGHT={suggested:g}"
