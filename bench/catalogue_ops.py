"""Catalogue operations on a development feed through a real broker: backfill throughput, and what
a rename and a merge of taxonomy nodes touch and cost.

    .venv/bin/python bench/catalogue_ops.py --feed rewe_de [--level 2] [--labels 500]

1. Starts a fresh single-node broker (var/bench-catalogue/kafka); the feed's records (normalised
   with their true category paths, ``../shared/data/feeds/<feed>.jsonl`` + ``.truth.jsonl``) go to
   ``products.normalized``; the tree of the true paths is stored as the taxonomy; keyword rules are
   seeded from it; a linear model is trained on the feed at ``--level`` and exported.
2. Backfill: every product scored through the classify stage (no rate limit): products/s.
3. ``--labels`` random products get a person's label (their true node at the level).
4. A rename of the level-1 node with the most products, then a merge of the two largest sibling
   nodes at the level: each applied with ``change_taxonomy`` (tree, labels, rules, the remapped
   model), then the backfill of the products predicted under the node, both timed.
Prints one table row per change.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from confluent_kafka import Producer
from harness import fresh_broker

from prodcat import localkafka
from prodcat.core.ids import label_key, path_id
from prodcat.core.kafka_config import producer_config
from prodcat.core.settings import (
    KafkaSettings,
    ServingSettings,
    TaxonomySettings,
    TopicNames,
    load_settings,
)
from prodcat.schemas.serde import serde_for
from prodcat.streams.backfill import backfill
from prodcat.streams.feeds.training_data import load_training_data
from prodcat.streams.stage import FEED_HEADER
from prodcat.streams.taxonomy_changes import change_taxonomy
from prodcat.streams.taxonomy_store import publish_taxonomy
from prodcat.streams.topics import ensure_topics, topic_specs
from prodcat.training.rule_seed import seed_any_language
from prodcat.training.rules import dump_rules
from prodcat.training.taxonomy import CategoryTree
from prodcat.training.taxonomy_changes import Change
from prodcat.training.train_command import train_and_export

HOME = Path.cwd() / "var" / "bench-catalogue"
LINEAR = Path(__file__).resolve().parents[1] / "training" / "configs" / "linear.yaml"


def produce(settings: Any, topic: str, records: list[tuple[bytes, bytes]],
            headers: dict[str, bytes] | None = None) -> None:  # fmt: skip
    producer = Producer(producer_config(settings.kafka))
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers or {})
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def _product(e: Any, feed: str) -> dict[str, Any]:
    return {
        "product_id": e.product_id, "feed": feed, "source_id": e.product_id, "title": e.title,
        "brand": e.brand, "category_path": list(e.raw_path), "description": e.description,
        "gender": None, "sizes": [], "price": None, "list_price": None, "image_urls": [],
        "product_url": None, "retailer": None, "attributes": {},
        "content_hash": hashlib.sha1(e.product_id.encode()).hexdigest(), "seen_at": 0,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feed", required=True)
    parser.add_argument("--level", type=int, default=2)
    parser.add_argument("--labels", type=int, default=500)
    parser.add_argument("--port", type=int, default=9392)
    args = parser.parse_args()

    base = load_settings()
    folder = base.data_dir / "feeds"
    data = load_training_data(base, folder / f"{args.feed}.jsonl",
                              truth=folder / f"{args.feed}.truth.jsonl")  # fmt: skip
    examples = [e for e in data.examples if len(e.path) >= args.level]
    local, bootstrap = fresh_broker(base, HOME, args.port)
    uid = uuid.uuid4().hex[:8]
    topics = TopicNames(**{f: f"b{uid}.{getattr(TopicNames(), f)}" for f in TopicNames.model_fields
                           if f != "partitions"}, partitions=4)  # fmt: skip
    settings = base.model_copy(
        update={
            "kafka": KafkaSettings(bootstrap_servers=bootstrap),
            "topics": topics,
            "serving": ServingSettings(model_base=HOME / "models", committee_size=1),
            "taxonomy": TaxonomySettings(
                rules=HOME / "rules.yaml", exclusive_max_depth=args.level, exclusive_min_count=1
            ),
        }
    )
    try:
        ensure_topics(settings.kafka, topic_specs(topics))
        tree = CategoryTree.from_paths([e.path for e in examples], min_count=1, min_root_count=1)
        publish_taxonomy(settings, tree)
        dump_rules(seed_any_language(tree), HOME / "rules.yaml")
        serde = serde_for("Product")
        produce(settings, topics.normalized,
                [(e.product_id.encode(), serde.encode(_product(e, args.feed))) for e in examples],
                {FEED_HEADER: args.feed.encode()})  # fmt: skip
        started = time.perf_counter()
        train_and_export(LINEAR, base.data_dir, HOME / "models", "classifier", args.level,
                         data=data)  # fmt: skip
        trained = time.perf_counter() - started

        started = time.perf_counter()
        scored = backfill(settings, job="all", rate=0, progress=False).scored
        all_s = time.perf_counter() - started

        rng = random.Random(0)
        labelled = rng.sample(examples, min(args.labels, len(examples)))
        labels = serde_for("Label")
        produce(settings, topics.labels, [
            (label_key(e.product_id, "exclusive"), labels.encode({
                "product_id": e.product_id, "objective": "exclusive",
                "category_ids": [path_id(e.path[: args.level])], "source": "human",
                "annotator": "bench", "strategy": "random", "score": None, "time_taken_ms": None,
                "model_version": 1, "labelled_at": 1_000}))
            for e in labelled
        ])  # fmt: skip

        roots = Counter(path_id(e.path[:1]) for e in examples)
        at_level = Counter(path_id(e.path[: args.level]) for e in examples)
        big_root = roots.most_common(1)[0][0]
        parents = Counter(path_id(e.path[: args.level - 1]) for e in examples)
        parent = next(p for p, _ in parents.most_common()
                      if sum(1 for n in tree.descendants(p) if n.depth == args.level) >= 2)  # fmt: skip
        a, b = sorted((n.id for n in tree.descendants(parent) if n.depth == args.level),
                      key=lambda i: -at_level[i])[:2]  # fmt: skip
        print(f"{args.feed}: {len(examples):,} products, {len(tree):,} nodes, level {args.level}; "
              f"linear model trained in {trained:.0f} s; backfill of all: {scored:,} in "
              f"{all_s:.1f} s = {scored / all_s:,.0f} products/s")  # fmt: skip
        print("| feed | change | nodes re-identified | labels rewritten | rules rewritten | "
              "apply s | re-scored | backfill s | products/s |")  # fmt: skip
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        live = tree
        for op in ("rename", "merge"):
            if op == "rename":
                change = Change("rename", big_root, name=live[big_root].name + " (renamed)")
            else:
                change = Change("merge", b, into=a)
            old_path = " > ".join(live[change.node].path)
            started = time.perf_counter()
            report = change_taxonomy(settings, change)
            applied_s = time.perf_counter() - started
            started = time.perf_counter()
            done = backfill(settings, job=f"after-{change.change_id}", category=old_path, rate=0,
                            progress=False)  # fmt: skip
            backfill_s = time.perf_counter() - started
            live = report.applied.after
            if change.op == "merge":
                what = f"merge {old_path} into {' > '.join(report.applied.before[a].path)}"
            else:
                what = f"rename {old_path}"
            print(f"| {args.feed} | {what} | {len(report.applied.ids):,} | "
                  f"{sum(report.labels.values()):,} | {report.rules:,} | {applied_s:.1f} | "
                  f"{done.scored:,} | {backfill_s:.1f} | "
                  f"{done.scored / max(backfill_s, 1e-9):,.0f} |")  # fmt: skip
            if change.op == "rename":  # the merge names its nodes by their new ids
                a = report.applied.ids.get(a, a)
                b = report.applied.ids.get(b, b)
    finally:
        localkafka.stop(local)
    return 0


if __name__ == "__main__":
    sys.exit(main())
