"""Classify-agent throughput through real Kafka vs calling the model directly, same batches, same run.

    .venv/bin/python bench/classify_throughput.py [--products 40000] [--runs 3] [--batch-size 512]

Needs an exported classifier under ``--model-base`` (default ``models/``; ``prodcat train`` makes one).

1. Starts a fresh single-node broker (var/bench-classify/kafka) and fills a normalised-products topic
   with ``--products`` Avro Products (the Flipkart feed normalised, cycled).
2. Direct baseline: the in-process backend's ``predict`` on the same products in the same batches
   (``--batch-size``), and the same plus decoding and building/encoding the Prediction records;
   measured before each agent run (they alternate), and the ratio is taken per run.
3. Agent: per run, one ``prodcat worker classify`` process with a fresh consumer group drains the
   backlog. Rate = outputs / (last output timestamp - first output timestamp), so model loading and
   the group join are excluded.
Prints medians and the agent/direct ratio.
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

from confluent_kafka import Producer
from harness import fresh_broker, run_settings

from prodcat import localkafka
from prodcat.core.kafka_config import producer_config
from prodcat.core.model_store import CardStore
from prodcat.core.settings import (
    KafkaSettings,
    ServingSettings,
    Settings,
    TopicNames,
    WorkerSettings,
    load_settings,
)
from prodcat.schemas.serde import serde_for
from prodcat.serving.backends import InProcessBackend
from prodcat.serving.classify import predictions
from prodcat.streams.normalize import normalize_event
from prodcat.streams.readback import read_topics
from prodcat.streams.replay import dataset_events
from prodcat.streams.topics import ensure_topics, topic_specs
from prodcat.streams.worker_process import start_worker, stop_worker, wait_worker_ready
from prodcat.training.inputs import model_inputs

HOME = Path.cwd() / "var" / "bench-classify"


def _products(data_dir: Path, n: int) -> list[tuple[bytes, bytes]]:
    serde = serde_for("Product")
    base = [
        normalize_event(e.value, feed=e.feed, key=e.key, seen_at_ms=0)
        for e in dataset_events(data_dir, ["flipkart"])
    ]
    out = []
    for i, product in enumerate(itertools.islice(itertools.cycle(base), n)):
        product = {**product, "product_id": f"{product['product_id']}#{i // len(base)}"}
        out.append((product["product_id"].encode(), serde.encode(product)))
    return out


def _direct(
    backend: InProcessBackend, cards: CardStore, encoded: list[bytes], batch: int
) -> tuple[float, float]:
    """(products/s of the model calls alone, products/s with decoding and records)."""
    products_serde, predictions_serde = serde_for("Product"), serde_for("Prediction")
    decoded = [products_serde.decode(v) for v in encoded]
    chunks = [decoded[i : i + batch] for i in range(0, len(decoded), batch)]
    inputs = [model_inputs(chunk) for chunk in chunks]
    started = time.perf_counter()
    for chunk_inputs in inputs:
        backend.predict(chunk_inputs)
    model_only = len(decoded) / (time.perf_counter() - started)

    started = time.perf_counter()
    for i in range(0, len(encoded), batch):
        products = [products_serde.decode(v) for v in encoded[i : i + batch]]
        output = backend.predict(model_inputs(products))
        card = cards.classifier(output.name, output.version)
        for record in predictions(products, output, card, top_k=5, rule_threshold=0.5, now_ms=0):
            predictions_serde.encode(record)
    full = len(encoded) / (time.perf_counter() - started)
    return model_only, full


def _agent_run(settings: Settings, source: str, n: int, run: int) -> float:
    uid = uuid.uuid4().hex[:8]
    topics = TopicNames(
        normalized=source,
        predictions=f"bench-{uid}.predictions",
        deadletter=f"bench-{uid}.deadletter",
        partitions=4,
    )
    run_cfg = run_settings(settings, topics, uid, batch_size=settings.worker.batch_size)
    specs = [s for s in topic_specs(topics) if s.name in (topics.predictions, topics.deadletter)]
    ensure_topics(run_cfg.kafka, specs)
    proc = start_worker(run_cfg, ["classify"], HOME / f"worker-{run}.log")
    try:
        wait_worker_ready(proc, "127.0.0.1", run_cfg.worker.metrics_port, "classify", 180)
        records = read_topics(
            run_cfg.kafka, [topics.predictions, topics.deadletter], expected=n, timeout_s=900
        )
    finally:
        stop_worker(proc)
    stamps = sorted(r.timestamp_ms for r in records)
    seconds = (stamps[-1] - stamps[0]) / 1000
    dead = sum(r.topic == topics.deadletter for r in records)
    print(
        f"agent run {run}: {len(records):,} outputs ({dead} dead letters) in {seconds:.2f}s → "
        f"{len(records) / seconds:,.0f}/s",
        flush=True,
    )
    return len(records) / seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512, help="products per model call")
    parser.add_argument("--consume-batch", type=int, default=2000, help="records per poll")
    parser.add_argument("--model-base", type=Path, default=Path.cwd() / "models")
    args = parser.parse_args()
    if args.products < 5 * args.consume_batch:
        # The rate is taken between output timestamps; one or two polls would measure nothing.
        parser.error("--products must be at least 5 x --consume-batch")

    base = load_settings()
    serving = ServingSettings(model_base=args.model_base.resolve(), batch_size=args.batch_size)
    backend = InProcessBackend(serving.model_base, serving.classifier, poll_interval_s=None)
    if backend.version is None:
        print(f"no classifier under {serving.model_base}; run `prodcat train` first")
        return 2
    cfg, bootstrap = fresh_broker(base, HOME, 9192)
    try:
        settings = base.model_copy(
            update={
                "kafka": KafkaSettings(bootstrap_servers=bootstrap),
                "serving": serving,
                "worker": WorkerSettings(batch_size=args.consume_batch),
            }
        )
        products = _products(base.data_dir, args.products)
        source = f"bench-{uuid.uuid4().hex[:8]}.products.normalized"
        ensure_topics(settings.kafka, topic_specs(TopicNames(normalized=source, partitions=4))[1:2])
        producer = Producer(producer_config(settings.kafka))
        for key, value in products:
            producer.produce(source, key=key, value=value)
            producer.poll(0)
        producer.flush(60)
        print(f"filled {source} with {len(products):,} products", flush=True)

        cards = CardStore(serving.model_base)
        values = [v for _, v in products]
        # Baseline and agent alternate, so a slow spell of the (shared) machine hits both.
        direct, agent, ratios = [], [], []
        for run in range(args.runs):
            direct.append(_direct(backend, cards, values, args.batch_size))
            print(f"direct run {run}: model {direct[-1][0]:,.0f}/s, with records "
                  f"{direct[-1][1]:,.0f}/s", flush=True)  # fmt: skip
            agent.append(_agent_run(settings, source, len(products), run))
            ratios.append(agent[-1] / direct[-1][0])
        model_only = statistics.median(d[0] for d in direct)
        full = statistics.median(d[1] for d in direct)
        backend.close()
        print(f"\nmedians of {args.runs} runs, {len(products):,} products, model batch "
              f"{args.batch_size}, classifier v{backend.version}:")  # fmt: skip
        print(f"direct model calls:            {model_only:,.0f} products/s")
        print(f"direct calls + decode/records: {full:,.0f} products/s")
        print(f"classify agent (worker):       {statistics.median(agent):,.0f} products/s")
        print(f"agent / direct model calls, per run: {', '.join(f'{r:.2f}' for r in ratios)}; "
              f"median {statistics.median(ratios):.2f}")  # fmt: skip
        print(f"({os.cpu_count()} cores, Python {sys.version.split()[0]}, broker on this machine)")
    finally:
        localkafka.stop(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
