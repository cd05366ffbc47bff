"""The Milvus collection of product image embeddings, and similarity search over it.

One row per product, keyed by ``product_id`` (schema and row conversion: :mod:`prodcat.serving.vector_rows`);
vectors are stored L2-normalised under metric IP, so scores are cosine similarities. ``uri`` picks
the backend: a local ``*.db`` path runs milvus-lite inside this process (the directory holds a
LOCK: one process at a time; to share it run ``milvus-lite server --data-dir D --port P`` and use
``http://127.0.0.1:P``), an ``http(s)://`` URI reaches a server. The backend is recognised by the
server's version string, so a milvus-lite server behind a URI is planned for as milvus-lite. How
each search is planned (ANN or exact, per query) is in :mod:`prodcat.serving.vector_plan`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import numpy as np
from pymilvus import MilvusClient, MilvusException

from prodcat.core.settings import MilvusSettings
from prodcat.serving.exceptions import VectorStoreError, VectorStoreUnavailableError
from prodcat.serving.milvus_connection import (
    NOT_LOADED,
    connect,
    is_local,
    release,
    translate_errors,
)
from prodcat.serving.vector_plan import (
    NLIST,
    SAMPLE_BUCKETS,
    Backend,
    CategoryStats,
    IndexType,
    SearchPlan,
    index_build_params,
    plan_search,
    resolve_index,
)
from prodcat.serving.vector_rows import (
    CATEGORY_FIELDS,
    OUTPUT_FIELDS,
    VECTOR,
    Hit,
    ImageVector,
    build_schema,
    check_schema,
    to_hit,
    to_record,
    unit_vector,
)

__all__ = ["Hit", "ImageVector", "VectorStore"]

logger = logging.getLogger(__name__)

_BATCH: Final = 500
_QUERY_LIMIT: Final = 16_384  # the largest query window Milvus allows
_STATS_TTL_S: Final = 300.0

#: ``observe(operation, seconds, error_kind)`` after each upsert, search, delete and get
#: (error_kind None: it succeeded), e.g. ``prodcat.core.metrics.MilvusMetrics.operation``.
OperationObserver = Callable[[str, float, str | None], None]


class VectorStore:
    """Upsert and search product image vectors; every error is a :class:`VectorStoreError`.

    ``client`` is injectable (then :meth:`close` leaves it open); otherwise one is made on first
    use. ``timeout_s`` bounds each read; writes get 6x, creating and loading a collection 30x.
    ``observe`` (optional) is told the duration and outcome of every upsert, search, delete and get.
    """

    def __init__(
        self,
        settings: MilvusSettings,
        client: MilvusClient | None = None,
        *,
        timeout_s: float = 10.0,
        observe: OperationObserver | None = None,
    ) -> None:
        self._settings = settings
        self._observe = observe
        self._client = client
        self._owns_client = client is None
        self._timeout = timeout_s
        self._backend: Backend | None = None
        self._index: IndexType | None = None
        self._nlist = NLIST
        self._stats: CategoryStats | None = None
        self._writes = 0

    @property
    def name(self) -> str:
        return self._settings.collection

    def _milvus(self) -> MilvusClient:
        if self._client is None:
            token = self._settings.token.get_secret_value() if self._settings.token else ""
            self._client = connect(self._settings.uri, token, self._timeout)
        return self._client

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            with translate_errors(action, f"{self._settings.uri}, {self.name}"):
                yield
        except VectorStoreUnavailableError:
            self._reconnect_next()
            raise

    def _reconnect_next(self) -> None:
        """After a server was unavailable, the next call makes a new client: pymilvus's own
        connection recovery can fail and leave a client whose later calls never return (seen
        under a Milvus outage in the embed stage)."""
        if not self._owns_client or self._client is None or is_local(self._settings.uri):
            return
        client, self._client = self._client, None
        try:
            release(client, self._settings.uri)
        except Exception as exc:
            logger.warning("%s: closing the client after an outage failed: %s", self.name, exc)

    @contextmanager
    def _timed(self, operation: str) -> Iterator[None]:
        """Report the operation's duration and outcome to ``observe`` (if any)."""
        if self._observe is None:
            yield
            return
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            self._observe(operation, time.perf_counter() - started, type(exc).__name__)
            raise
        self._observe(operation, time.perf_counter() - started, None)

    def _backend_kind(self) -> Backend:
        if self._backend is None:
            with self._errors("server version"):
                version = str(self._milvus().get_server_version(timeout=self._timeout))
            self._backend = "lite" if version.startswith("milvus_lite") else "server"
            logger.info("vector store %s: %s backend (%s)", self.name, self._backend, version)
        return self._backend

    def _read(self, action: str, call: Callable[[MilvusClient], Any]) -> Any:
        """Run a read; a collection found released (a restarted milvus-lite) is loaded once."""
        client = self._milvus()
        with self._errors(action):
            try:
                return call(client)
            except MilvusException as exc:
                text = str(exc.message).casefold()
                if exc.code != NOT_LOADED and "not loaded" not in text and "released" not in text:
                    raise
                logger.warning("%s: collection is not loaded; loading it", self.name)
                client.load_collection(self.name, timeout=self._timeout * 30)
                return call(client)

    # -- collection ---------------------------------------------------------------------------

    def ensure_collection(self) -> None:
        """Create the collection and its index if missing, check its schema, and load it."""
        client, backend = self._milvus(), self._backend_kind()
        with self._errors("ensure collection"):
            if not client.has_collection(self.name, timeout=self._timeout):
                index = resolve_index(self._settings.index, backend)
                params = client.prepare_index_params()
                extra = index_build_params(index, backend)
                params.add_index(VECTOR, index_type=index, metric_type="IP", **extra)
                schema = build_schema(self._settings.dim)
                client.create_collection(
                    self.name, schema=schema, consistency_level="Session", timeout=self._timeout
                )
                # sync=False: waiting calls AllocTimestamp, which milvus-lite does not implement
                client.create_index(self.name, params, sync=False, timeout=self._timeout * 30)
                logger.info("created collection %s (%s on %s)", self.name, index, backend)
            description = client.describe_collection(self.name, timeout=self._timeout)
            check_schema(self.name, description, self._settings.dim)
            self._index = self._index_type()
            client.load_collection(self.name, timeout=self._timeout * 30)
        if backend == "lite" and self._index == "HNSW":
            logger.warning(
                "%s: HNSW on milvus-lite answers restricted searches inexactly", self.name
            )

    def _index_type(self) -> IndexType:
        """The vector index the collection really has (and its nlist), whatever the settings say."""
        with self._errors("describe index"):
            info = self._milvus().describe_index(self.name, VECTOR, timeout=self._timeout) or {}
        kind = str(info.get("index_type", "FLAT")).upper()
        self._nlist = int(info.get("nlist") or (info.get("params") or {}).get("nlist") or NLIST)
        return resolve_index(kind if kind in ("HNSW", "IVF_FLAT") else "FLAT", self._backend_kind())

    def exists(self) -> bool:
        """Whether the collection exists (the embed stage creates it)."""
        with self._errors("has collection"):
            return bool(self._milvus().has_collection(self.name, timeout=self._timeout))

    def count(self) -> int:
        """Rows in the collection."""
        rows = self._read(
            "count",
            lambda c: c.query(
                self.name, filter="", output_fields=["count(*)"], timeout=self._timeout
            ),
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def drop(self) -> None:
        """Drop the collection if it exists."""
        client = self._milvus()
        with self._errors("drop"):
            if client.has_collection(self.name, timeout=self._timeout):
                client.drop_collection(self.name, timeout=self._timeout * 30)
        self._index, self._stats, self._writes = None, None, 0

    def close(self) -> None:
        """Close an own client; a milvus-lite directory is released when its last store closes."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            release(client, self._settings.uri)

    # -- rows -----------------------------------------------------------------------------------

    def upsert(self, rows: Iterable[ImageVector]) -> int:
        """Insert or replace rows by ``product_id`` (the last of repeated ids wins); returns rows written."""
        written, batch = 0, {}
        for row in rows:
            batch[row.product_id] = to_record(row, self._settings.dim)
            if len(batch) >= _BATCH:
                written += self._write(list(batch.values()))
                batch = {}
        if batch:
            written += self._write(list(batch.values()))
        return written

    def _write(self, records: list[dict[str, Any]]) -> int:
        with self._timed("upsert"), self._errors("upsert"):
            self._milvus().upsert(self.name, records, timeout=self._timeout * 6)
        self._writes += len(records)
        return len(records)

    def flush(self) -> None:
        """Persist buffered rows; milvus-lite then builds the index of the new segment."""
        with self._errors("flush"):
            self._milvus().flush(self.name, timeout=self._timeout * 30)

    def delete(self, product_ids: Iterable[str]) -> int:
        """Remove products (e.g. deleted from the catalogue); unknown ids are ignored."""
        ids = list(product_ids)
        if not ids:
            return 0
        with self._timed("delete"), self._errors("delete"):
            self._milvus().delete(self.name, ids=ids, timeout=self._timeout)
        return len(ids)

    def get_vector(self, product_id: str) -> np.ndarray | None:
        """The stored unit vector of a product, or None."""
        # pymilvus' get() quotes ids without escaping them; a JSON string is a valid literal
        expr = f"product_id in [{json.dumps(product_id, ensure_ascii=False)}]"
        with self._timed("get"):
            rows = self._read(
                "get",
                lambda c: c.query(
                    self.name, filter=expr, output_fields=[VECTOR], timeout=self._timeout
                ),
            )
        return np.asarray(rows[0][VECTOR], dtype=np.float32) if rows else None

    def get_vectors(self, product_ids: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored unit vectors of those of ``product_ids`` that have one."""
        ids = list(dict.fromkeys(product_ids))
        found: dict[str, np.ndarray] = {}

        def query(expr: str) -> Callable[[MilvusClient], Any]:
            return lambda c: c.query(
                self.name, filter=expr, output_fields=["product_id", VECTOR], timeout=self._timeout
            )

        for start in range(0, len(ids), _BATCH):
            part = ids[start : start + _BATCH]
            with self._timed("get"):
                rows = self._read(
                    "get", query(f"product_id in {json.dumps(part, ensure_ascii=False)}")
                )
            for row in rows:
                found[str(row["product_id"])] = np.asarray(row[VECTOR], dtype=np.float32)
        return found

    # -- search ---------------------------------------------------------------------------------

    def search(self, vector: Any, k: int, *, category_id: str | None = None) -> list[Hit]:
        """The ``k`` most similar products, or only those under ``category_id`` (a path_id, any level)."""
        query = unit_vector(vector, self._settings.dim, "query")
        if k <= 0:
            return []
        with self._timed("search"):
            plan = self._plan(k, category_id)
            started = time.perf_counter()
            result = self._read(
                "search",
                lambda c: c.search(
                    self.name,
                    data=[query.tolist()],
                    limit=k,
                    filter=plan.expr,
                    anns_field=VECTOR,
                    search_params={"metric_type": "IP", "params": plan.params},
                    output_fields=OUTPUT_FIELDS,
                    timeout=self._timeout,
                ),
            )
        logger.debug(
            "search k=%d category=%s exact=%s rows~%s params=%s: %.1f ms",
            k,
            category_id,
            plan.exact,
            plan.estimated_rows,
            plan.params,
            (time.perf_counter() - started) * 1000,
        )
        return [to_hit(raw) for raw in (result[0] if result else [])]

    def search_by_id(self, product_id: str, k: int, *, category_id: str | None = None) -> list[Hit]:
        """Neighbours of a stored product (itself included, normally first); [] if it is unknown."""
        vector = self.get_vector(product_id)
        return [] if vector is None else self.search(vector, k, category_id=category_id)

    def _plan(self, k: int, category_id: str | None) -> SearchPlan:
        backend = self._backend_kind()
        if self._index is None:
            self._index = self._index_type()
        if self._index == "IVF_FLAT":
            stats = self._category_stats()  # nprobe depends on the rows in play, even unrestricted
        elif self._index == "HNSW" and category_id is not None:
            stats = self._category_stats()  # the beam widens with the restriction's share
        else:
            stats = None
        try:
            return plan_search(
                index_type=self._index,
                backend=backend,
                k=k,
                exact_max_rows=self._settings.exact_max_rows,
                category_id=category_id,
                stats=stats,
                nlist=self._nlist,
            )
        except ValueError as exc:
            raise VectorStoreError(str(exc)) from exc

    def _category_stats(self) -> CategoryStats:
        """Per-category row estimates from a sample; retaken after a TTL or 10% more own writes."""
        now, stats = time.monotonic(), self._stats
        if (
            stats is not None
            and now - stats.taken_at < _STATS_TTL_S
            and self._writes * 10 <= stats.total
        ):
            return stats
        total = self.count()
        if total <= self._settings.exact_max_rows:
            stats = CategoryStats(total, 0.0, {}, {}, now)  # every restriction is answered exactly
        else:
            cutoff = CategoryStats.sample_cutoff(total)
            rows = self._read(
                "sample categories",
                lambda c: c.query(
                    self.name,
                    filter=f"sample_bucket < {cutoff}",
                    output_fields=CATEGORY_FIELDS,
                    limit=_QUERY_LIMIT,
                    timeout=self._timeout * 6,
                ),
            )
            fraction = cutoff / SAMPLE_BUCKETS if len(rows) < _QUERY_LIMIT else len(rows) / total
            stats = CategoryStats.from_sample(total, fraction, rows, now)
            logger.info("%s: category estimates from %d of %d rows", self.name, len(rows), total)
        self._stats, self._writes = stats, 0
        return stats
