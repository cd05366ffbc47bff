"""The vector store against a real Milvus standalone server (the PyPI package ``milvus`` 2.3.x,
started on loopback by :mod:`prodcat.localmilvus`): the server path of every operation, HNSW as
its index, an outage of the server and its recovery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prodcat import localmilvus
from prodcat.core.ids import path_id
from prodcat.serving.exceptions import VectorStoreUnavailableError
from prodcat.serving.vector_store import VectorStore
from tests.serving.test_vector_store import ROWS, exact_top, settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # the server package probes ports with sockets it leaves to the garbage collector
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localmilvus.LocalMilvus]:
    running = localmilvus.start(tmp_path_factory.mktemp("milvus-server"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def store(server: localmilvus.LocalMilvus) -> Iterator[VectorStore]:
    vs = VectorStore(settings(server.uri), timeout_s=10.0)
    vs.ensure_collection()
    vs.upsert(ROWS)
    vs.flush()
    yield vs
    vs.close()


def test_the_server_path_finds_what_numpy_finds(store: VectorStore) -> None:
    assert store._backend_kind() == "server" and store._index == "HNSW"
    assert store.count() == len(ROWS)
    hits = store.search(ROWS[0].vector, 5)
    assert hits[0].product_id == ROWS[0].product_id
    expected, _ = exact_top(ROWS, ROWS[7].vector, 10, None)
    found = [h.product_id for h in store.search(ROWS[7].vector, 10)]
    assert len(set(found) & set(expected)) >= 9  # HNSW: approximate, recall@10 >= 0.9
    prefix = ["Jewellery", "Kids"]
    restricted = store.search(ROWS[0].vector, 10, category_id=path_id(prefix))
    assert restricted and all(h.category_path[:2] == prefix for h in restricted)
    assert store.search_by_id(ROWS[5].product_id, 3)[0].product_id == ROWS[5].product_id


def test_delete_and_upsert_replace_on_the_server(store: VectorStore) -> None:
    gone = ROWS[-1].product_id
    assert store.delete([gone]) == 1
    store.flush()
    assert store.count() == len(ROWS) - 1
    assert all(h.product_id != gone for h in store.search(ROWS[-1].vector, 5))
    store.upsert([ROWS[-1]])
    store.flush()
    assert store.count() == len(ROWS)


def test_a_server_outage_is_unavailable_then_recovers(
    server: localmilvus.LocalMilvus, store: VectorStore
) -> None:
    """The server process stopped (SIGSTOP) for a few seconds: calls fail within their deadline
    as unavailable (the stages wait those out with back-off), and the store works again once it
    continues (with a new client after a call found it unavailable)."""
    server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(VectorStoreUnavailableError):
            VectorStore(settings(server.uri), timeout_s=2.0).search(ROWS[0].vector, 3)
        assert time.monotonic() - started < 30
        time.sleep(3)
    finally:
        server.resume()
    deadline = time.monotonic() + 60
    while True:
        try:
            hits = store.search(ROWS[3].vector, 1)
            break
        except VectorStoreUnavailableError:
            assert time.monotonic() < deadline, "the store did not come back"
            time.sleep(1)
    assert hits[0].product_id == ROWS[3].product_id
    assert store.count() == len(ROWS)


def test_a_missing_server_package_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import builtins

    real = builtins.__import__

    def no_milvus(name: str, *args: object, **kwargs: object) -> object:
        if name == "milvus":
            raise ImportError("No module named 'milvus'")
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_milvus)
    with pytest.raises(localmilvus.LocalMilvusError, match="make install"):
        localmilvus.start(tmp_path)


def test_hybrid_search_on_the_server(server: localmilvus.LocalMilvus) -> None:
    """Image and title collections on the server (HNSW both), fused: the exact weighted ranking
    but for HNSW's approximation (at least 9 of the exact 10), restricted searches stay inside."""
    from tests.serving.test_product_vectors import exact_fused, hybrid_vectors

    vectors = hybrid_vectors(server.uri, text_weight=0.4)
    try:
        assert vectors.texts._backend_kind() == "server"
        for query, prefix in ((17, None), (40, ["Jewellery", "Kids"])):
            pid = ROWS[query].product_id
            category = path_id(prefix) if prefix else None
            query_vectors = vectors.of_product(pid, "hybrid")
            hits = vectors.search(query_vectors, 10, category_id=category, exclude=pid)
            found = [h.product_id for h in hits]
            assert len(set(found) & set(exact_fused(query, 0.4, prefix))) >= 9
            if prefix:
                assert all(h.category_path[:2] == prefix for h in hits)
    finally:
        vectors.images.drop()
        vectors.texts.drop()
        vectors.close()
