"""Soak: every stage of one worker under a fixed input rate for a long time, RSS and lag sampled.

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 200] [--every 30] [--milvus-server]
        [--stages normalize,classify,embed,sample,drift]                          # make soak

The demo's set-up (models, a local broker, the Flipkart tree, one worker running normalize,
classify, embed, sample and drift), then the demo's three feeds replayed in a cycle at ``--rate``
events/s for ``--minutes``. Every ``--every`` seconds: the worker's resident memory (``VmRSS``), its
events in per stage, the largest consumer lag per stage (``prodcat_consumer_lag``), and where its
memory is (the C heap's bytes in use and free, Python's allocated blocks, threads: the worker's
``prodcat_process_*`` series), to tell a leak from fragmentation. Written to
``var/soak/samples.csv``; the summary compares the RSS after 5 minutes with the RSS at the end (the
issue's bound: within ±10%), gives the largest lag seen per stage and the lag at the end, and
whether the worker stayed up. Exit status 1 when the worker exited or the RSS bound is broken.

Vectors go to milvus-lite by default, which runs inside the worker process (its memory is part of
the worker's RSS); ``--milvus-server`` starts a Milvus server on loopback instead
(:mod:`prodcat.localmilvus`), as a deployment runs it, so the RSS is the worker's own.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import shutil
import sys
import threading
import time
import urllib.request
from pathlib import Path

from prodcat import localkafka
from prodcat.core.settings import MilvusSettings, load_settings
from prodcat.demo import FEEDS, STAGES, ensure_models, store_demo_taxonomy
from prodcat.streams.replay import dataset_events, replay
from prodcat.streams.topics import ensure_topics, topic_specs
from prodcat.streams.worker_process import start_worker, stop_worker, wait_worker_ready

HOME = Path("var/soak")
WARM_S = 300.0  # the RSS the end is compared with: after five minutes


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


MEMORY = ("malloc_in_use", "malloc_free", "python_blocks", "threads")


def _metrics(host: str, port: int) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per stage: events in, and the largest lag over its partitions; and where the worker's
    memory is (C heap in use and free, Python's blocks, threads: prodcat.core.metrics)."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found: dict[str, dict[str, float]] = {s: {"in": 0.0, "lag": 0.0} for s in STAGES}
    memory = dict.fromkeys(MEMORY, float("nan"))
    for line in text.splitlines():
        if line.startswith("prodcat_process_malloc_bytes{"):
            kind = line.split('"')[1]
            if f"malloc_{kind}" in memory:
                memory[f"malloc_{kind}"] = float(line.rsplit(" ", 1)[1]) / 2**20
        elif line.startswith(("prodcat_python_allocated_blocks ", "prodcat_process_threads ")):
            name, value = line.split()
            memory["python_blocks" if "blocks" in name else "threads"] = float(value)
        if line.startswith("#") or "{" not in line:
            continue
        name, rest = line.split("{", 1)
        labels, _, value = rest.rpartition("} ")
        stage = next((p.split('"')[1] for p in labels.split(",") if p.startswith("stage=")), None)
        if stage not in found:
            continue
        if name == "prodcat_events_in_total":
            found[stage]["in"] += float(value)
        elif name == "prodcat_consumer_lag":
            found[stage]["lag"] = max(found[stage]["lag"], float(value))
    return found, memory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=200.0, help="input events per second")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--stages", default=",".join(STAGES), help="the worker's stages")
    parser.add_argument("--milvus-server", action="store_true", help="a Milvus server, not lite")
    args = parser.parse_args()
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    base = load_settings()
    if HOME.exists():
        shutil.rmtree(HOME)
    HOME.mkdir(parents=True)
    kafka_cfg = base.local_kafka.model_copy(update={"home": HOME / "kafka"})
    images = (base.data_dir / "myntra" / "images").resolve()
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(
                update={"bootstrap_servers": f"{kafka_cfg.host}:{kafka_cfg.port}"}
            ),
            "images": base.images.model_copy(
                update={"file_roots": (*base.images.file_roots, images)}
            ),
            "milvus": MilvusSettings(uri=str(HOME / "milvus" / "vectors.db")),
        }
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ensure_models(settings)
    milvus_server = None
    if args.milvus_server:
        from prodcat import localmilvus

        milvus_server = localmilvus.start(HOME / "milvus-server")
        settings = settings.model_copy(update={"milvus": MilvusSettings(uri=milvus_server.uri)})
    localkafka.start(kafka_cfg)
    worker = None
    stop = threading.Event()
    try:
        ensure_topics(settings.kafka, topic_specs(settings.topics))
        store_demo_taxonomy(settings)
        worker = start_worker(settings, stages, HOME / "worker.log")
        host, port = settings.worker.metrics_host, settings.worker.metrics_port
        for stage in stages:
            wait_worker_ready(worker, host, port, stage, timeout_s=180)
        events = list(dataset_events(settings.data_dir, FEEDS))
        sent: list[int] = []

        def produce() -> None:
            cycled = itertools.takewhile(lambda _: not stop.is_set(), itertools.cycle(events))
            sent.append(
                replay(
                    settings.kafka, settings.topics.raw, cycled, rate=args.rate, progress=False
                ).sent
            )

        producer = threading.Thread(target=produce, daemon=True)
        started = time.monotonic()
        producer.start()
        end = started + args.minutes * 60
        rows = []
        with (HOME / "samples.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["seconds", "rss_mib", *[f"{s}_in" for s in stages],
                             *[f"{s}_lag" for s in stages], *MEMORY])  # fmt: skip
            while time.monotonic() < end and worker.poll() is None:
                time.sleep(args.every)
                seen, memory = _metrics(host, port)
                row = [round(time.monotonic() - started), round(_rss_mib(worker.pid), 1),
                       *[seen[s]["in"] for s in stages], *[seen[s]["lag"] for s in stages]]  # fmt: skip
                rows.append(row)
                writer.writerow([*row, *(round(memory[m], 1) for m in MEMORY)])
                fh.flush()
                print(f"{row[0]:>6}s rss {row[1]:>7.1f} MiB (malloc in use "
                      f"{memory['malloc_in_use']:.0f}, free {memory['malloc_free']:.0f} MiB; "
                      f"{memory['python_blocks']:,.0f} Python blocks, {memory['threads']:.0f} "
                      "threads)  " + "  ".join(
                    f"{s} in {seen[s]['in']:,.0f} lag {seen[s]['lag']:,.0f}" for s in stages
                ), flush=True)  # fmt: skip
        stop.set()
        producer.join(timeout=60)
        alive = worker.poll() is None
    finally:
        stop.set()
        if worker is not None:
            stop_worker(worker)
        localkafka.stop(kafka_cfg)
        if milvus_server is not None:
            milvus_server.stop()
    warm = next((r for r in rows if r[0] >= WARM_S), rows[0] if rows else None)
    if warm is None:
        print("no sample taken")
        return 1
    last = rows[-1]
    change = last[1] / warm[1] - 1
    lags = {s: max(r[2 + len(stages) + i] for r in rows) for i, s in enumerate(stages)}
    print(
        f"\n{args.minutes:g} min at {args.rate:g} events/s: {sent[0] if sent else '?':,} events sent; "
        f"worker {'alive' if alive else 'EXITED'}; RSS {warm[1]:.1f} MiB at {warm[0]} s, "
        f"{last[1]:.1f} MiB at {last[0]} s ({change:+.1%}); largest lag per stage "
        + ", ".join(f"{s} {v:,.0f}" for s, v in lags.items())
        + "; lag at the end "
        + ", ".join(f"{s} {last[2 + len(stages) + i]:,.0f}" for i, s in enumerate(stages))
    )
    return 0 if alive and abs(change) <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
