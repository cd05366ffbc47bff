"""Backfill: re-score products already on ``products.normalized`` with the serving model.

    prodcat backfill [--job ID] [--feed F ...] [--since T] [--category C] [--rate N]

After a promotion, a taxonomy change, or on demand. The products go through the classify stage's
own code (:class:`~prodcat.streams.classify_agent.ClassifyStage`: the configured backend, the
committee, calibration, back-off decisions, dead letters), and their predictions go to
``products.predictions`` like the live stage's, with the header ``prodcat-backfill: <job>``.

**A job is a consumer group** (``<app_id>-backfill-<job>``) reading the topic with manual
assignment. When a job starts, its plan is fixed: the end of each partition (products that arrive
later are the live stage's), the filters, and the first offsets (the beginning, or ``--since``'s
offsets); the plan is stored in the metadata of the group's committed offsets, so it lives in
Kafka with the position. After every batch the predictions are acknowledged by the broker, then
the next offsets are committed: a job killed at any point and started again with the same
``--job`` goes on from its last commit and re-scores at most the one batch it had not committed.

**Filters**: ``--feed`` (the ``feed`` header; repeatable), ``--since`` (records written since: the
start offsets come from the broker's time index), ``--category`` (products whose latest
prediction's top category is that node or below it: a category id or a path ``A > B``, read from
the compacted predictions topic at the start). Products filtered out are read, not scored.

**Rate**: at most ``--rate`` products scored per second (``backfill.rate``), so the live classify
stage keeps its share of the model server and the broker.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from tqdm import tqdm

from prodcat.core.ids import category_reference, path_id
from prodcat.core.kafka_config import librdkafka_config
from prodcat.core.settings import Settings
from prodcat.schemas.exceptions import SerdeError
from prodcat.schemas.serde import serde_for
from prodcat.streams.acked import AckedProducer
from prodcat.streams.classify_agent import ClassifyStage, build_stage
from prodcat.streams.compacted import read_compacted, time_range, topic_partitions
from prodcat.streams.exceptions import StreamsError, TopicError
from prodcat.streams.stage import FEED_HEADER

__all__ = ["BACKFILL_HEADER", "BackfillPlan", "BackfillReport", "backfill", "group_id"]

logger = logging.getLogger(__name__)

#: The header of a backfilled prediction: the job that made it.
BACKFILL_HEADER = "prodcat-backfill"
_PLAN_VERSION = 1
#: How long a commit or a read of committed offsets waits through a coordinator change.
COORDINATOR_WAIT_S = 30.0
T = TypeVar("T")


def group_id(settings: Settings, job: str) -> str:
    """The consumer group that holds a job's position and plan."""
    return f"{settings.worker.app_id}-backfill-{job}"


@dataclass(frozen=True)
class BackfillPlan:
    """What a job scores, fixed when it starts: per partition [start, end), and the filters."""

    job: str
    starts: dict[int, int]
    ends: dict[int, int]
    feeds: tuple[str, ...] = ()
    since_ms: int | None = None
    category: str | None = None  # a category id

    def metadata(self) -> str:
        """The plan as stored with every committed offset (starts are the offsets themselves)."""
        return json.dumps(
            {
                "v": _PLAN_VERSION,
                "job": self.job,
                "ends": {str(p): e for p, e in sorted(self.ends.items())},
                "feeds": list(self.feeds),
                "since_ms": self.since_ms,
                "category": self.category,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_metadata(cls, text: str, starts: dict[int, int]) -> BackfillPlan:
        data = json.loads(text)
        if data.get("v") != _PLAN_VERSION:
            raise StreamsError(f"backfill job metadata of an unknown version: {text[:200]}")
        return cls(
            job=str(data["job"]),
            starts=starts,
            ends={int(p): int(e) for p, e in data["ends"].items()},
            feeds=tuple(data.get("feeds") or ()),
            since_ms=data.get("since_ms"),
            category=data.get("category"),
        )

    def same_filters(
        self, feeds: Sequence[str], since_ms: int | None, category: str | None
    ) -> bool:
        return (tuple(feeds), since_ms, category) == (self.feeds, self.since_ms, self.category)


@dataclass
class BackfillReport:
    """What a backfill run read and did."""

    job: str
    resumed: bool = False
    read: int = 0
    scored: int = 0
    dead_letters: int = 0
    deleted: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def format(self) -> str:
        how = "resumed" if self.resumed else "started"
        skipped = ", ".join(f"{n:,} {why}" for why, n in self.skipped.most_common()) or "none"
        rate = self.scored / self.seconds if self.seconds else 0.0
        return (
            f"backfill job {self.job} ({how}): {self.read:,} products read, {self.scored:,} "
            f"scored ({rate:,.0f}/s), {self.dead_letters:,} dead letters, {self.deleted:,} "
            f"deletions passed on; skipped: {skipped}"
        )


class _Input(NamedTuple):
    """A consumed record as the classify stage reads it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp: int | None


def category_id(text: str) -> str:
    """``--category``: a category id as it is, or a path ``A > B`` as its id."""
    try:
        return category_reference(text)[0]
    except ValueError as exc:
        raise StreamsError(
            f"--category {text!r}: give a category id (c_...) or a path (A > B)"
        ) from exc


def products_under(settings: Settings, category: str) -> set[bytes]:
    """Keys of the products whose latest prediction's top category is ``category`` or below."""
    serde = serde_for("Prediction", settings.serde.registry_url, topic=settings.topics.predictions)
    try:
        latest = read_compacted(settings.kafka, settings.topics.predictions)
    except TopicError as exc:
        raise StreamsError(f"{exc}: --category needs the predictions topic") from exc
    keys: set[bytes] = set()
    for key, value in latest.values.items():
        try:
            prediction = serde.decode(value)
        except SerdeError:
            continue
        top = prediction.get("exclusive_top_k") or []
        path = list(top[0].get("path") or []) if top else []
        if any(path_id(path[: depth + 1]) == category for depth in range(len(path))):
            keys.add(key)
    return keys


def backfill(
    settings: Settings,
    *,
    job: str | None = None,
    feeds: Sequence[str] = (),
    since_ms: int | None = None,
    category: str | None = None,
    rate: float | None = None,
    batch_size: int | None = None,
    stage: ClassifyStage | None = None,
    progress: bool = True,
    on_start: Callable[[str, bool], None] | None = None,
) -> BackfillReport:
    """Run (or resume) a backfill job; returns when it reached the end of its plan. See the
    module docstring. ``category`` is a category id or a path; ``rate`` products/s (None:
    ``backfill.rate``; 0: unlimited). ``on_start(job, resumed)`` is told the job once its plan
    is stored."""
    cfg = settings.backfill
    job = job or time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    category = category_id(category) if category else None
    rate = cfg.rate if rate is None else rate
    size = batch_size or cfg.batch_size
    topic = settings.topics.normalized
    group = group_id(settings, job)
    consumer = Consumer(
        librdkafka_config(
            settings.kafka,
            **{
                "group.id": f"{group}-reader",  # reads only; positions live in ``group``
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            },
        )
    )
    committer = _Committer(settings, group, topic)
    try:
        plan, resumed = _plan(consumer, committer, settings, job, tuple(feeds), since_ms, category)
        report = BackfillReport(job, resumed=resumed)
        if on_start is not None:
            on_start(job, resumed)
        wanted = products_under(settings, plan.category) if plan.category else None
        stage = stage or build_stage(settings)
        sender = AckedProducer(settings.kafka, what="backfilled predictions", acks="all")
        _run(
            consumer,
            committer,
            topic,
            sender,
            stage,
            plan,
            wanted,
            report,
            rate=rate,
            size=size,
            progress=progress,
        )
    except KafkaException as exc:
        raise StreamsError(f"backfill of {topic}: {exc}") from exc
    finally:
        consumer.close()
        committer.close()
    return report


class _Committer:
    """The job group's client: reads and commits its offsets (with the plan as metadata). A
    retriable answer (the coordinator loading or moving) is tried again, with a new client each
    time: one whose coordinator lookup went stale can keep answering NOT_COORDINATOR."""

    def __init__(self, settings: Settings, group: str, topic: str) -> None:
        self.config = librdkafka_config(
            settings.kafka, **{"group.id": group, "enable.auto.commit": False}
        )
        self.topic = topic
        self.client = Consumer(self.config)

    def close(self) -> None:
        self.client.close()

    def _renew(self) -> None:
        self.client.close()
        self.client = Consumer(self.config)

    def committed(self, partitions: Sequence[int]) -> list[TopicPartition]:
        wanted = [TopicPartition(self.topic, p) for p in partitions]
        return _retrying(lambda: self.client.committed(wanted, timeout=10), self._renew)

    def commit(self, offsets: Mapping[int, int], plan: BackfillPlan) -> None:
        metadata = plan.metadata()
        commits = [TopicPartition(self.topic, p, o, metadata=metadata) for p, o in offsets.items()]
        _retrying(lambda: self.client.commit(offsets=commits, asynchronous=False), self._renew)


def _plan(
    consumer: Consumer,
    committer: _Committer,
    settings: Settings,
    job: str,
    feeds: tuple[str, ...],
    since_ms: int | None,
    category: str | None,
) -> tuple[BackfillPlan, bool]:
    """The job's stored plan (resumed), or a new one, stored before anything is scored."""
    topic = settings.topics.normalized
    partitions = topic_partitions(consumer, topic, settings.kafka.bootstrap_servers)
    committed = committer.committed(partitions)
    stored = [(tp, tp.metadata) for tp in committed if tp.offset >= 0 and tp.metadata]
    if stored:
        resumed_at = {tp.partition: tp.offset for tp, _ in stored}
        plan = BackfillPlan.from_metadata(stored[0][1], resumed_at)
        given = feeds or since_ms is not None or category is not None
        if given and not plan.same_filters(feeds, since_ms, category):
            raise StreamsError(
                f"backfill job {job} was started with other filters (feeds {list(plan.feeds)}, "
                f"since_ms {plan.since_ms}, category {plan.category}); resume it without "
                "filters, or start a new job (another --job)"
            )
        return plan, True
    starts, ends = time_range(consumer, topic, partitions, since_ms)
    plan = BackfillPlan(job, starts, ends, feeds, since_ms, category)
    committer.commit(starts, plan)
    return plan, False


def _retrying(
    call: Callable[[], T], renew: Callable[[], None], timeout_s: float = COORDINATOR_WAIT_S
) -> T:
    """``call()``, tried again (after ``renew()``) while the broker answers with a retriable
    error (a group's coordinator moving or loading, right after the group is new): at most
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = isinstance(error, KafkaError) and error.retriable()
            if not retriable or time.monotonic() + delay > deadline:
                raise
            logger.info("backfill: %s; trying again", error)
            time.sleep(delay)
            renew()
            delay = min(delay * 2, 2.0)


def _run(
    consumer: Consumer,
    committer: _Committer,
    topic: str,
    sender: AckedProducer,
    stage: ClassifyStage,
    plan: BackfillPlan,
    wanted: set[bytes] | None,
    report: BackfillReport,
    *,
    rate: float,
    size: int,
    progress: bool,
) -> None:
    positions = {p: plan.starts.get(p, plan.ends[p]) for p in plan.ends}
    pending = {p for p, end in plan.ends.items() if positions[p] < end}
    total = sum(plan.ends[p] - positions[p] for p in pending)
    bar = tqdm(total=total, unit="product", desc=f"backfill {plan.job}", disable=not progress)
    consumer.assign([TopicPartition(topic, p, positions[p]) for p in sorted(pending)])
    feeds = {f.encode() for f in plan.feeds}
    job_header = (BACKFILL_HEADER, plan.job.encode())
    started = time.monotonic()
    while pending:
        batch: list[_Input] = []
        advanced: dict[int, int] = {}
        read = 0
        for msg in consumer.consume(size, timeout=0.5):
            err = msg.error()
            partition, offset = msg.partition() or 0, msg.offset() or 0
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    if offset >= plan.ends.get(partition, 0):
                        pending.discard(partition)
                    continue
                if err.retriable():
                    continue
                raise StreamsError(f"reading {topic}: {err}")
            if partition not in pending or offset >= plan.ends[partition]:
                pending.discard(partition)  # written after the job started: the live stage's
                continue
            advanced[partition] = offset + 1
            if offset + 1 >= plan.ends[partition]:
                pending.discard(partition)
            read += 1
            record = _Input(
                topic,
                partition,
                offset,
                msg.key(),
                msg.value(),
                _headers(msg.headers()),
                msg.timestamp()[1],
            )
            why = _skip(record, feeds, wanted)
            if why is not None:
                report.skipped[why] += 1
            else:
                batch.append(record)
        report.read += read
        if batch:
            _score(stage, sender, batch, job_header, report)
        if advanced:  # after the broker acknowledged the batch's predictions
            committer.commit(advanced, plan)
        bar.update(read)
        if rate > 0 and batch:
            ahead = report.scored / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    bar.close()
    report.seconds = time.monotonic() - started


def _headers(
    headers: Mapping[str, str | bytes | None] | Sequence[tuple[str, str | bytes | None]] | None,
) -> list[tuple[str, bytes]]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    return [(k, v.encode() if isinstance(v, str) else (v or b"")) for k, v in pairs]


def _skip(record: _Input, feeds: set[bytes], wanted: set[bytes] | None) -> str | None:
    """Why ``record`` is not scored by this job, or None."""
    if feeds and not any(k == FEED_HEADER and v in feeds for k, v in record.headers):
        return "other feed"
    if wanted is not None and record.value is not None and record.key not in wanted:
        return "other category"
    return None


def _score(
    stage: ClassifyStage,
    sender: AckedProducer,
    batch: list[_Input],
    job_header: tuple[str, bytes],
    report: BackfillReport,
) -> None:
    """Score ``batch`` with the classify stage and wait until the broker has every output."""
    outputs = stage.process(batch, time.time_ns() // 1_000_000)
    for out in outputs:
        if out.topic is None:
            continue
        sender.send(out.topic, out.key, out.value or b"", [*out.headers, job_header])
        if out.error_kind is not None:
            report.dead_letters += 1
        elif out.value is None:
            report.deleted += 1
        else:
            report.scored += 1
    sender.flush()
