"""``prodcat publish FILE --feed NAME``: a feed file's records as raw product events.

One JSON event per record on ``products.raw``, with header ``feed`` like ``prodcat replay``, keyed
``<feed>:<source id>``: the record's own id where a field plainly holds one (an id-named field
whose sampled values are present, unique and token-like), else the record's 0-based position.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from prodcat.core.kafka_config import librdkafka_config
from prodcat.streams.exceptions import ReplayError
from prodcat.streams.feeds.readers import FORMATS, FeedReader, Source
from prodcat.streams.replay import RawEvent, replay

if TYPE_CHECKING:
    from prodcat.core.settings import KafkaSettings

__all__ = [
    "PublishResult",
    "add_arguments",
    "check_topic",
    "feed_events",
    "publish_command",
    "publish_file",
    "source_id_path",
]

logger = logging.getLogger(__name__)

#: Field names (lower case, letters and digits only, namespace prefix dropped) that name an id,
#: most telling first.
ID_NAMES = ("id", "productid", "itemid", "offerid", "articleid", "sku", "uniqid", "gtin", "ean")
_SAMPLE = 200


@dataclass(frozen=True)
class PublishResult:
    sent: int
    seconds: float
    format: str
    source: str


def publish_file(
    kafka: KafkaSettings,
    topic: str,
    source: Source,
    *,
    feed: str,
    format: str | None = None,
    encoding: str | None = None,
    rate: float | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> PublishResult:
    """Publish the records of ``source`` (a path, ``"-"`` or a binary stream) as feed ``feed``."""
    if not feed.strip():
        raise ReplayError("the feed needs a name (--feed NAME): it keys and labels its events")
    with FeedReader(source, format=format, encoding=encoding) as reader:
        logger.info(
            "%s: %s, encoding %s, delimiter %r",
            reader.name,
            reader.format,
            reader.encoding,
            reader.delimiter,
        )
        check_topic(kafka, topic)
        total = reader.total if limit is None else min(limit, reader.total or limit)
        result = replay(
            kafka,
            topic,
            feed_events(reader, feed, limit=limit),
            rate=rate,
            total=total,
            progress=progress,
            desc=f"publish {feed}",
        )
        return PublishResult(result.sent, result.seconds, reader.format, reader.name)


def feed_events(
    records: Iterable[dict[str, Any]], feed: str, *, limit: int | None = None
) -> Iterator[RawEvent]:
    """Each record as a raw event of ``feed``: compact JSON, keyed ``<feed>:<source id>``."""
    records = iter(records) if limit is None else islice(records, limit)
    sample = list(islice(records, _SAMPLE))
    id_path = source_id_path(sample)
    if id_path is None:
        logger.info("feed %s: no id field; events are keyed by record position", feed)
    else:
        logger.info("feed %s: events keyed by %s", feed, ".".join(id_path))
    for position, record in enumerate(chain(sample, records)):
        source_id = _id_value(record, id_path) if id_path else None
        yield RawEvent(
            feed,
            f"{feed}:{position if source_id is None else source_id}".encode(),
            json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str).encode(),
        )


def source_id_path(sample: Sequence[Mapping[str, Any]]) -> tuple[str, ...] | None:
    """The key path (top level, or one level down) of the records' own id, if one is plain."""
    candidates: dict[tuple[str, ...], None] = {}  # in order of appearance
    for record in sample[:_SAMPLE]:
        for key, value in record.items():
            if _norm(key) in ID_NAMES:
                candidates[(key,)] = None
            elif isinstance(value, Mapping):
                for inner in value:
                    if _norm(inner) in ID_NAMES:
                        candidates[(key, inner)] = None
    ranked = sorted(candidates, key=lambda path: (len(path), ID_NAMES.index(_norm(path[-1]))))
    for path in ranked:
        values = [_id_value(record, path) for record in sample]
        present = [v for v in values if v is not None]
        if len(present) >= 0.9 * len(values) and len(set(present)) >= 0.9 * len(present):
            return path
    return None


def check_topic(kafka: KafkaSettings, topic: str, timeout_s: float = 5.0) -> None:
    """Raise :class:`ReplayError`, saying what to do, unless a broker answers and has ``topic``."""
    admin = AdminClient(librdkafka_config(kafka, log_level=0))  # the error says it all, once
    try:
        topics = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise ReplayError(
            f"no Kafka broker answered at {kafka.bootstrap_servers} within {timeout_s:g}s "
            f"({_reason(exc)}): start a local one with "
            "`prodcat dev kafka start`, or point PRODCAT_KAFKA__BOOTSTRAP_SERVERS at your cluster"
        ) from exc
    if topic not in topics:
        raise ReplayError(
            f"topic {topic} does not exist on {kafka.bootstrap_servers}: "
            "create prodcat's topics with `prodcat topics create`"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``prodcat publish``."""
    parser.add_argument(
        "file",
        help="CSV/TSV, JSON, JSON lines, RSS/Atom XML or xlsx file (or its gzip); - for stdin",
    )
    parser.add_argument("--feed", required=True, help="the feed's name (event header and key)")
    parser.add_argument(
        "--format", choices=FORMATS, default=None, help="the file's format (default: detected)"
    )
    parser.add_argument("--encoding", default=None, help="text encoding (default: sniffed)")
    parser.add_argument(
        "--rate", type=_positive_float, default=None, help="events per second (default: max)"
    )
    parser.add_argument("--limit", type=_positive_int, default=None, help="records at most")
    parser.add_argument("--topic", default=None, help="target topic (default: topics.raw)")
    parser.add_argument("--no-progress", action="store_true")


def publish_command(args: argparse.Namespace, *, kafka: KafkaSettings, topic: str) -> int:
    """Run ``prodcat publish`` with :func:`add_arguments`' arguments; print the summary."""
    result = publish_file(
        kafka,
        args.topic or topic,
        args.file,
        feed=args.feed,
        format=args.format,
        encoding=args.encoding,
        rate=args.rate,
        limit=args.limit,
        progress=not args.no_progress,
    )
    rate = result.sent / result.seconds if result.seconds else 0.0
    print(
        f"sent {result.sent} records of {result.source} ({result.format}) as feed {args.feed} "
        f"to {args.topic or topic} in {result.seconds:.1f}s ({rate:,.0f}/s)"
    )
    return 0


def _id_value(record: Mapping[str, Any], path: tuple[str, ...]) -> str | None:
    value: Any = record
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text if text and len(text) <= 100 and not any(c.isspace() for c in text) else None


def _reason(exc: KafkaException) -> str:
    error: Any = exc.args[0] if exc.args else None  # a KafkaError
    return str(error.str()) if hasattr(error, "str") else str(exc)


def _norm(key: str) -> str:
    return "".join(c for c in key.rpartition(":")[2].lower() if c.isalnum())


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value
