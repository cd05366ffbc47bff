"""The similarity HTTP API over a real milvus-lite store and the real image embedder SavedModel."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from prodcat.core.ids import path_id
from prodcat.core.settings import ApiSettings, MilvusSettings
from prodcat.serving.api import create_api
from prodcat.serving.backends import InProcessBackend
from prodcat.serving.subtrees import SubtreeIds
from prodcat.serving.vector_store import ImageVector, VectorStore
from prodcat.training.taxonomy import CategoryTree

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def catalogue(data_dir: Path) -> list[dict[str, str]]:
    with (data_dir / "myntra" / "labels.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows[::40]  # ~66 products over many article types


def _path(row: dict[str, str]) -> list[str]:
    return [row["masterCategory"], row["subCategory"], row["articleType"]]


def _numbered_taxonomy(catalogue: list[dict[str, str]], folder: Path) -> CategoryTree:
    """The catalogue's paths as a Google-format taxonomy file with numeric ids (100, 101, ...)."""
    prefixes = sorted({tuple(_path(r)[:depth]) for r in catalogue for depth in (1, 2, 3)})
    prefixes.sort(key=len)
    lines = [f"{100 + i} - {' > '.join(prefix)}" for i, prefix in enumerate(prefixes)]
    (folder / "taxonomy.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return CategoryTree.from_google_taxonomy(folder / "taxonomy.txt")


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory,
    embedder_model_base: Path,
    data_dir: Path,
    catalogue: list[dict[str, str]],
) -> Iterator[TestClient]:
    embedder = InProcessBackend(embedder_model_base, "image_embedder", poll_interval_s=None)
    store = VectorStore(MilvusSettings(uri=str(tmp_path_factory.mktemp("milvus") / "v.db")))
    store.ensure_collection()
    images = data_dir / "myntra" / "images"
    data = np.array([(images / row["filename"]).read_bytes() for row in catalogue], dtype=object)
    vectors = embedder.predict({"image_bytes": data}).outputs["embedding"]
    store.upsert(
        ImageVector(
            product_id=f"m{row['id']}",
            vector=vectors[i],
            category_path=[row["masterCategory"], row["subCategory"], row["articleType"]],
            model_version=1,
            image_url=(images / row["filename"]).as_uri(),
        )
        for i, row in enumerate(catalogue)
    )
    app = create_api(
        ApiSettings(max_upload_bytes=64 * 1024),
        store=store,
        embedder=embedder,
        subtrees=SubtreeIds(lambda: _numbered_taxonomy(catalogue, tmp_path_factory.mktemp("tx"))),
    )
    with TestClient(app) as test_client:
        yield test_client
    store.close()
    embedder.close()


def test_health(client: TestClient, catalogue: list[dict[str, str]]) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "vectors": len(catalogue)}


def test_neighbours_of_a_product_start_with_itself(
    client: TestClient, catalogue: list[dict[str, str]]
) -> None:
    pid = f"m{catalogue[3]['id']}"
    body = client.get(f"/v1/similar/{pid}", params={"k": 5}).json()
    assert len(body["hits"]) == 5
    assert body["hits"][0]["product_id"] == pid and body["hits"][0]["score"] == pytest.approx(1)
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    without = client.get(f"/v1/similar/{pid}", params={"k": 5, "exclude_self": True}).json()
    assert pid not in [h["product_id"] for h in without["hits"]] and len(without["hits"]) == 5


@pytest.mark.parametrize("level", [1, 2])
def test_a_search_restricted_to_a_subtree_stays_in_it(
    client: TestClient, catalogue: list[dict[str, str]], level: int
) -> None:
    row = catalogue[5]
    path = [row["masterCategory"], row["subCategory"], row["articleType"]][:level]
    category = path_id(path)
    members = {
        f"m{r['id']}"
        for r in catalogue
        if [r["masterCategory"], r["subCategory"], r["articleType"]][:level] == path
    }
    # Query with a product from elsewhere: the subset still answers, and only the subset.
    outsider = next(r for r in catalogue if [r["masterCategory"], r["subCategory"]][:level] != path)
    body = client.get(
        f"/v1/similar/m{outsider['id']}", params={"k": 50, "category": category}
    ).json()
    got = {h["product_id"] for h in body["hits"]}
    assert got == members
    assert all(h["category_path"][:level] == path for h in body["hits"])


def test_a_subtree_named_by_its_taxonomy_node_id(
    client: TestClient, catalogue: list[dict[str, str]], tmp_path: Path
) -> None:
    tree = _numbered_taxonomy(catalogue, tmp_path)
    row = catalogue[5]
    node = next(n for n in tree.nodes_at_depth(2) if list(n.path) == _path(row)[:2])
    assert not node.id.startswith("c_")
    members = {f"m{r['id']}" for r in catalogue if _path(r)[:2] == _path(row)[:2]}
    outsider = next(r for r in catalogue if _path(r)[:2] != _path(row)[:2])
    by_node = client.get(f"/v1/similar/m{outsider['id']}", params={"k": 50, "category": node.id})
    assert by_node.status_code == 200, by_node.text
    assert {h["product_id"] for h in by_node.json()["hits"]} == members
    by_path = client.get(
        f"/v1/similar/m{outsider['id']}", params={"k": 50, "category": path_id(node.path)}
    )
    assert by_path.json()["hits"] == by_node.json()["hits"]


def test_upload_an_image(
    client: TestClient, data_dir: Path, catalogue: list[dict[str, str]]
) -> None:
    row = catalogue[7]
    data = (data_dir / "myntra" / "images" / row["filename"]).read_bytes()
    response = client.post(
        "/v1/similar", params={"k": 3}, files={"image": ("q.jpg", data, "image/jpeg")}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["hits"][0]["product_id"] == f"m{row['id']}"
    assert body["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert body["model_version"] == 1


def test_bad_requests(client: TestClient) -> None:
    assert client.get("/v1/similar/nope").status_code == 404
    unknown = client.get("/v1/similar/m1", params={"category": "Apparel"})
    assert unknown.status_code == 404 and "prodcat taxonomy show" in unknown.json()["detail"]
    assert client.get("/v1/similar/m1", params={"category": "a b"}).status_code == 422
    assert client.get("/v1/similar/m1", params={"k": 0}).status_code == 422
    html = client.post("/v1/similar", files={"image": ("x.jpg", b"<html></html>", "image/jpeg")})
    assert html.status_code == 415
    big = b"\xff\xd8\xff" + b"\x00" * (64 * 1024)
    assert client.post("/v1/similar", files={"image": ("x.jpg", big)}).status_code == 413
    broken = b"\xff\xd8\xff\xe0" + b"garbage" * 10
    assert client.post("/v1/similar", files={"image": ("x.jpg", broken)}).status_code == 422


def test_metrics_count_requests(client: TestClient) -> None:
    client.get("/healthz")
    text = client.get("/metrics").text
    assert 'prodcat_api_requests_total{route="/healthz",status="200"}' in text
    assert "prodcat_api_request_seconds_bucket" in text
