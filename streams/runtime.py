"""The one stage runtime: consume a batch → ``process`` → send → commit, for every agent.

A stage is a :class:`StageHandler` (a pure ``process(batch) -> Outputs`` plus optional hooks); the
loop below runs it as a task of the worker's Faust app (same process, lifecycle, signals and
logging) with its own aiokafka consumer group ``<app_id>-<stage>``:

1. ``getmany`` a micro-batch (paused partitions excluded);
2. ``process(batch)`` → :class:`~prodcat.streams.stage.Outputs`; transient errors (broker, registry,
   model server, vector store) are retried with back-off (:func:`with_backoff`, counted in
   ``prodcat_stage_retries_total``); any other exception gets ``BUG_RETRIES`` more tries of the
   batch (counted the same way), then isolates the breaking record by bisection
   (:mod:`prodcat.streams.bisection`) and dead-letters it as ``internal_error`` (alert
   ``ProdcatInternalErrors``), so a bug neither loses the batch nor crash-loops;
3. drop the outputs of partitions revoked while the batch was processed (their new owner answers
   them; counted as ``prodcat_events_skipped_total{reason="revoked"}``), or whose ownership this
   worker cannot prove when its last proof is older than a third of the session timeout (a worker
   frozen past its session wakes before it hears of the rebalance: :meth:`StageRuntime._unproven`
   asks the coordinator first), then send every output
   and wait until the broker has acknowledged all of them. Which send errors are
   retried is decided by :func:`~prodcat.streams.delivery_errors.classify`: a fatal producer
   state rebuilds the producer; a **permanent** rejection (too large, not authorised, no such
   topic) dead-letters the input the output answers (``send_rejected: <error>``) and the batch
   goes on; a dead letter the dead-letter topic itself rejects is sent once more with its original
   bytes truncated (size and SHA-256 kept in its message), and failing that is logged and counted
   (``prodcat_events_skipped_total{reason="deadletter_rejected"}``), never silently dropped;
4. commit, per partition, the offsets below the oldest input the stage still holds
   (``Outputs.held``), or past the batch when it holds none: at-least-once;
5. ``on_tick(now)`` (windows, job checks, held inputs that are ready), sent and committed the same way.

**Exactly-once** (``PRODCAT_WORKER__GUARANTEE=exactly_once``, :mod:`prodcat.streams.transactions`):
steps 3 and 4 become one Kafka transaction per input partition, holding the outputs that answer the
offsets it commits (outputs of inputs past the commit point wait for a later one), and consumers
read committed records only. A transaction that fails for any reason is aborted and its partition
re-read from its committed offset (the stage forgets what it held of it, as on a rebalance), so no
output is written twice and none is lost; a record the broker refuses for good is dead-lettered
in the next try of the same transaction. Outputs of no input are sent at-least-once.

**Deferred inputs.** A stage may hold inputs unanswered; a later ``on_tick`` or ``process`` answers
them (an output whose ``source`` names the input, or ``Outputs.released``). Held inputs are not
committed, so a crash re-delivers them. On a rebalance the runtime forgets the revoked partitions'
progress and calls ``on_revoked(partitions)``: the stage drops what it holds of them (their new
owner re-reads them). **Bound**: a partition with ``max_pending`` held inputs is paused
(``consumer.pause``) until the stage releases some.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence, Set
from typing import Any, TypeVar, cast

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    RebalanceInProgressError,
)

from prodcat.core.kafka_config import aiokafka_config
from prodcat.core.metrics import StageMetrics
from prodcat.core.settings import Settings
from prodcat.streams.batch_sender import BatchSender
from prodcat.streams.bisection import bisect_async
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.delivery_errors import MissingTopicError, Verdict, classify
from prodcat.streams.offsets import PartitionProgress, Progress
from prodcat.streams.stage import (
    Input,
    Outgoing,
    Outputs,
    Position,
    header_map,
    position,
    record_batch,
    source_headers,
)
from prodcat.streams.topics import DEADLETTER_MAX_MESSAGE_BYTES
from prodcat.streams.transactions import PartitionTransactions

logger = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0
#: Further tries of a whole batch after an exception that is not transient, before bisection.
BUG_RETRIES = 2
#: Errors of a commit whose partitions moved (or are moving) to another consumer.
COMMIT_REBALANCED = (CommitFailedError, RebalanceInProgressError, IllegalStateError)
#: Of the original bytes of a dead letter the dead-letter topic rejects, this many are kept.
TRUNCATED_ORIGINAL_BYTES = 64 * 1024


class StageHandler:
    """A stage as the runtime sees it. Override :meth:`process`; the other hooks are optional."""

    #: Held inputs per partition at which the runtime stops fetching that partition.
    max_pending: int = 10_000
    #: Set by the runtime that runs the stage (see :meth:`owns_batch`).
    ownership: Callable[[], Awaitable[bool]] | None = None

    def __init__(self, name: str, topic: str, dead_letters: DeadLetters) -> None:
        self.name = name
        self.topic = topic
        self.dead_letters = dead_letters
        #: Topic followers (``start()``/``stop()``, e.g. a ``TopicFollower``) the default
        #: :meth:`start` starts in order and :meth:`stop` stops in reverse.
        self.followers: list[Any] = []

    def process(self, batch: Sequence[Input]) -> Outputs | Awaitable[Outputs]:
        """The outputs of ``batch`` (records in offset order per partition). Raise only
        TransientErrors for outages; a record the stage cannot use is a dead letter."""
        raise NotImplementedError

    def on_tick(self, now: float) -> Outputs | Awaitable[Outputs | None] | None:
        """Called after every poll (at least every ``batch_within_s``) with ``time.time()``."""
        return None

    def on_revoked(self, partitions: Set[TopicPartition]) -> None:
        """Drop what the stage holds of ``partitions``: another consumer re-reads them."""

    async def owns_batch(self) -> bool:
        """Whether this worker still owns the partitions of the batch ``process`` is working on.
        Await it before a side effect outside Kafka (a vector store write): a worker that was
        frozen past its session timeout must not write after the partitions' new owner. Cheap:
        the coordinator is asked only when the last proof of membership is old. True outside a
        stage runtime."""
        return True if self.ownership is None else await self.ownership()

    async def start(self) -> None:
        """Before the consumer joins its group (e.g. rebuild state, open HTTP sessions); by
        default, start the followers."""
        for follower in self.followers:
            await follower.start()

    async def stop(self) -> None:
        """After the consumer left its group (the worker stopping); by default, stop the
        followers."""
        for follower in reversed(self.followers):
            await follower.stop()

    def observe(
        self, metrics: StageMetrics, outputs: Outputs, seconds: float, oldest_ts: float | None
    ) -> None:
        """Count a call's outputs (default: one input per output; see ``record_batch``)."""
        record_batch(metrics, outputs, seconds, oldest_ts)


def stage_consumer(settings: Settings, stage: str, **overrides: Any) -> AIOKafkaConsumer:
    """A stage's consumer: its own group ``<app_id>-<stage>``, manual commits, from the earliest
    offset, the worker's session timeouts and batch size (``overrides`` for the rest)."""
    worker = settings.worker
    options: dict[str, Any] = {
        "group_id": f"{worker.app_id}-{stage}",
        "client_id": f"{worker.app_id}-{stage}",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": int(worker.session_timeout_s * 1000),
        "heartbeat_interval_ms": int(worker.heartbeat_interval_s * 1000),
        "max_poll_records": worker.batch_size,
        # no record of an aborted or open transaction (exactly-once stages upstream); without
        # transactions this reads the same as read_uncommitted
        "isolation_level": "read_committed",
    }
    return AIOKafkaConsumer(**aiokafka_config(settings.kafka), **{**options, **overrides})


def stage_producer(settings: Settings, stage: str) -> AIOKafkaProducer:
    """The idempotent, acks=all producer a stage sends its outputs with."""
    return AIOKafkaProducer(
        **aiokafka_config(settings.kafka),
        acks="all",
        enable_idempotence=True,
        max_batch_size=1_000_000,
        max_request_size=DEADLETTER_MAX_MESSAGE_BYTES + 1_000_000,
        client_id=f"{settings.worker.app_id}-{stage}",
    )


async def with_backoff(
    stage: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    metrics: StageMetrics | None = None,
    rebuild: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """Retry through outages of the broker, registry, model server or vector store; raise a
    permanent error at once (:func:`~prodcat.streams.delivery_errors.classify`). A fatal producer
    state calls ``rebuild`` (a new producer) before the next try; without it, it is permanent."""
    delay = RETRY_INITIAL_S
    tries = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:
            verdict = classify(exc, tries)
            if verdict is Verdict.PERMANENT or (verdict is Verdict.REBUILD and rebuild is None):
                raise
            tries += 1
            if metrics is not None:
                metrics.retried(type(exc).__name__)
            logger.warning(
                "%s: failed (%s: %s); retrying in %.1fs", stage, type(exc).__name__, exc, delay
            )
            if verdict is Verdict.REBUILD and rebuild is not None:
                await rebuild()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


async def _maybe_await(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await value
    return value


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, runtime: StageRuntime) -> None:
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.runtime.revoked(set(revoked))
        if self.runtime.transactions is not None:
            await self.runtime.transactions.forget(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.runtime.progress.assign(assigned)
        self.runtime.proven_at = time.monotonic()  # the join proved this member's generation
        self.runtime.metrics.ready.set(1)


class StageRuntime:
    """Runs one :class:`StageHandler` over its topic until cancelled (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        stage: StageHandler,
        metrics: StageMetrics,
        *,
        batch_size: int | None = None,
        within_s: float | None = None,
    ) -> None:
        worker = settings.worker
        self.settings = settings
        self.stage = stage
        self.metrics = metrics
        self.batch_size = batch_size or worker.batch_size
        self.within_s = within_s or worker.batch_within_s
        self.consumer = stage_consumer(
            settings,
            stage.name,
            max_poll_records=self.batch_size,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            fetch_max_wait_ms=int(self.within_s * 1000),
        )
        self.producer = stage_producer(settings, stage.name)
        self.sender = BatchSender(self.producer)
        self.progress = Progress()
        self.paused: set[TopicPartition] = set()
        self.transactions = (
            PartitionTransactions(settings, stage.name, f"{worker.app_id}-{stage.name}")
            if worker.guarantee == "exactly_once"
            else None
        )
        self._inputs: Sequence[Input] = ()
        #: The records of the inputs the stage holds (``Outputs.held``), until answered: an
        #: output answering one later (from ``on_tick``) that the broker refuses is dead-lettered
        #: with that input's bytes, like an output of the batch it came in.
        self._held_inputs: dict[Position, Input] = {}
        self._rewinds = 0
        #: When this worker last proved it was a member of its group's current generation (a
        #: join, a commit the coordinator accepted): ``_unproven`` asks again when it is older
        #: than ``proof_ttl_s``, a third of the session timeout.
        self.proven_at = float("-inf")
        self.proof_ttl_s = worker.session_timeout_s / 3
        self._batch_offsets: dict[TopicPartition, int] = {}
        self._batch_lost: set[TopicPartition] = set()
        stage.ownership = self._owns_batch

    async def run(self) -> None:
        await self.stage.start()
        try:
            self.consumer.subscribe([self.stage.topic], listener=_Listener(self))
            await self.producer.start()
            await self.consumer.start()
            timeout_ms = int(self.within_s * 1000)
            while True:
                fetched = await self.consumer.getmany(
                    timeout_ms=timeout_ms, max_records=self.batch_size
                )
                if fetched:
                    await self._batch(fetched)
                await self._tick()
        finally:
            if self.transactions is not None:
                await self.transactions.close()
            await self.consumer.stop()
            await self.producer.stop()
            await self.stage.stop()

    def revoked(self, partitions: set[TopicPartition]) -> None:
        self.progress.revoke(partitions)
        self._forget_held(partitions)
        self.paused -= partitions
        self.stage.on_revoked(partitions)

    async def _batch(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        started = time.perf_counter()
        owners = self.progress.snapshot(fetched)
        records = [m for messages in fetched.values() for m in messages]
        self._batch_offsets = {
            tp: point if (point := part.commit_point()) is not None else fetched[tp][0].offset
            for tp, part in owners.items()
        }
        self._batch_lost = set()
        try:
            outputs = await self.process(records)
            lost = self._batch_lost | await self._unproven(self._batch_offsets)
        finally:
            self._batch_offsets = {}
        outputs = self._fenced(outputs, owners, lost)
        if outputs.held:
            batch = {position(r): r for r in records}
            for pos in outputs.held:
                if (record := batch.get(pos)) is not None:
                    self._held_inputs[pos] = record
        await self._send(outputs, records)
        for tp, messages in fetched.items():
            part = owners.get(tp)
            if part is not None and tp not in lost:
                self.progress.consumed(part, messages[-1].offset + 1)
        await self._settle(outputs, owners)
        oldest = min((r.timestamp for r in records if r.timestamp), default=None)
        self.stage.observe(
            self.metrics, outputs, time.perf_counter() - started, oldest / 1000 if oldest else None
        )
        assigned = self.consumer.assignment()
        for tp, messages in fetched.items():
            if tp in assigned:  # highwater() asserts the partition is (still) ours
                next_offset = messages[-1].offset + 1
                highwater = self.consumer.highwater(tp)
                self.metrics.set_lag(tp.topic, tp.partition, highwater, next_offset)

    async def _owns_batch(self) -> bool:
        """``StageHandler.owns_batch`` while a batch is processed: False once this worker cannot
        show it still owns every partition of the batch (then the whole batch is dropped: nothing
        of it is sent or committed; the new owner re-reads it)."""
        self._batch_lost |= await self._unproven(self._batch_offsets)
        return not self._batch_lost

    async def _unproven(self, offsets: dict[TopicPartition, int]) -> set[TopicPartition]:
        """At least once, of the partitions in ``offsets`` (each with the offset that may be
        committed for it before this batch), those this worker can no longer show it owns.

        A worker that was frozen (SIGSTOP, a long pause, a loop blocked past the session timeout)
        wakes before its heartbeat tells it that the group moved on; the rebalance callback has
        not run, so ``_fenced`` alone would send its batch after the new owner's answers (a stale
        value on a compacted topic, a deleted vector back). When the last proof of membership is
        older than ``proof_ttl_s``, those offsets (already committed, or safe to commit) are
        committed again: the coordinator accepts it from a member of the current generation only.
        Refused, every partition is lost (aiokafka rejoins; their owner re-reads them). What is
        left is a freeze between this check and the send: exactly once closes it."""
        if (
            self.transactions is not None
            or not offsets
            or time.monotonic() - self.proven_at < self.proof_ttl_s
        ):
            return set()
        # Partitions revoked meanwhile are ``_fenced``'s (their callback ran); asking about them
        # would fail the check for the partitions still owned, with no rejoin to re-read them.
        assigned = self.consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return set()
        asked = time.monotonic()
        try:
            await self.consumer.commit(offsets)
        except COMMIT_REBALANCED as exc:
            # aiokafka rejoins: every partition is read again from its commit
            logger.warning(
                "%s: no longer a member of the group's generation (%s); this batch's outputs "
                "are not sent",
                self.stage.name,
                exc,
            )
            return set(offsets)
        except Exception as exc:  # an outage: the batch goes on, at least once
            logger.warning("%s: could not confirm membership (%s)", self.stage.name, exc)
            return set()
        self.proven_at = asked
        return set()

    def _fenced(
        self,
        outputs: Outputs,
        owners: dict[TopicPartition, PartitionProgress],
        lost: Set[TopicPartition] = frozenset(),
    ) -> Outputs:
        """``outputs`` less those answering inputs of partitions revoked while the batch was
        processed, or ``lost`` (their new owner re-reads them from the last commit): a worker
        that lost a partition does not write a stale answer after the new owner's. What is still
        sent is what answers partitions this worker owns when the send starts."""
        current = self.progress.partitions
        revoked = {tp for tp, part in owners.items() if current.get(tp) is not part} | set(lost)
        if not revoked:
            return outputs
        gone = {(tp.topic, tp.partition) for tp in revoked}

        def kept(out: Outgoing) -> bool:
            return out.source is None or (out.source.topic, out.source.partition) not in gone

        fenced = Outputs(
            [o for o in outputs.oks if kept(o)],
            [o for o in outputs.dead if kept(o)],
            [p for p in outputs.held if (p.topic, p.partition) not in gone],
            [p for p in outputs.released if (p.topic, p.partition) not in gone],
        )
        dropped = len(outputs) - len(fenced)
        if dropped:
            logger.warning(
                "%s: %d outputs of partitions revoked during their batch not sent (%s)",
                self.stage.name,
                dropped,
                sorted(f"{tp.topic}/{tp.partition}" for tp in revoked),
            )
            self.metrics.skipped.labels(self.stage.name, "revoked").inc(dropped)
        return fenced

    async def process(self, batch: Sequence[Input]) -> Outputs:
        """The stage's outputs for ``batch``. A transient error is retried with back-off; any
        other exception (a bug, not bad input) gets ``BUG_RETRIES`` more tries of the whole batch
        (a model card being written, a race), each counted, and then the record that makes
        ``process`` raise is isolated by bisection and dead-lettered as ``internal_error``."""

        async def attempt(part: Sequence[Input]) -> Outputs:
            return await with_backoff(
                self.stage.name,
                lambda: _maybe_await(self.stage.process(part)),
                metrics=self.metrics,
            )

        delay = RETRY_INITIAL_S
        for _ in range(BUG_RETRIES):
            try:
                return await attempt(batch)
            except Exception as exc:
                self.metrics.retried(type(exc).__name__)
                logger.warning(
                    "%s: processing a batch of %d failed (%s: %s); trying again in %.1fs",
                    self.stage.name,
                    len(batch),
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        return await bisect_async(
            batch, attempt, failure=Exception, isolate=self._internal_error, combine=Outputs.merge
        )

    def _internal_error(self, record: Input, exc: Exception) -> Outputs:
        headers = header_map(record.headers)
        out_headers, feed = source_headers(headers, record.topic, record.partition, record.offset)
        message = f"{type(exc).__name__}: {exc}"
        logger.error(
            "%s: processing %s/%d/%d failed unexpectedly",
            self.stage.name,
            record.topic,
            record.partition,
            record.offset,
            exc_info=exc,
        )
        now_ms = time.time_ns() // 1_000_000
        letter = self.stage.dead_letters.outgoing(
            record, headers, out_headers, feed, "internal_error", message, now_ms
        )
        return Outputs(dead=[letter])

    async def _tick(self) -> None:
        started = time.perf_counter()
        stage = self.stage
        try:
            outputs = await with_backoff(
                stage.name, lambda: _maybe_await(stage.on_tick(time.time())), metrics=self.metrics
            )
        except Exception:
            logger.exception("%s: on_tick failed; trying again at the next tick", stage.name)
            return
        if outputs is None:
            return
        answering = self.progress.snapshot(
            {TopicPartition(o.source.topic, o.source.partition) for o in outputs if o.source}
        )
        lost = await self._unproven(
            {
                tp: point
                for tp, part in answering.items()
                if (point := part.commit_point()) is not None
            }
        )
        outputs = self._fenced(outputs, answering, lost)
        await self._send(outputs, ())
        await self._settle(outputs, {})
        if len(outputs):
            stage.observe(self.metrics, outputs, time.perf_counter() - started, None)

    async def _send(self, outputs: Outputs, records: Sequence[Input]) -> None:
        """Send ``outputs`` (``records``: the batch's inputs, for dead letters). In exactly-once
        mode the outputs of inputs wait for their partition's transaction (``_commit``)."""
        if self.transactions is not None:
            self._inputs = records
            sourceless = []
            for out in outputs:
                if out.source is None:
                    sourceless.append(out)
                else:
                    tp = TopicPartition(out.source.topic, out.source.partition)
                    self.transactions.add(tp, (out,))
            outputs = Outputs.of(sourceless)
        if not len(outputs):
            return
        rejected = await with_backoff(
            self.stage.name,
            lambda: self._send_reporting(list(outputs)),
            metrics=self.metrics,
            rebuild=self._rebuild_producer,
        )
        if not rejected:
            return
        logger.warning(
            "%s: the broker rejected %d outputs for good; sending them one by one",
            self.stage.name,
            len(rejected),
        )
        letters: list[Outgoing] = []
        lettered: set[Position] = set()
        inputs = self._input_records(records)
        for record, error in rejected:
            try:
                if isinstance(error, MissingTopicError):
                    raise error  # no need to ask the broker again, record by record
                await self._send_with_backoff([record])
            except Exception as exc:
                letter = self._rejected(record, exc, inputs, lettered)
                if letter is not None:
                    letters.append(letter)
        for letter in letters:
            await self._send_dead_letter(letter)

    async def _send_reporting(
        self, records: list[Outgoing]
    ) -> list[tuple[Outgoing, BaseException]]:
        """Send ``records``. When no batch was rejected for good, raise the first error (the
        caller retries them all); else return the records of every failed batch with its error,
        to be sent one by one: batches pipelined behind a rejected one on its partition fail with
        an out-of-order sequence, so the producer is rebuilt first."""
        failed = await self.sender.send_reporting(records)
        verdicts = {classify(error) for _group, error in failed}
        if failed and Verdict.PERMANENT not in verdicts:
            raise failed[0][1]
        if Verdict.REBUILD in verdicts:
            await self._rebuild_producer()
        return [(cast(Outgoing, r), error) for group, error in failed for r in group]

    async def _send_with_backoff(self, records: list[Outgoing]) -> None:
        await with_backoff(
            self.stage.name,
            lambda: self.sender.send_all(records),
            metrics=self.metrics,
            rebuild=self._rebuild_producer,
        )

    async def _rebuild_producer(self) -> None:
        """A new idempotent producer after a fatal state (e.g. an out-of-order sequence)."""
        logger.warning("%s: the producer is in a fatal state; rebuilding it", self.stage.name)
        try:
            await self.producer.stop()
        except Exception:
            logger.exception("%s: stopping the broken producer failed", self.stage.name)
        self.producer = stage_producer(self.settings, self.stage.name)
        await self.producer.start()
        self.sender = BatchSender(self.producer)

    def _rejected(
        self,
        record: Outgoing,
        exc: Exception,
        inputs: dict[Position, Input],
        lettered: set[Position],
    ) -> Outgoing | None:
        """The dead letter of the input a permanently rejected ``record`` answers, if any."""
        reason = f"send_rejected: {type(exc).__name__}: {exc}"
        if record.topic == self.stage.dead_letters.topic:
            return record  # a dead letter the topic refused: truncated by _send_dead_letter
        source = record.source
        original = inputs.get(source) if source is not None else None
        if original is None or source is None:
            logger.error(
                "%s: an output to %s of no input of this batch was rejected (%s); skipped",
                self.stage.name,
                record.topic,
                reason,
            )
            self.metrics.skipped.labels(self.stage.name, "send_rejected").inc()
            return None
        if source in lettered:
            return None
        lettered.add(source)
        headers = header_map(original.headers)
        out_headers, feed = source_headers(
            headers, original.topic, original.partition, original.offset
        )
        now_ms = time.time_ns() // 1_000_000
        self.metrics.dead_letters.labels(
            self.stage.name, self.metrics.feed_label(feed), "send_rejected"
        ).inc()
        return self.stage.dead_letters.outgoing(
            original, headers, out_headers, feed, "send_rejected", reason, now_ms
        )

    async def _send_dead_letter(self, letter: Outgoing) -> None:
        """Send a dead letter; if the dead-letter topic rejects it, once more truncated; then
        log and count it (never a hostage, never silent)."""
        try:
            await self._send_with_backoff([letter])
            return
        except Exception as exc:
            first = exc
        try:
            truncated = self._truncated(letter, first)
            await self._send_with_backoff([truncated])
            logger.warning(
                "%s: a dead letter was rejected (%s); sent with its original bytes truncated",
                self.stage.name,
                first,
            )
        except Exception as exc:
            logger.error(
                "%s: the dead-letter topic %s rejected a dead letter of %s (%s, then %s); skipped",
                self.stage.name,
                letter.topic,
                letter.source,
                first,
                exc,
            )
            self.metrics.skipped.labels(self.stage.name, "deadletter_rejected").inc()

    def _truncated(self, letter: Outgoing, exc: Exception) -> Outgoing:
        serde = self.stage.dead_letters.serde
        record = serde.decode(letter.value or b"")
        original: bytes = record.get("original_value") or b""
        keep = original[:TRUNCATED_ORIGINAL_BYTES]
        note = (
            f" [original_value truncated to {len(keep)} of size={len(original)} bytes, "
            f"sha256={hashlib.sha256(original).hexdigest()}; the dead-letter topic refused "
            f"the whole: {type(exc).__name__}]"
        )
        record["original_value"] = keep
        record["message"] = (str(record.get("message") or "")[: 2000 - len(note)]) + note
        return Outgoing(
            letter.topic,
            letter.key,
            serde.encode(record),
            letter.headers,
            letter.feed,
            letter.error_kind,
            letter.skipped,
            letter.source,
        )

    async def _settle(
        self, outputs: Outputs, owners: dict[TopicPartition, PartitionProgress]
    ) -> None:
        """Note held and answered inputs, commit what may be committed, pause or resume."""
        progress = self.progress
        for pos in outputs.held:
            progress.hold(owners, pos)
        answered = list(outputs.released)
        if progress.held_total:
            answered += [out.source for out in outputs if out.source is not None]
        for pos in answered:
            progress.release(pos)
        await self._commit()
        if self._held_inputs:
            for pos in answered:
                self._held_inputs.pop(pos, None)
        self._pause_over_limit()

    def _input_records(self, records: Sequence[Input]) -> dict[Position, Input]:
        """The inputs outputs may answer: ``records`` (the batch) and the held ones."""
        return {**self._held_inputs, **{position(r): r for r in records}}

    def _forget_held(self, partitions: Set[TopicPartition]) -> None:
        if self._held_inputs:
            gone = {(tp.topic, tp.partition) for tp in partitions}
            self._held_inputs = {
                pos: r
                for pos, r in self._held_inputs.items()
                if (pos.topic, pos.partition) not in gone
            }

    async def _commit(self) -> None:
        offsets = self.progress.to_commit()
        if not offsets:
            return
        assigned = self.consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if self.transactions is not None:
            for tp, offset in offsets.items():
                await self._commit_transaction(tp, offset)
            return
        asked = time.monotonic()
        try:
            await self.consumer.commit(offsets)
        except COMMIT_REBALANCED as exc:
            # The partitions moved; their new owner re-processes from the last commit.
            logger.warning(
                "%s: commit after a rebalance failed (%s); outputs may repeat", self.stage.name, exc
            )
            return
        self.proven_at = asked
        self.progress.committed(offsets)

    async def _commit_transaction(self, tp: TopicPartition, offset: int) -> None:
        """Commit ``tp`` up to ``offset`` with the outputs of its inputs before it, in one
        transaction; on any failure, abort and re-read the partition from its committed offset."""
        if self.transactions is None:
            return
        records = self.transactions.ready(tp, offset)
        lettered: set[Position] = set()
        try:
            for _ in range(3):  # a refused record, then a refused dead letter, then truncated
                refused = await self.transactions.commit(tp, records, offset)
                if not refused:
                    self.progress.committed({tp: offset})
                    self._rewinds = 0
                    return
                records = self._replace_refused(records, refused, lettered)
            raise RuntimeError(f"the broker kept refusing records of {tp} for good")
        except Exception as exc:
            await self._rewind(tp, exc)

    def _replace_refused(
        self,
        records: list[Outgoing],
        refused: list[tuple[list[Outgoing], BaseException]],
        lettered: set[Position],
    ) -> list[Outgoing]:
        """``records`` with each one the broker refused for good replaced by the dead letter of
        its input (a refused dead letter by itself, truncated)."""
        inputs = self._input_records(self._inputs)
        gone = {id(r) for group, _ in refused for r in group}
        kept = [r for r in records if id(r) not in gone]
        for group, exc in refused:
            for record in group:
                if record.topic == self.stage.dead_letters.topic:
                    kept.append(self._truncated(record, cast(Exception, exc)))
                    continue
                letter = self._rejected(record, cast(Exception, exc), inputs, lettered)
                if letter is not None:
                    kept.append(letter)
        return kept

    async def _rewind(self, tp: TopicPartition, exc: Exception) -> None:
        """After a failed transaction: forget ``tp``'s progress, held inputs and waiting outputs
        and, while it is still ours, read it again from its committed offset."""
        if self.transactions is None:
            return
        self.metrics.retried(type(exc).__name__)
        self._rewinds += 1
        delay = min(RETRY_INITIAL_S * 2 ** (self._rewinds - 1), RETRY_MAX_S)
        logger.warning(
            "%s: the transaction of %s/%d failed (%s: %s); re-reading it from its committed "
            "offset in %.1fs",
            self.stage.name,
            tp.topic,
            tp.partition,
            type(exc).__name__,
            exc,
            delay,
        )
        await self.transactions.forget([tp])
        owned = tp in self.progress.partitions
        self.revoked({tp})  # forget it as a rebalance would; read again below while ours
        await asyncio.sleep(delay)
        if owned and tp in self.consumer.assignment():
            committed = await self.consumer.committed(tp)
            if committed is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)
            self.progress.assign([tp])

    def _pause_over_limit(self) -> None:
        over = self.progress.over(self.stage.max_pending)
        pause, resume = over - self.paused, self.paused - over
        if pause:
            logger.info(
                "%s: holding %d inputs; pausing %s",
                self.stage.name,
                self.progress.held_total,
                pause,
            )
            self.consumer.pause(*pause)
        if resume:
            self.consumer.resume(*resume)
        self.paused = over


def register_stage(
    app: faust.App,
    settings: Settings,
    metrics: StageMetrics,
    stage: StageHandler,
    *,
    batch_size: int | None = None,
    within_s: float | None = None,
) -> Any:
    """Run ``stage`` as a task of ``app`` (the worker's Faust app)."""

    async def consume() -> None:
        runtime = StageRuntime(settings, stage, metrics, batch_size=batch_size, within_s=within_s)
        await runtime.run()

    consume.__name__ = f"{stage.name}_stage"
    return app.task(consume)
