"""Fuzzing the normalise stage with mutated real records (issue 18): every input gives exactly one
output, a product or a dead letter with a reason, and nothing raises.

Inputs are the records of every development feed in ``../shared/data/feeds/`` (and the Flipkart
and Myntra events), mutated at random: bytes flipped, truncated, values replaced by other types
(numbers, lists, objects, null, huge strings, deep nesting, NaN), keys dropped or renamed, records
wrapped in arrays, random bytes, tombstones. Half go through the feed's inferred profile (the
production path), half through the profile-free normaliser. ``make test`` runs 20,000 of them;
``make fuzz`` runs 1,000,000 (``PRODCAT_FUZZ_INPUTS``) and prints the accounting.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from prodcat.core.settings import TopicNames
from prodcat.schemas.serde import serde_for
from prodcat.streams.feeds.infer import infer_profile
from prodcat.streams.normalize_agent import NormalizeStage
from prodcat.streams.replay import dataset_events

INPUTS = int(os.environ.get("PRODCAT_FUZZ_INPUTS", "20000"))
TOPICS = TopicNames()


def _records(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Up to 300 parsed records of each development feed, and of the demo datasets."""
    feeds: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((data_dir / "feeds").glob("*.jsonl")):
        if path.name.endswith(".truth.jsonl"):
            continue
        with path.open(encoding="utf-8") as handle:
            feeds[path.stem] = [
                json.loads(line) for _, line in zip(range(300), handle, strict=False)
            ]
    for name in ("flipkart", "myntra"):
        feeds[name] = [json.loads(e.value) for e in dataset_events(data_dir, [name], limit=300)]
    return feeds


_ODD_VALUES: list[Any] = [
    None, 0, -1, 2**63, 1e308, float("nan"), True, "", " ", "\x00\x01", "€" * 5000, "a" * 100_000,
    [], [None], [[[[[]]]]], {}, {"nested": {"deeper": {"deepest": [1, {"x": None}]}}},
    "<script>alert(1)</script>", "12,34 €", "NaN", "-0", "1e999", "\ud7ff\ue000", "🛒" * 50,
]  # fmt: skip


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"k": [value]}
    return value


def mutate(record: dict[str, Any], rng: random.Random) -> bytes | None:
    """One mutated input from a real record."""
    kind = rng.randrange(10)
    data = dict(record)
    keys = list(data) or ["x"]
    if kind == 0:  # a value replaced by another type
        data[rng.choice(keys)] = rng.choice(_ODD_VALUES)
    elif kind == 1:  # keys dropped
        for key in rng.sample(keys, k=rng.randint(1, len(keys))):
            data.pop(key, None)
    elif kind == 2:  # keys renamed
        for key in rng.sample(keys, k=min(3, len(keys))):
            data[f"{key}_{rng.randrange(99)}"] = data.pop(key, None)
    elif kind == 3:  # deep nesting
        data[rng.choice(keys)] = _deep(rng.choice([10, 100, 300]))
    elif kind == 4:  # several values at once
        for key in keys:
            if rng.random() < 0.5:
                data[key] = rng.choice(_ODD_VALUES)
    elif kind == 5:  # wrapped in an array, or a bare value
        return json.dumps(rng.choice([[data], [data, data], "just a string", 42, None])).encode()
    elif kind == 6:  # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
    elif kind == 7:  # a tombstone
        return None
    raw = json.dumps(data, ensure_ascii=rng.random() < 0.5, allow_nan=True).encode()
    if kind == 8:  # bytes flipped
        buffer = bytearray(raw)
        for _ in range(rng.randint(1, 5)):
            if buffer:
                buffer[rng.randrange(len(buffer))] = rng.randrange(256)
        return bytes(buffer)
    if kind == 9:  # truncated
        return raw[: rng.randrange(max(1, len(raw)))]
    return raw


def test_mutated_real_records_each_give_one_output(data_dir: Path) -> None:
    feeds = _records(data_dir)
    profiles = {name: infer_profile(records, feed=name) for name, records in feeds.items()}
    stage = NormalizeStage(TOPICS, serde_for("Product"), serde_for("DeadLetter"), worker="fuzz")
    rng = random.Random(17)
    names = sorted(feeds)
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    for offset in range(INPUTS):
        feed = rng.choice(names)
        value = mutate(rng.choice(feeds[feed]), rng)
        out = stage.process(
            key=b"k%d" % offset,
            value=value,
            headers=[("feed", feed.encode())],
            topic="products.raw",
            partition=0,
            offset=offset,
            now_ms=1_700_000_000_000,
            profile=profiles[feed] if offset % 2 else None,
        )
        assert out.topic in (TOPICS.normalized, TOPICS.deadletter), out
        assert (out.error_kind is None) == (out.topic == TOPICS.normalized)
        outcomes["product" if out.error_kind is None else f"dead letter: {out.error_kind}"] += 1
    seconds = time.perf_counter() - started
    assert sum(outcomes.values()) == INPUTS  # every input accounted for, none raised
    assert outcomes["product"] > INPUTS * 0.2 and len(outcomes) > 3  # the mutations do both
    print(f"\n{INPUTS:,} inputs in {seconds:.1f} s ({INPUTS / seconds:,.0f}/s): "
          + ", ".join(f"{k} {v:,}" for k, v in outcomes.most_common()))  # fmt: skip
