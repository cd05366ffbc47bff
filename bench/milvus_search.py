"""Vector store search latency and recall@10, per-query plan vs fixed ANN vs FLAT, same run.

    nice -n 10 .venv/bin/python bench/milvus_search.py [--rows 100000] [--queries 200] [--uri PATH|URL]
        [--exact-max-rows 50000] [--no-flat] [--server]

1. Synthetic 1280-d unit vectors, clustered like image embeddings: a shared mean direction plus a
   centre per category path (hierarchical: siblings share their parent's offset) plus noise. The
   category paths are the cleaned Flipkart paths of ``flipkart_20k.csv``, cycled to ``--rows``, so
   the category sizes follow the real distribution.
2. Upserts them through :class:`prodcat.serving.vector_store.VectorStore` (``index=auto``: IVF_FLAT on
   milvus-lite), flushes and waits for the index; reports rows/s. With ``--no-flat`` unset, the same
   rows go into a second collection with a FLAT index (the exact baseline).
3. ``--queries`` held-out vectors (new products drawn from the same mixture, so most lie outside
   any given subset) per query kind: unrestricted top-10; restricted to a level-1 category holding
   ≥ 5% of rows; restricted to a level-2/3 category holding 0.2-2%. Each is timed end to end
   (``VectorStore.search``: plan + gRPC + hits) and scored against exact numpy search over the
   same rows. "fixed ANN" sends the same filter with the unrestricted search's ``nprobe``, i.e. a
   store without the per-query choice.
Prints a markdown table. The default ``--uri`` is a fresh milvus-lite directory under /tmp;
``--server`` starts a Milvus standalone server on loopback instead (:mod:`prodcat.localmilvus`,
HNSW: the "fixed ANN" row, an IVF setting, is left out).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pymilvus import MilvusClient

from prodcat.core.ids import path_id
from prodcat.core.settings import MilvusSettings, load_settings
from prodcat.serving.vector_plan import NPROBE, category_filter
from prodcat.serving.vector_store import ImageVector, VectorStore
from prodcat.training.dataset import load_flipkart

DIM = 1280
K = 10


class Mixture:
    """Unit vectors around hierarchical category centres."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.mean = self._offset(0.8)
        self.centres: dict[tuple[str, ...], np.ndarray] = {(): self.mean}

    def _offset(self, norm: float) -> np.ndarray:
        offset: np.ndarray = self.rng.standard_normal(DIM, dtype=np.float32) * (norm / np.sqrt(DIM))
        return offset

    def centre(self, path: tuple[str, ...]) -> np.ndarray:
        if path not in self.centres:
            self.centres[path] = self.centre(path[:-1]) + self._offset(
                1.0 if len(path) == 1 else 0.7
            )
        return self.centres[path]

    def draw(self, paths: Sequence[tuple[str, ...]]) -> np.ndarray:
        out = np.stack([self.centre(p) for p in paths])
        out += self.rng.standard_normal(out.shape, dtype=np.float32) * (0.9 / np.sqrt(DIM))
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def wait_indexed(client: MilvusClient, name: str, rows: int, timeout_s: float = 900) -> float:
    """Seconds until the index covers every row twice in a row (compaction settles meanwhile)."""
    started, settled = time.monotonic(), 0
    while time.monotonic() - started < timeout_s:
        info = client.describe_index(name, "vector")
        done = int(info.get("indexed_rows", 0)) >= rows and not int(
            info.get("pending_index_rows", 0)
        )
        settled = settled + 1 if done else 0
        if settled >= 2:
            break
        time.sleep(5)
    return time.monotonic() - started


def build(
    store: VectorStore, ids: list[str], vectors: np.ndarray, paths: list[tuple[str, ...]]
) -> float:
    store.ensure_collection()

    def rows() -> Iterator[ImageVector]:
        for i, pid in enumerate(ids):
            yield ImageVector(pid, vectors[i], paths[i], 1, f"https://img.example/{pid}.jpg")

    started = time.perf_counter()
    store.upsert(rows())
    store.flush()
    return time.perf_counter() - started


Category = tuple[str, int]  # (path_id, level)
Runner = Callable[[np.ndarray, Category | None], list[str]]


def store_runner(store: VectorStore) -> Runner:
    def run(query: np.ndarray, cat: Category | None) -> list[str]:
        return [h.product_id for h in store.search(query, K, category_id=cat[0] if cat else None)]

    return run


def fixed_ann_runner(client: MilvusClient, collection: str) -> Runner:
    """The same collection searched without the per-query choice: one nprobe for everything."""

    def run(query: np.ndarray, cat: Category | None) -> list[str]:
        res = client.search(
            collection,
            data=[query.tolist()],
            limit=K,
            filter=category_filter(*cat) if cat else "",
            anns_field="vector",
            search_params={"metric_type": "IP", "params": {"nprobe": NPROBE}},
        )
        return [str(h["product_id"]) for h in res[0]]

    return run


def query_kinds(
    paths: list[tuple[str, ...]], n: int, rng: np.random.Generator
) -> tuple[dict[str, list[Category | None]], dict[int, np.ndarray]]:
    """Per kind, the restriction of each query; and per level, every row's category id."""
    levels = {
        d: np.array([path_id(p[:d]) if len(p) >= d else "" for p in paths]) for d in (1, 2, 3)
    }
    sizes = {d: Counter(levels[d].tolist()) for d in levels}
    rows = len(paths)
    broad = [c for c, m in sizes[1].items() if c and m >= 0.05 * rows]
    narrow = [
        (c, d)
        for d in (2, 3)
        for c, m in sizes[d].items()
        if c and 0.002 * rows <= m <= 0.02 * rows
    ]
    kinds: dict[str, list[Category | None]] = {
        "global": [None] * n,
        f"level-1 ({len(broad)} cats >= 5%)": [
            (broad[i], 1) for i in rng.integers(0, len(broad), n)
        ],
        f"level-2/3 ({len(narrow)} cats 0.2-2%)": [
            narrow[i] for i in rng.integers(0, len(narrow), n)
        ],
    }
    return kinds, levels


def exact_top(
    vectors: np.ndarray,
    ids: list[str],
    levels: dict[int, np.ndarray],
    q: np.ndarray,
    cat: Category | None,
) -> set[str]:
    sims = vectors @ q
    if cat is not None:
        sims = np.where(levels[cat[1]] == cat[0], sims, -np.inf)
    top = np.argpartition(-sims, K)[:K]
    return {ids[i] for i in top if np.isfinite(sims[i])}


def measure(
    run: Runner, queries: np.ndarray, cats: list[Category | None], truth: list[set[str]]
) -> tuple[float, float, float, float]:
    """(first search ms, p50 ms, p99 ms, mean recall@10) after a short warm-up."""
    started = time.perf_counter()
    run(queries[0], cats[0])  # the first restricted search also takes the category sample
    first = (time.perf_counter() - started) * 1000
    for i in range(1, 3):
        run(queries[i], cats[i])
    latencies, recalls = [], []
    for q, cat, expected in zip(queries, cats, truth, strict=True):
        started = time.perf_counter()
        got = run(q, cat)
        latencies.append(time.perf_counter() - started)
        recalls.append(len(expected & set(got)) / max(len(expected), 1))
    return first, percentile(latencies, 50), percentile(latencies, 99), float(np.mean(recalls))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--uri", default="", help="milvus-lite *.db path or http(s):// URL")
    parser.add_argument("--exact-max-rows", type=int, default=MilvusSettings().exact_max_rows)
    parser.add_argument("--no-flat", action="store_true", help="skip the FLAT baseline collection")
    parser.add_argument("--data-dir", type=Path, default=load_settings().data_dir)
    parser.add_argument("--server", action="store_true", help="a local Milvus standalone server")
    args = parser.parse_args()

    scratch = None if args.uri else Path(tempfile.mkdtemp(prefix="milvus-bench-"))
    server = None
    if args.server:
        from prodcat import localmilvus

        server = localmilvus.start(Path(str(scratch)) / "server")
        print(f"Milvus server started in {server.seconds_to_start:.1f} s", flush=True)
    uri = server.uri if server else args.uri or str(Path(str(scratch)) / "bench.db")
    base = [tuple(e.path) for e in load_flipkart(args.data_dir)]
    paths = [base[i % len(base)] for i in range(args.rows)]
    ids = [f"p{i:07d}" for i in range(args.rows)]
    mixture = Mixture()
    started = time.perf_counter()
    vectors = mixture.draw(paths)
    print(f"generated {args.rows} x {DIM} in {time.perf_counter() - started:.1f} s", flush=True)

    client = MilvusClient(uri=uri, timeout=30)
    configs: dict[str, tuple[str, Literal["auto", "FLAT"]]] = {
        "per-query plan (auto)": ("bench_auto", "auto")
    }
    if not args.no_flat:
        configs["FLAT"] = ("bench_flat", "FLAT")
    stores = {
        label: VectorStore(
            MilvusSettings(
                uri=uri, collection=name, dim=DIM, index=index, exact_max_rows=args.exact_max_rows
            ),
            client,
        )
        for label, (name, index) in configs.items()
    }
    notes = []
    for label, store in stores.items():
        store.drop()
        seconds = build(store, ids, vectors, paths)
        waited = wait_indexed(client, store.name, args.rows)
        rate = args.rows / seconds
        notes.append(
            f"{label}: upsert+flush {seconds:.0f} s ({rate:.0f} rows/s), index settled +{waited:.0f} s"
        )
        print(notes[-1], flush=True)

    rng = np.random.default_rng(1)
    queries = mixture.draw([base[i] for i in rng.integers(0, len(base), args.queries)])
    kinds, levels = query_kinds(paths, args.queries, rng)
    truth = {
        kind: [exact_top(vectors, ids, levels, q, c) for q, c in zip(queries, cats, strict=True)]
        for kind, cats in kinds.items()
    }
    runners = {label: store_runner(store) for label, store in stores.items()}
    if server is None:
        runners[f"fixed ANN (nprobe={NPROBE})"] = fixed_ann_runner(client, "bench_auto")
    lines = [
        "| store | query | p50 ms | p99 ms | recall@10 | first ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, run in runners.items():
        for kind, cats in kinds.items():
            first, p50, p99, recall = measure(run, queries, cats, truth[kind])
            lines.append(
                f"| {label} | {kind} | {p50:.1f} | {p99:.1f} | {recall:.3f} | {first:.0f} |"
            )
            print(lines[-1], flush=True)

    print()
    print(
        f"rows {args.rows}, dim {DIM}, {args.queries} queries per kind, k {K}, uri {uri}, "
        f"exact_max_rows {args.exact_max_rows}, cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}"
    )
    print("\n".join(notes))
    print()
    print("\n".join(lines))
    for store in stores.values():
        store.drop()
        store.close()
    client.close()
    if server is not None:
        server.stop()
    elif scratch is not None:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
