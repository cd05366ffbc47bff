"""Replay datasets as raw product events, the way affiliate feeds would send them."""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer
from tqdm import tqdm

from prodcat.core.kafka_config import producer_config
from prodcat.core.settings import KafkaSettings
from prodcat.streams.exceptions import ReplayError

logger = logging.getLogger(__name__)

FEEDS = ("flipkart", "myntra", "thumbnails")
#: The demo's product feeds (``prodcat replay`` without ``--feeds``).
DEMO_FEEDS = ("flipkart", "myntra")


@dataclass(frozen=True, slots=True)
class RawEvent:
    feed: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class ReplayResult:
    sent: int
    per_feed: dict[str, int]
    seconds: float


def flipkart_events(data_dir: Path, limit: int | None = None) -> Iterator[RawEvent]:
    """Rows of ``flipkart/flipkart_20k.csv`` as JSON objects of their columns (feed ``flipkart``)."""
    path = data_dir / "flipkart" / "flipkart_20k.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            if limit is not None and i >= limit:
                return
            source_id = row.get("uniq_id") or str(i)
            yield RawEvent(
                "flipkart",
                f"flipkart:{source_id}".encode(),
                json.dumps(row, ensure_ascii=False).encode(),
            )


def myntra_events(data_dir: Path, limit: int | None = None) -> Iterator[RawEvent]:
    """Files of ``myntra/style_json/`` byte for byte, as the feed's API returned them."""
    files = sorted((data_dir / "myntra" / "style_json").glob("*.json"))
    for i, path in enumerate(files):
        if limit is not None and i >= limit:
            return
        yield RawEvent("myntra", f"myntra:{path.stem}".encode(), path.read_bytes())


def thumbnail_events(data_dir: Path, limit: int | None = None) -> Iterator[RawEvent]:
    """Rows of ``myntra/labels.csv`` with their thumbnail as a ``file://`` image URL (feed ``thumbnails``).

    A third feed shape: flat CSV columns in Myntra's catalogue style, and the only products whose
    images can be fetched here (the other feeds' image URLs point to the public internet).
    """
    folder = (data_dir / "myntra" / "images").resolve()
    with (data_dir / "myntra" / "labels.csv").open(encoding="utf-8", newline="") as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            if limit is not None and i >= limit:
                return
            event = {
                "styleId": row["id"],
                "productDisplayName": row["productDisplayName"],
                "gender": row["gender"],
                "category": " > ".join(
                    row[c] for c in ("masterCategory", "subCategory", "articleType") if row[c]
                ),
                "baseColour": row["baseColour"],
                "season": row["season"],
                "usage": row["usage"],
                "imageUrl": (folder / row["filename"]).as_uri(),
            }
            yield RawEvent(
                "thumbnails",
                f"thumbnails:{row['id']}".encode(),
                json.dumps(event, ensure_ascii=False).encode(),
            )


def dataset_events(
    data_dir: Path, feeds: Sequence[str], limit: int | None = None
) -> Iterator[RawEvent]:
    sources = {"flipkart": flipkart_events, "myntra": myntra_events, "thumbnails": thumbnail_events}
    for feed in feeds:
        if feed not in sources:
            raise ReplayError(f"unknown feed {feed!r}; known: {', '.join(FEEDS)}")
        if not data_dir.is_dir():
            raise ReplayError(f"data directory {data_dir} not found (set PRODCAT_DATA_DIR)")
        yield from sources[feed](data_dir, limit)


def replay(
    kafka: KafkaSettings,
    topic: str,
    events: Iterator[RawEvent],
    *,
    rate: float | None = None,
    total: int | None = None,
    progress: bool = True,
    desc: str = "replay",
) -> ReplayResult:
    """Publish ``events`` to ``topic`` (header ``feed``), at most ``rate`` events/s; wait for acks.

    When reading ``events`` fails, the events already produced are still delivered (for up to
    10 s) before the error propagates.
    """
    producer = Producer(producer_config(kafka))
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    per_feed: dict[str, int] = {}
    started = time.monotonic()
    bar = tqdm(total=total, unit="ev", desc=f"{desc} → {topic}", disable=not progress)
    step = max(1, min(500, int(rate // 10))) if rate else 500  # slow rates: a bar that moves
    sent = 0
    try:
        for event in events:
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            _produce(producer, topic, event, on_delivery)
            per_feed[event.feed] = per_feed.get(event.feed, 0) + 1
            sent += 1
            if sent % step == 0:
                bar.update(step)
                producer.poll(0)
        bar.update(sent % step)
        remaining = producer.flush(60)
    except Exception:
        producer.flush(10)
        raise
    finally:
        bar.close()
    if remaining or errors:
        raise ReplayError(f"{remaining} events undelivered, {len(errors)} failed: {errors[:3]}")
    return ReplayResult(sent, per_feed, time.monotonic() - started)


def _produce(
    producer: Producer, topic: str, event: RawEvent, on_delivery: Callable[[Any, Any], None]
) -> None:
    headers: list[tuple[str, str | bytes | None]] = [("feed", event.feed.encode())]
    while True:
        try:
            producer.produce(
                topic, event.value, event.key, headers=headers, on_delivery=on_delivery
            )
            return
        except BufferError:
            producer.poll(0.05)
        except KafkaException as exc:
            raise ReplayError(f"cannot publish to {topic}: {exc}") from exc
