"""Normalisation throughput through real Kafka (one worker process) vs the pure function, same run.

    .venv/bin/python bench/normalize_throughput.py [--events 200000] [--runs 3]

1. Starts a fresh single-node broker (var/bench/kafka) and fills a raw topic with ``--events`` events:
   the Flipkart rows plus the Myntra JSONs, cycled.
2. Baseline: ``normalize_event`` + Avro encoding of the same events in this process (median of runs).
3. Worker: for each run, a fresh consumer group and output topics; one ``prodcat worker normalize``
   process drains the backlog. Rate = outputs / (last output timestamp - first output timestamp),
   so start-up and group join are excluded; CPU = the worker's user+system seconds over the run.
Prints medians and the worker/pure ratio.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

from harness import run_settings

from prodcat import localkafka
from prodcat.core.settings import (
    KafkaSettings,
    Settings,
    TopicNames,
    load_settings,
)
from prodcat.schemas.serde import serde_for
from prodcat.streams.exceptions import NormalizationError
from prodcat.streams.normalize import normalize_event
from prodcat.streams.readback import read_topics
from prodcat.streams.replay import RawEvent, dataset_events, replay
from prodcat.streams.topics import ensure_topics, topic_specs
from prodcat.streams.worker_process import start_worker, stop_worker, wait_worker_ready

HOME = Path.cwd() / "var" / "bench"


def _events(data_dir: Path, n: int) -> list[RawEvent]:
    base = list(dataset_events(data_dir, ["flipkart", "myntra"]))
    out = []
    for i, event in enumerate(itertools.islice(itertools.cycle(base), n)):
        out.append(RawEvent(event.feed, event.key + f"#{i // len(base)}".encode(), event.value))
    return out


def _pure(events: list[RawEvent]) -> float:
    serde = serde_for("Product")
    started = time.perf_counter()
    now = time.time_ns() // 1_000_000
    rejected = 0
    for event in events:
        try:
            serde.encode(
                normalize_event(event.value, feed=event.feed, key=event.key, seen_at_ms=now)
            )
        except NormalizationError:
            rejected += 1  # the worker dead-letters these: same work, kept in the count
    return len(events) / (time.perf_counter() - started)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_run(
    settings: Settings, raw_topic: str, n: int, args: argparse.Namespace, run: int
) -> tuple[float, float]:
    """One worker process drains the backlog into fresh output topics: (events/s, events/CPU-s)."""
    uid = uuid.uuid4().hex[:8]
    topics = TopicNames(
        raw=raw_topic,
        normalized=f"bench-{uid}.normalized",
        deadletter=f"bench-{uid}.deadletter",
        partitions=4,
    )
    run_cfg = run_settings(settings, topics, uid, batch_size=args.batch_size)
    ensure_topics(run_cfg.kafka, topic_specs(topics)[1:3])
    proc = start_worker(run_cfg, ["normalize"], HOME / f"worker-{run}.log")
    cpu0 = _cpu_seconds(proc.pid)
    wait_worker_ready(proc, "127.0.0.1", run_cfg.worker.metrics_port, "normalize")
    records = read_topics(
        run_cfg.kafka, [topics.normalized, topics.deadletter], expected=n, timeout_s=600
    )
    cpu = _cpu_seconds(proc.pid) - cpu0
    stop_worker(proc)
    stamps = sorted(r.timestamp_ms for r in records)
    seconds = (stamps[-1] - stamps[0]) / 1000
    print(
        f"worker run {run}: {len(records):,} outputs in {seconds:.2f}s → "
        f"{len(records) / seconds:,.0f}/s; worker CPU {cpu:.1f}s",
        flush=True,
    )
    return len(records) / seconds, len(records) / cpu


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args()

    base_settings = load_settings()
    if HOME.exists():
        shutil.rmtree(HOME)
    cfg = base_settings.local_kafka.model_copy(update={"home": HOME / "kafka"})
    status = localkafka.start(cfg)
    try:
        events = _events(base_settings.data_dir, args.events)
        raw_topic = f"bench-{uuid.uuid4().hex[:8]}.products.raw"
        settings = base_settings.model_copy(
            update={"kafka": KafkaSettings(bootstrap_servers=status.bootstrap)}
        )
        ensure_topics(settings.kafka, topic_specs(TopicNames(raw=raw_topic, partitions=4))[:1])
        fill = replay(settings.kafka, raw_topic, iter(events), progress=False)
        print(f"filled {raw_topic} with {fill.sent:,} events in {fill.seconds:.1f}s", flush=True)

        pure = statistics.median(_pure(events) for _ in range(args.runs))
        print(f"pure function: {pure:,.0f} events/s (median of {args.runs})", flush=True)
        rates, cpu_rates = [], []
        for run in range(args.runs):
            rate, cpu_rate = _worker_run(settings, raw_topic, len(events), args, run)
            rates.append(rate)
            cpu_rates.append(cpu_rate)
        w, c = statistics.median(rates), statistics.median(cpu_rates)
        print(f"\nmedians of {args.runs} runs, {len(events):,} events, batch {args.batch_size}:")
        print(f"pure function: {pure:,.0f} events/s")
        print(
            f"worker: {w:,.0f} events/s wall, {c:,.0f} per worker CPU-second; "
            f"worker/pure = {w / pure:.2f}"
        )
        print(
            f"({os.cpu_count()} cores, Python {sys.version.split()[0]}, broker on the same machine)"
        )
    finally:
        localkafka.stop(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
