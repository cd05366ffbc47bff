"""The web UI's local view: its size per million products, and how long a start takes to catch
up from the beginning and from a kept view's checkpoint.

    .venv/bin/python bench/ui_view.py [--products 100000] [--new 1000] [--feed flipkart|myntra]

1. Starts a fresh single-node broker (var/bench-ui-view/kafka); ``--products`` normalised products
   of ``--feed`` (its catalogue repeated under new ids: Flipkart's 20k have no descriptions,
   Myntra's 100 have real ones, a median of ~700 characters) go to ``products.normalized``, with an
   annotation request and a label for every tenth.
2. A kept view follows the topics from the beginning: seconds to catch up, and the file's size
   (bytes per product, extrapolated to a million).
3. ``--new`` more products arrive; a second start reuses the view: seconds to catch up.
4. The same second start with a view rebuilt from the beginning (as before the checkpoint).
Prints one table row.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from confluent_kafka import Producer
from harness import fresh_broker

from prodcat import localkafka
from prodcat.core.ids import label_key
from prodcat.core.kafka_config import producer_config
from prodcat.core.settings import KafkaSettings, TopicNames, load_settings
from prodcat.schemas.serde import serde_for
from prodcat.serving.web.follower import TopicFollower
from prodcat.serving.web.view import TopicView
from prodcat.streams.normalize import normalize_event
from prodcat.streams.replay import dataset_events
from prodcat.streams.topics import ensure_topics, topic_specs

ROOT = Path(__file__).resolve().parents[1]


def _catalogue(data_dir: Path, feed: str) -> list[dict[str, object]]:
    return [
        dict(normalize_event(e.value, feed=feed, key=e.key, seen_at_ms=0))
        for e in dataset_events(data_dir, [feed], limit=20_000)
    ]


def _produce(
    bootstrap: str, topics: TopicNames, base: list[dict[str, object]], start: int, count: int
) -> None:
    products, requests, labels = (
        serde_for("Product"),
        serde_for("AnnotationRequest"),
        serde_for("Label"),
    )
    producer = Producer(producer_config(KafkaSettings(bootstrap_servers=bootstrap)))
    for i in range(start, start + count):
        product = dict(base[i % len(base)])
        pid = f"p{i:08d}"
        product["product_id"] = pid
        producer.produce(topics.normalized, key=pid.encode(), value=products.encode(product))
        if i % 10 == 0:
            request = {"product_id": pid, "strategy": "margin", "score": 0.5, "suggestions": [],
                       "model_name": "classifier", "model_version": 1, "requested_at": i}  # fmt: skip
            producer.produce(topics.annotation_requests, key=pid.encode(),
                             value=requests.encode(request))  # fmt: skip
            label = {"product_id": pid, "objective": "exclusive", "category_ids": ["c_000000000001"],
                     "source": "human", "annotator": "a", "labelled_at": i}  # fmt: skip
            producer.produce(topics.labels, key=label_key(pid, "exclusive"),
                             value=labels.encode(label))  # fmt: skip
        producer.poll(0)
    assert producer.flush(120) == 0


def _follow(settings: object, path: Path, keep: bool) -> tuple[TopicView, float]:
    view = TopicView(path, keep=keep, identity="bench")
    follower = TopicFollower(settings, view)  # type: ignore[arg-type]
    started = time.perf_counter()
    follower.start()
    if not follower.wait_ready(1800):
        sys.exit(f"the view did not catch up: {follower.error}")
    seconds = time.perf_counter() - started
    follower.stop()
    return view, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=1_000)
    parser.add_argument("--feed", choices=("flipkart", "myntra"), default="flipkart")
    args = parser.parse_args()
    settings = load_settings()
    data_dir = settings.data_dir
    cfg, bootstrap = fresh_broker(settings, ROOT / "var" / "bench-ui-view", 39492)
    try:
        uid = uuid.uuid4().hex[:8]
        topics = TopicNames(**{f: f"b{uid}.{getattr(TopicNames(), f)}" for f in TopicNames.model_fields
                               if f != "partitions"}, partitions=4)  # fmt: skip
        run = settings.model_copy(
            update={"kafka": KafkaSettings(bootstrap_servers=bootstrap), "topics": topics}
        )
        ensure_topics(run.kafka, topic_specs(topics))
        base = _catalogue(data_dir, args.feed)
        described = sorted(len(str(p.get("description") or "")) for p in base)
        print(f"{args.feed}: {len(base):,} products, description median "
              f"{described[len(described) // 2]:,} characters (max {described[-1]:,})")  # fmt: skip
        _produce(bootstrap, topics, base, 0, args.products)
        with tempfile.TemporaryDirectory() as tmp:
            kept = Path(tmp) / "view.sqlite"
            view, first_s = _follow(run, kept, keep=True)
            size = view.size_bytes()
            view.close()
            _produce(bootstrap, topics, base, args.products, args.new)
            view, resumed_s = _follow(run, kept, keep=True)
            assert view.reused
            view.close()
            view, rebuilt_s = _follow(run, Path(tmp) / "fresh.sqlite", keep=False)
            view.close()
        per_product = size / args.products
        print(
            "| feed | products | view size | bytes/product | per million | catch-up from the beginning "
            "| restart from the checkpoint (+new) | restart rebuilt |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        print(
            f"| {args.feed} | {args.products:,} | {size / 2**20:.1f} MiB | {per_product:,.0f} | "
            f"{per_product * 1e6 / 2**30:.2f} GiB | {first_s:.1f} s | "
            f"{resumed_s:.1f} s (+{args.new:,}) | {rebuilt_s:.1f} s |"
        )
    finally:
        localkafka.stop(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
