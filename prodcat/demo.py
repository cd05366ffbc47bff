"""``make demo``: the whole pipeline on one machine with embedded defaults, and a printed summary.

Starts a fresh local Kafka broker, creates the topics, starts a normalisation worker process, replays
the shared Flipkart and Myntra feeds plus a few malformed events, reads every output back, prints a
summary (throughput, counts per feed, dead letters by reason, examples), and stops everything.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
from collections import Counter
from typing import Any

from prodcat import localkafka
from prodcat.settings import REPO_ROOT, Settings
from schemas.serde import serde_for
from streams.readback import Record, read_topics
from streams.replay import RawEvent, dataset_events, replay
from streams.topics import ensure_topics, topic_specs
from streams.worker_process import start_worker, stop_worker, wait_worker_ready

logger = logging.getLogger(__name__)

DEMO_HOME = REPO_ROOT / "var" / "demo"

#: What real feeds also send now and then; each must end as a dead letter with its reason.
MALFORMED = [
    RawEvent("flipkart", b"flipkart:truncated", b'{"uniq_id": "x1", "product_name": "Blue Sh'),
    RawEvent("flipkart", b"flipkart:html", b"<html><body>502 Bad Gateway</body></html>"),
    RawEvent("myntra", b"myntra:no-title", b'{"data": {"id": 7, "brandName": "Roadster"}}'),
    RawEvent("myntra", b"myntra:empty", b"{}"),
]


def run_demo(settings: Settings, limit: int | None = None) -> int:
    if DEMO_HOME.exists():
        shutil.rmtree(DEMO_HOME)
    DEMO_HOME.mkdir(parents=True)
    kafka_cfg = settings.local_kafka.model_copy(update={"home": DEMO_HOME / "kafka"})
    bootstrap = f"{kafka_cfg.host}:{kafka_cfg.port}"
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})}
    )
    print(f"[1/5] starting Apache Kafka on {bootstrap} (data in {kafka_cfg.home})", flush=True)
    localkafka.start(kafka_cfg)
    worker = None
    try:
        print("[2/5] creating topics", flush=True)
        ensure_topics(settings.kafka, topic_specs(settings.topics))
        print("[3/5] starting the normalisation worker", flush=True)
        worker = start_worker(settings, ["normalize"], DEMO_HOME / "worker.log")
        wait_worker_ready(
            worker, settings.worker.metrics_host, settings.worker.metrics_port, "normalize"
        )
        print("[4/5] replaying the Flipkart and Myntra feeds", flush=True)
        started = time.time()
        sent = replay(
            settings.kafka,
            settings.topics.raw,
            itertools.chain(
                dataset_events(settings.data_dir, ["flipkart", "myntra"], limit), MALFORMED
            ),
        )
        print("[5/5] reading the outputs back", flush=True)
        records = read_topics(
            settings.kafka,
            [settings.topics.normalized, settings.topics.deadletter],
            expected=sent.sent,
            timeout_s=300,
        )
        print(_summary(settings, sent.sent, sent.per_feed, sent.seconds, started, records))
        return 0 if len(records) == sent.sent else 1
    finally:
        if worker is not None:
            stop_worker(worker)
        localkafka.stop(kafka_cfg)
        print(f"stopped the worker and Kafka; logs in {DEMO_HOME}", flush=True)


def _summary(
    settings: Settings,
    sent: int,
    per_feed: dict[str, int],
    replay_s: float,
    started: float,
    records: list[Record],
) -> str:
    products = serde_for("Product")
    dead = serde_for("DeadLetter")
    normalized = [r for r in records if r.topic == settings.topics.normalized]
    dead_letters = [r for r in records if r.topic == settings.topics.deadletter]
    last_ms = max((r.timestamp_ms for r in records), default=int(started * 1000))
    pipeline_s = max(1e-3, last_ms / 1000 - started)
    out_by_feed = Counter(r.headers.get("feed", b"?").decode() for r in normalized)
    reasons = Counter(dead.decode(r.value or b"")["error_kind"] for r in dead_letters)
    lines = [
        "",
        "=== prodcat demo summary ===",
        f"inputs replayed     : {sent:,} {per_feed} in {replay_s:.1f}s ({sent / replay_s:,.0f}/s)",
        f"outputs read back   : {len(records):,} ({len(normalized):,} products, "
        f"{len(dead_letters):,} dead letters); every input accounted for: {len(records) == sent}",
        f"pipeline throughput : {len(records) / pipeline_s:,.0f} events/s end to end "
        f"(replay start → last output, {pipeline_s:.1f}s)",
        f"products per feed   : {dict(out_by_feed)}",
        f"dead letters        : {dict(reasons) or 'none'}",
        "examples:",
    ]
    examples: list[dict[str, Any]] = []
    wanted = ["flipkart", "flipkart", "myntra"]  # two from the big feed, one from the other
    for record in normalized:
        product = products.decode(record.value or b"")
        if product["feed"] in wanted and len(product["category_path"]) >= 2:
            wanted.remove(product["feed"])
            examples.append(product)
        if not wanted:
            break
    for product in examples:
        shown = {
            k: product[k]
            for k in (
                "product_id",
                "feed",
                "title",
                "brand",
                "category_path",
                "price",
                "gender",
                "image_urls",
            )
        }
        lines.append("  " + json.dumps(shown, ensure_ascii=False)[:400])
    return "\n".join(lines)
