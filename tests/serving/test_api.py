"""The similarity HTTP API over a real milvus-lite store and the real image embedder SavedModel."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from prodcat.core.ids import path_id
from prodcat.core.settings import ApiSettings, MilvusSettings
from prodcat.serving.api import create_api
from prodcat.serving.backends import InProcessBackend
from prodcat.serving.product_vectors import ProductVectors
from prodcat.serving.subtrees import SubtreeIds
from prodcat.serving.text_vectors import text_vectors
from prodcat.serving.vector_store import ImageVector
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


@dataclass
class Stored:
    vectors: ProductVectors
    images: np.ndarray  # unit image vectors, in catalogue order
    titles: np.ndarray  # title vectors, in catalogue order


@pytest.fixture(scope="module")
def stored(
    tmp_path_factory: pytest.TempPathFactory,
    embedder_model_base: Path,
    data_dir: Path,
    catalogue: list[dict[str, str]],
) -> Iterator[Stored]:
    embedder = InProcessBackend(embedder_model_base, "image_embedder", poll_interval_s=None)
    milvus = MilvusSettings(uri=str(tmp_path_factory.mktemp("milvus") / "v.db"))
    vectors = ProductVectors(milvus)
    vectors.ensure_collections()
    images = data_dir / "myntra" / "images"
    data = np.array([(images / row["filename"]).read_bytes() for row in catalogue], dtype=object)
    embedded = np.asarray(embedder.predict({"image_bytes": data}).outputs["embedding"])
    embedder.close()
    vectors.images.upsert(
        ImageVector(
            product_id=f"m{row['id']}",
            vector=embedded[i],
            category_path=_path(row),
            model_version=1,
            image_url=(images / row["filename"]).as_uri(),
        )
        for i, row in enumerate(catalogue)
    )
    vectors.texts.upsert(
        vectors.title_rows(
            (f"m{row['id']}", row["productDisplayName"], _path(row), "") for row in catalogue
        )
    )
    titles = text_vectors([row["productDisplayName"] for row in catalogue], milvus.text_dim)
    unit = embedded / np.linalg.norm(embedded, axis=1, keepdims=True)
    yield Stored(vectors, unit, titles)
    vectors.close()


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory,
    embedder_model_base: Path,
    stored: Stored,
    catalogue: list[dict[str, str]],
) -> Iterator[TestClient]:
    embedder = InProcessBackend(embedder_model_base, "image_embedder", poll_interval_s=None)
    app = create_api(
        ApiSettings(max_upload_bytes=64 * 1024),
        vectors=stored.vectors,
        embedder=embedder,
        subtrees=SubtreeIds(lambda: _numbered_taxonomy(catalogue, tmp_path_factory.mktemp("tx"))),
    )
    with TestClient(app) as test_client:
        yield test_client
    embedder.close()


def test_health(client: TestClient, catalogue: list[dict[str, str]]) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "vectors": len(catalogue),
        "title_vectors": len(catalogue),
    }


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


def _exact_top(scores: np.ndarray, query: int, k: int) -> list[int]:
    order = [int(i) for i in np.argsort(-scores, kind="stable") if i != query]
    return order[:k]


@pytest.mark.parametrize("mode", ["image", "text", "hybrid"])
def test_each_mode_ranks_as_its_exact_scores_do(
    client: TestClient, stored: Stored, catalogue: list[dict[str, str]], mode: str
) -> None:
    query = 11
    image = stored.images @ stored.images[query]
    title = stored.titles @ stored.titles[query]
    exact = {"image": image, "text": title, "hybrid": 0.5 * title + 0.5 * image}[mode]
    body = client.get(
        f"/v1/similar/m{catalogue[query]['id']}",
        params={"k": 8, "exclude_self": True, "mode": mode},
    ).json()
    assert body["mode"] == mode
    got = [h["product_id"] for h in body["hits"]]
    scores = [h["score"] for h in body["hits"]]
    expected = _exact_top(exact, query, 8)
    # the same products in the same order (up to float ties), with the exact fused scores
    assert scores == pytest.approx([float(exact[i]) for i in expected], abs=1e-4)
    assert set(got) == {f"m{catalogue[i]['id']}" for i in expected} or len(set(scores)) < 8


def test_hybrid_differs_from_either_side_alone(
    client: TestClient, catalogue: list[dict[str, str]]
) -> None:
    pid = f"m{catalogue[11]['id']}"
    ranked = {
        mode: [
            h["product_id"]
            for h in client.get(f"/v1/similar/{pid}", params={"k": 10, "mode": mode}).json()["hits"]
        ]
        for mode in ("image", "text", "hybrid")
    }
    assert ranked["hybrid"] != ranked["image"] and ranked["hybrid"] != ranked["text"]


def test_the_default_mode_is_the_configured_one(
    client: TestClient, catalogue: list[dict[str, str]]
) -> None:
    body = client.get(f"/v1/similar/m{catalogue[2]['id']}", params={"k": 3}).json()
    assert body["mode"] == "hybrid"


def test_words_find_the_titles_that_read_like_them(
    client: TestClient, catalogue: list[dict[str, str]]
) -> None:
    row = catalogue[20]
    body = client.get("/v1/search", params={"q": row["productDisplayName"], "k": 3}).json()
    assert body["mode"] == "text"
    assert body["hits"][0]["product_id"] == f"m{row['id']}"
    assert body["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    restricted = client.get(
        "/v1/search",
        params={"q": row["productDisplayName"], "k": 50, "category": path_id(_path(row)[:1])},
    ).json()
    assert all(h["category_path"][:1] == _path(row)[:1] for h in restricted["hits"])
    assert client.get("/v1/search", params={"q": "!!! ..."}).status_code == 422
    assert client.get("/v1/search", params={"q": ""}).status_code == 422


def test_a_product_with_a_title_only_is_found_by_its_title(
    client: TestClient, stored: Stored, catalogue: list[dict[str, str]]
) -> None:
    row = catalogue[30]
    twin = "title-only-twin"
    stored.vectors.texts.upsert(
        stored.vectors.title_rows([(twin, row["productDisplayName"], _path(row), "")])
    )
    try:
        assert client.get(f"/v1/similar/{twin}", params={"mode": "image"}).status_code == 404
        hybrid = client.get(f"/v1/similar/{twin}", params={"k": 3, "exclude_self": True}).json()
        # answered by its title alone: the product it copies the title of comes first
        assert hybrid["hits"][0]["product_id"] == f"m{row['id']}"
        assert hybrid["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    finally:
        stored.vectors.texts.delete([twin])
