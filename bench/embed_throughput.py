"""Embed-agent throughput through real Kafka and milvus-lite vs calling the embedder directly.

    .venv/bin/python bench/embed_throughput.py [--products 2637] [--runs 2]

Needs an exported image embedder under ``--model-base`` (default ``models/``; ``prodcat embedder
export`` makes one).

1. Starts a fresh single-node broker (var/bench-embed/kafka) and fills a normalised-products topic
   with the Myntra thumbnails as products (``file://`` image URLs), cycled to ``--products``.
2. Direct baseline: read the same image files and call the in-process embedder's ``predict`` in the
   batches the agent uses (64).
3. Agent: per run, one ``prodcat worker embed`` process (fresh consumer group, fresh milvus-lite
   directory) drains the backlog: fetch (guarded fetcher, file://), embed, upsert. Rate = inputs /
   (time the worker's ``prodcat_events_in_total{stage="embed"}`` reached the total - time it first
   moved), sampled every 0.2 s, so model loading and the group join are excluded.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from confluent_kafka import Producer
from harness import fresh_broker, run_settings

from prodcat import localkafka
from prodcat.core.kafka_config import producer_config
from prodcat.core.settings import (
    ImageSettings,
    KafkaSettings,
    MilvusSettings,
    ServingSettings,
    Settings,
    TopicNames,
    load_settings,
)
from prodcat.schemas.serde import serde_for
from prodcat.serving.backends import InProcessBackend
from prodcat.streams.normalize import normalize_event
from prodcat.streams.replay import dataset_events
from prodcat.streams.topics import ensure_topics, topic_specs
from prodcat.streams.worker_process import (
    scrape_metric,
    start_worker,
    stop_worker,
    wait_worker_ready,
)

HOME = Path.cwd() / "var" / "bench-embed"
BATCH = 64


def _products(data_dir: Path, n: int) -> list[dict[str, object]]:
    base = [
        normalize_event(e.value, feed=e.feed, key=e.key, seen_at_ms=0)
        for e in dataset_events(data_dir, ["thumbnails"])
    ]
    return [
        {**p, "product_id": f"{p['product_id']}#{i // len(base)}"}
        for i, p in enumerate(itertools.islice(itertools.cycle(base), n))
    ]


def _direct(backend: InProcessBackend, urls: list[str]) -> float:
    started = time.perf_counter()
    for i in range(0, len(urls), BATCH):
        data = [Path(u.removeprefix("file://")).read_bytes() for u in urls[i : i + BATCH]]
        backend.predict({"image_bytes": np.array(data, dtype=object)})
    return len(urls) / (time.perf_counter() - started)


def _agent_run(settings: Settings, source: str, n: int, run: int) -> float:
    uid = uuid.uuid4().hex[:8]
    topics = TopicNames(normalized=source, deadletter=f"bench-{uid}.deadletter", partitions=4)
    run_cfg = run_settings(settings, topics, uid).model_copy(
        update={"milvus": MilvusSettings(uri=str(HOME / f"milvus-{run}" / "vectors.db"))}
    )
    ensure_topics(run_cfg.kafka, [s for s in topic_specs(topics) if s.name == topics.deadletter])
    proc = start_worker(run_cfg, ["embed"], HOME / f"worker-{run}.log")
    port = run_cfg.worker.metrics_port
    try:
        wait_worker_ready(proc, "127.0.0.1", port, "embed", 180)
        first: float | None = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            done = scrape_metric("127.0.0.1", port, "prodcat_events_in_total", stage="embed")
            now = time.monotonic()
            if done > 0 and first is None:
                first, first_done = now, done
            if done >= n:
                break
            time.sleep(0.2)
        out = scrape_metric("127.0.0.1", port, "prodcat_events_out_total", stage="embed")
    finally:
        stop_worker(proc)
    assert first is not None
    rate = (n - first_done) / (now - first)
    print(f"agent run {run}: {n:,} inputs, {out:,.0f} vectors → {rate:,.1f}/s", flush=True)
    return rate


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=2637)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--model-base", type=Path, default=Path.cwd() / "models")
    args = parser.parse_args()

    base = load_settings()
    serving = ServingSettings(model_base=args.model_base.resolve())
    backend = InProcessBackend(serving.model_base, serving.embedder, poll_interval_s=None)
    if backend.version is None:
        print(f"no image embedder under {serving.model_base}; run `prodcat embedder export`")
        return 2
    cfg, bootstrap = fresh_broker(base, HOME, 9292)
    try:
        images = (base.data_dir / "myntra" / "images").resolve()
        settings = base.model_copy(
            update={
                "kafka": KafkaSettings(bootstrap_servers=bootstrap),
                "serving": serving,
                "images": ImageSettings(file_roots=(images,)),
            }
        )
        products = _products(base.data_dir, args.products)
        source = f"bench-{uuid.uuid4().hex[:8]}.products.normalized"
        ensure_topics(settings.kafka, topic_specs(TopicNames(normalized=source, partitions=4))[1:2])
        serde = serde_for("Product")
        producer = Producer(producer_config(settings.kafka))
        for p in products:
            producer.produce(source, key=str(p["product_id"]).encode(), value=serde.encode(p))
            producer.poll(0)
        producer.flush(60)
        urls = [str(p["image_urls"][0]) for p in products]  # type: ignore[index]
        direct = statistics.median(_direct(backend, urls) for _ in range(args.runs))
        print(f"direct: {direct:,.1f} images/s", flush=True)
        backend.close()
        agent = statistics.median(
            _agent_run(settings, source, len(products), run) for run in range(args.runs)
        )
        print(f"\nmedians of {args.runs} runs, {len(products):,} products with one image each, "
              f"embedder v{backend.version}, batches of {BATCH}:")  # fmt: skip
        print(f"direct (read file + embed):          {direct:,.1f} images/s")
        print(f"embed agent (fetch, embed, upsert):  {agent:,.1f} images/s")
        print(f"agent / direct = {agent / direct:.2f}")
        print(f"({os.cpu_count()} cores, Python {sys.version.split()[0]}, broker on this machine)")
    finally:
        localkafka.stop(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
