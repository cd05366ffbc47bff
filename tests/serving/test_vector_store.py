"""The vector store against a real milvus-lite (in process, and as a server on loopback)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from prodcat.core.ids import path_id
from prodcat.core.settings import MilvusSettings
from prodcat.serving.exceptions import VectorStoreError, VectorStoreUnavailableError
from prodcat.serving.vector_plan import NLIST, CategoryStats, plan_search
from prodcat.serving.vector_store import ImageVector, VectorStore

pytestmark = pytest.mark.integration

DIM = 64
TOPS = ["Clothing", "Jewellery", "Footwear"]
MIDS = ["Women", "Men", "Kids"]
LEAVES = ["Casual", "Party"]
PER_LEAF = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_rows(seed: int = 0) -> list[ImageVector]:
    """Clustered unit vectors: nearby leaves share a level-1 and level-2 direction."""
    rng = np.random.default_rng(seed)
    rows = []
    for top in TOPS:
        c1 = rng.standard_normal(DIM)
        for mid in MIDS:
            c2 = c1 + 0.7 * rng.standard_normal(DIM)
            for leaf in LEAVES:
                c3 = c2 + 0.5 * rng.standard_normal(DIM)
                for i in range(PER_LEAF):
                    vector = (c3 + 0.6 * rng.standard_normal(DIM)).astype(np.float32)
                    rows.append(
                        ImageVector(
                            product_id=f"{top[:3]}-{mid}-{leaf}-{i}",
                            vector=vector,
                            category_path=[top, mid, leaf],
                            model_version=1,
                            image_url=f"https://img.example/{top}/{mid}/{leaf}/{i}.jpg",
                        )
                    )
    return rows


def exact_top(rows: list[ImageVector], query: np.ndarray, k: int, prefix: list[str] | None):
    members = [r for r in rows if prefix is None or list(r.category_path[: len(prefix)]) == prefix]
    matrix = np.stack([r.vector / np.linalg.norm(r.vector) for r in members])
    sims = matrix @ (query / np.linalg.norm(query))
    order = np.argsort(-sims)[:k]
    return [members[i].product_id for i in order], sims[order]


ROWS = make_rows()


def settings(uri: str, **overrides: object) -> MilvusSettings:
    return MilvusSettings(uri=uri, collection="images", dim=DIM, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VectorStore]:
    path = tmp_path_factory.mktemp("milvus") / "store.db"
    vs = VectorStore(settings(str(path)))
    vs.ensure_collection()
    vs.upsert(ROWS)
    vs.flush()  # a segment with a built IVF index, not only the brute-forced memtable
    yield vs
    vs.drop()
    vs.close()


def test_upsert_and_count(store: VectorStore) -> None:
    assert store.count() == len(ROWS)


def test_ensure_collection_twice(store: VectorStore) -> None:
    store.ensure_collection()
    assert store.count() == len(ROWS)


def test_search_finds_the_product_itself_first(store: VectorStore) -> None:
    row = ROWS[7]
    hits = store.search(row.vector, 5)
    assert hits[0].product_id == row.product_id
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].category_path == list(row.category_path)
    assert hits[0].image_url == row.image_url
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    by_id = store.search_by_id(row.product_id, 5)
    assert [h.product_id for h in by_id] == [h.product_id for h in hits]


def test_global_search_matches_numpy(store: VectorStore) -> None:
    query = ROWS[100].vector + ROWS[400].vector
    expected, sims = exact_top(ROWS, query, 10, None)
    hits = store.search(query, 10)
    assert len(set(expected) & {h.product_id for h in hits}) >= 9
    assert hits[0].score == pytest.approx(float(sims[0]), abs=1e-4)


@pytest.mark.parametrize(
    "prefix", [["Jewellery"], ["Footwear", "Men"], ["Clothing", "Kids", "Party"]]
)
def test_restricted_search_stays_in_the_subtree(store: VectorStore, prefix: list[str]) -> None:
    hits = store.search(ROWS[0].vector, 10, category_id=path_id(prefix))
    assert len(hits) == 10
    assert all(h.category_path[: len(prefix)] == prefix for h in hits)


@pytest.mark.parametrize(
    "prefix", [["Footwear"], ["Jewellery", "Women"], ["Footwear", "Kids", "Casual"]]
)
def test_restricted_search_from_outside_the_subset_is_exact(
    store: VectorStore, prefix: list[str]
) -> None:
    query = ROWS[0].vector  # a Clothing product: outside every subset above
    expected, sims = exact_top(ROWS, query, 10, prefix)
    hits = store.search(query, 10, category_id=path_id(prefix))
    assert [h.product_id for h in hits] == expected
    assert [h.score for h in hits] == pytest.approx(sims.tolist(), abs=1e-4)


def test_unknown_category_and_bad_category_id(store: VectorStore) -> None:
    assert store.search(ROWS[0].vector, 5, category_id=path_id(["Nothing here"])) == []
    with pytest.raises(VectorStoreError):
        store.search(ROWS[0].vector, 5, category_id='x" or cat_1 != "')


def test_get_vector(store: VectorStore) -> None:
    assert store.get_vector("no-such-product") is None
    assert store.search_by_id("no-such-product", 5) == []
    row = ROWS[3]
    vector = store.get_vector(row.product_id)
    assert vector is not None
    expected = row.vector / np.linalg.norm(row.vector)
    np.testing.assert_allclose(vector, expected, atol=1e-6)


def test_ids_are_quoted_safely(tmp_path: Path) -> None:
    vs = VectorStore(settings(str(tmp_path / "quotes.db")))
    try:
        vs.ensure_collection()
        ids = ['a"b', "c'd", "e\\f", "x'] or product_id != ['"]
        vs.upsert(
            ImageVector(pid, ROWS[i].vector, ["Clothing"], 1, "u") for i, pid in enumerate(ids)
        )
        for pid in ids:
            vector = vs.get_vector(pid)
            assert vector is not None
            assert vs.search(vector, 1)[0].product_id == pid
        assert vs.get_vector("x") is None
    finally:
        vs.close()


def test_dimension_mismatch(store: VectorStore, tmp_path: Path) -> None:
    short = np.ones(DIM // 2, dtype=np.float32)
    with pytest.raises(VectorStoreError):
        store.search(short, 5)
    bad = ImageVector("bad", short, ["Clothing"], 1, "https://img.example/bad.jpg")
    with pytest.raises(VectorStoreError):
        store.upsert([bad])
    other = VectorStore(settings(str(tmp_path / "dims.db")))
    try:
        other.ensure_collection()
        wider = VectorStore(
            MilvusSettings(uri=str(tmp_path / "dims.db"), collection="images", dim=DIM * 2)
        )
        with pytest.raises(VectorStoreError, match="dim"):
            wider.ensure_collection()
        wider.close()
    finally:
        other.close()


def test_idempotent_upsert_replaces(tmp_path: Path) -> None:
    vs = VectorStore(settings(str(tmp_path / "upsert.db")))
    try:
        vs.ensure_collection()
        rows = ROWS[:50]
        assert vs.upsert(rows) == 50
        vs.flush()
        moved = [
            ImageVector(r.product_id, r.vector, ["Footwear", "Kids"], 2, r.image_url + "?v2")
            for r in rows[:10]
        ]
        vs.upsert(moved + moved)  # repeated ids in one call are written once
        assert vs.count() == 50
        hit = vs.search_by_id(rows[0].product_id, 1)[0]
        assert hit.product_id == rows[0].product_id
        assert hit.category_path == ["Footwear", "Kids"]
        assert hit.image_url.endswith("?v2")
        old = vs.search(rows[0].vector, 50, category_id=path_id(list(rows[0].category_path)))
        assert rows[0].product_id not in {h.product_id for h in old}
        assert len(vs.search(rows[0].vector, 50)) == 50
    finally:
        vs.drop()
        vs.close()


def test_broad_restrictions_use_ann_and_selective_ones_exact(tmp_path: Path) -> None:
    vs = VectorStore(settings(str(tmp_path / "plan.db"), exact_max_rows=100))
    try:
        vs.ensure_collection()
        vs.upsert(ROWS)
        vs.flush()
        broad = vs._plan(1, path_id(["Clothing"]))  # k=1: few rows need scanning
        narrow = vs._plan(10, path_id(["Clothing", "Men"]))
        assert not broad.exact and broad.expr == f'cat_1 == "{path_id(["Clothing"])}"'
        assert narrow.exact and narrow.params == {"nprobe": NLIST}
        hits = vs.search(ROWS[0].vector, 10, category_id=path_id(["Jewellery"]))
        assert len(hits) == 10 and all(h.category_path[0] == "Jewellery" for h in hits)
    finally:
        vs.close()


def test_plan_without_estimates_is_exact() -> None:
    stats = CategoryStats(total=1_000_000, fraction=0.002, counts={}, levels={}, taken_at=0.0)
    cid = path_id(["Clothing"])
    plan = plan_search(
        index_type="IVF_FLAT",
        backend="lite",
        k=10,
        exact_max_rows=50_000,
        category_id=cid,
        stats=stats,
    )
    assert plan.exact and " or " in plan.expr
    big = CategoryStats(1_000_000, 0.002, {cid: 1200}, {cid: 1}, 0.0)
    plan = plan_search(
        index_type="IVF_FLAT",
        backend="lite",
        k=10,
        exact_max_rows=50_000,
        category_id=cid,
        stats=big,
    )
    assert (
        not plan.exact and plan.expr == f'cat_1 == "{cid}"' and 16 < plan.params["nprobe"] < NLIST
    )
    server = plan_search(
        index_type="HNSW", backend="server", k=200, exact_max_rows=0, category_id=cid
    )
    assert server.params == {"ef": 200}
    # a broad restriction on a server: the beam widens by the share it keeps (60% here)
    wide = plan_search(
        index_type="HNSW", backend="server", k=10, exact_max_rows=0, category_id=cid, stats=big
    )
    assert wide.params == {"ef": 107} and wide.expr == f'cat_1 == "{cid}"'


def test_unreachable_server_is_unavailable() -> None:
    vs = VectorStore(settings(f"http://127.0.0.1:{free_port()}"), timeout_s=2.0)
    started = time.monotonic()
    with pytest.raises(VectorStoreUnavailableError):
        vs.ensure_collection()
    assert time.monotonic() - started < 5.0


@pytest.fixture
def lite_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port, data = free_port(), tmp_path / "server.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "milvus_lite",
            "server",
            "--data-dir",
            str(data),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("milvus-lite server did not start")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", data
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_milvus_lite_server_by_uri(lite_server: tuple[str, Path]) -> None:
    uri, data = lite_server
    vs = VectorStore(settings(uri), timeout_s=5.0)
    try:
        vs.ensure_collection()
        vs.upsert(ROWS)
        vs.flush()
        assert vs.count() == len(ROWS)
        prefix = ["Jewellery", "Kids"]
        expected, _ = exact_top(ROWS, ROWS[0].vector, 10, prefix)
        hits = vs.search(ROWS[0].vector, 10, category_id=path_id(prefix))
        assert [h.product_id for h in hits] == expected
        assert vs.search_by_id(ROWS[5].product_id, 3)[0].product_id == ROWS[5].product_id

        # the server holds the directory's LOCK: opening it in-process fails clearly
        local = VectorStore(settings(str(data)))
        with pytest.raises(VectorStoreError, match="LOCK"):
            local.ensure_collection()
    finally:
        vs.close()
