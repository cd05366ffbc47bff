"""Dead-letter replay: send dead letters' original records back to their stage once the cause is fixed.

    prodcat deadletters replay --stage S [--reason R ...] [--since T] [--dry-run]

Reads the dead-letter topic from ``--since`` (or its beginning) up to its end when the command
starts, keeps the dead letters of stage ``S`` whose reason matches one of ``--reason`` (shell
patterns: ``image_*``), and re-publishes each one's original key, value and headers to the topic it
was read from (``source_topic``), with the header ``prodcat-replay-of: <topic>/<partition>/<offset>``
naming the dead letter. The stage then processes it like any input: it becomes an output or,
if the cause is not fixed, a new dead letter (which a later replay may send again).

**Once each.** After the broker has acknowledged the replayed records, a marker per dead letter is
written to the compacted topic ``products.deadletter.replays`` (key = the dead letter's position);
a later replay skips dead letters that have a marker, so running the command twice sends nothing
twice. A crash between the two writes can replay a record a second time (at-least-once, as
everywhere in prodcat). Dead letters whose original bytes were truncated (the dead-letter topic
refused the whole) or are absent cannot be replayed; they are counted, not sent.
"""

from __future__ import annotations

import fnmatch
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from confluent_kafka import (
    Consumer,
    KafkaException,
)
from tqdm import tqdm

from prodcat.core.kafka_config import librdkafka_config
from prodcat.core.settings import Settings
from prodcat.schemas.exceptions import SerdeError
from prodcat.schemas.serde import serde_for
from prodcat.streams.acked import AckedProducer, Headers
from prodcat.streams.compacted import (
    read_compacted,
    read_until_end,
    time_range,
    topic_partitions,
)
from prodcat.streams.exceptions import StreamsError, TopicError

__all__ = ["REPLAY_HEADER", "ReplayReport", "replay_dead_letters"]

#: The header a replayed record carries: the position of the dead letter it replays.
REPLAY_HEADER = "prodcat-replay-of"
_TRUNCATED = "[original_value truncated"


@dataclass
class ReplayReport:
    """What a replay found and did."""

    stage: str
    read: int = 0
    matched: int = 0
    replayed: int = 0
    already_replayed: int = 0
    truncated: int = 0
    no_value: int = 0
    undecodable: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_topic: Counter[str] = field(default_factory=Counter)
    dry_run: bool = False

    def format(self) -> str:
        verb = "would replay" if self.dry_run else "replayed"
        lines = [
            f"{self.read:,} dead letters read; {self.matched:,} of stage {self.stage} matched; "
            f"{verb} {self.replayed:,}",
            f"  skipped: {self.already_replayed:,} replayed before, {self.truncated:,} with "
            f"truncated originals, {self.no_value:,} without a value, {self.undecodable:,} "
            "undecodable",
        ]
        for reason, count in self.by_reason.most_common():
            lines.append(f"  reason {reason}: {count:,}")
        for topic, count in self.by_topic.most_common():
            lines.append(f"  → {topic}: {count:,}")
        return "\n".join(lines)


def _position(topic: str, partition: int, offset: int) -> str:
    return f"{topic}/{partition}/{offset}"


def _dead_letter_messages(
    settings: Settings, since_ms: int | None, timeout_s: float
) -> Iterator[tuple[str, bytes]]:
    """(position, value) of every dead letter from ``since_ms`` up to the end at the start."""
    topic = settings.topics.deadletter
    consumer = Consumer(
        librdkafka_config(
            settings.kafka,
            **{
                "group.id": f"prodcat-replay-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            },
        )
    )
    try:
        partitions = topic_partitions(consumer, topic, settings.kafka.bootstrap_servers)
        starts, ends = time_range(consumer, topic, partitions, since_ms)
        for msg in read_until_end(consumer, topic, starts, ends, timeout_s):
            yield _position(topic, msg.partition() or 0, msg.offset() or 0), msg.value() or b""
    except KafkaException as exc:
        raise StreamsError(f"reading {topic}: {exc}") from exc
    finally:
        consumer.close()


def replay_dead_letters(
    settings: Settings,
    *,
    stage: str,
    reasons: Sequence[str] = (),
    since_ms: int | None = None,
    dry_run: bool = False,
    progress: bool = True,
    timeout_s: float = 600.0,
) -> ReplayReport:
    """Replay the dead letters of ``stage`` (see the module docstring); returns what was done."""
    topics = settings.topics
    serde = serde_for("DeadLetter", settings.serde.registry_url, topic=topics.deadletter)
    try:
        done = {key.decode() for key in read_compacted(settings.kafka, topics.replays).values}
    except TopicError as exc:
        raise StreamsError(
            f"{exc}; create it with `prodcat topics create` (it records what was replayed)"
        ) from exc
    report = ReplayReport(stage, dry_run=dry_run)
    sender = None if dry_run else AckedProducer(settings.kafka, what="replayed records", acks="all")
    markers: list[tuple[str, str, str]] = []
    bar = tqdm(unit="dl", desc=f"dead letters of {stage}", disable=not progress)
    for position, value in _dead_letter_messages(settings, since_ms, timeout_s):
        report.read += 1
        bar.update(1)
        try:
            letter = serde.decode(value)
        except SerdeError:
            report.undecodable += 1
            continue
        kind = str(letter.get("error_kind") or "")
        if letter.get("stage") != stage:
            continue
        if reasons and not any(fnmatch.fnmatchcase(kind, pattern) for pattern in reasons):
            continue
        report.matched += 1
        if position in done:
            report.already_replayed += 1
            continue
        original = letter.get("original_value")
        if original is None:
            report.no_value += 1
            continue
        if _TRUNCATED in str(letter.get("message") or ""):
            report.truncated += 1
            continue
        target = str(letter["source_topic"])
        originals = (letter.get("original_headers") or {}).items()
        headers: Headers = [(k, v) for k, v in originals if k != REPLAY_HEADER]
        headers.append((REPLAY_HEADER, position.encode()))
        if sender is not None:
            sender.send(target, letter.get("original_key"), original, headers)
        markers.append((position, target, kind))
        report.replayed += 1
        report.by_reason[kind] += 1
        report.by_topic[target] += 1
    bar.close()
    if sender is not None and markers:
        sender.flush()  # the replayed records first: a marker never claims an unsent replay
        now_ms = time.time_ns() // 1_000_000
        for position, target, kind in markers:
            marker = {"replayed_at": now_ms, "to": target, "stage": stage, "error_kind": kind}
            sender.send(topics.replays, position.encode(), json.dumps(marker).encode(), [])
        sender.flush()
    return report
