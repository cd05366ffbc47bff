"""The stage runtime against a real Kafka broker: deferred inputs, bounded holds, rebalances, bugs."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from prometheus_client import CollectorRegistry

from prodcat.core.kafka_config import librdkafka_config, producer_config
from prodcat.core.metrics import StageMetrics, WorkerMetrics
from prodcat.core.settings import Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.readback import Record, read_topics
from prodcat.streams.runtime import StageHandler, StageRuntime
from prodcat.streams.stage import Input, Outgoing, Outputs, Position, position

pytestmark = [pytest.mark.integration]

STAGE = "holder"


class Holder(StageHandler):
    """Echoes each input to ``out``; holds inputs whose value starts with ``hold`` until released."""

    def __init__(self, settings: Settings, fail_on: bytes | None = None) -> None:
        super().__init__(STAGE, settings.topics.raw, DeadLetters.for_stage(settings, STAGE))
        self.out = settings.topics.normalized
        self.fail_on = fail_on
        self.seen: list[Position] = []
        self.held: dict[Position, Input] = {}
        self.release = False
        self.revoked: list[set[object]] = []
        self.gate: asyncio.Event | None = None  # process waits for it (to straddle a rebalance)
        self.batches: list[set[int]] = []  # partitions of each batch, as process starts

    def _echo(self, record: Input) -> Outgoing:
        return Outgoing(self.out, record.key, record.value, [], None, None, None, position(record))

    async def process(self, batch: Sequence[Input]) -> Outputs:
        self.batches.append({r.partition for r in batch})
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_on is not None and any(r.value == self.fail_on for r in batch):
            raise ValueError("a bug that only this record triggers")
        self.seen += [position(r) for r in batch]
        held = [r for r in batch if (r.value or b"").startswith(b"hold")]
        self.held.update({position(r): r for r in held})
        return Outputs(
            oks=[self._echo(r) for r in batch if not (r.value or b"").startswith(b"hold")],
            held=[position(r) for r in held],
        )

    def on_tick(self, now: float) -> Outputs | None:
        if not self.release or not self.held:
            return None
        released, self.held = list(self.held.values()), {}
        return Outputs(oks=[self._echo(r) for r in released])

    def on_revoked(self, partitions: object) -> None:
        self.revoked.append(set(partitions))  # type: ignore[call-overload]
        self.held = {
            p: r
            for p, r in self.held.items()
            if (p.topic, p.partition)
            not in {
                (tp.topic, tp.partition)
                for tp in partitions  # type: ignore[attr-defined]
            }
        }


def _metrics() -> StageMetrics:
    return WorkerMetrics(CollectorRegistry()).stage(STAGE)


def _produce(settings: Settings, values: Sequence[bytes], partition: int = 0) -> None:
    producer = Producer(producer_config(settings.kafka))
    for i, value in enumerate(values):
        producer.produce(settings.topics.raw, key=b"k%d" % i, value=value, partition=partition)
    assert producer.flush(30) == 0


def _committed(settings: Settings, partition: int = 0) -> int:
    consumer = Consumer(
        {**librdkafka_config(settings.kafka), "group.id": f"{settings.worker.app_id}-{STAGE}"}
    )
    try:
        [tp] = consumer.committed([CTopicPartition(settings.topics.raw, partition)], timeout=10)
        return int(tp.offset)
    except KafkaException:  # e.g. NOT_COORDINATOR while the group's coordinator moves: ask again
        return -2
    finally:
        consumer.close()


async def _until(check: Callable[[], bool], timeout_s: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def _committed_is(settings: Settings, offset: int, partition: int = 0) -> None:
    got: list[int] = []

    def check() -> bool:
        got.append(_committed(settings, partition))
        return got[-1] == offset

    await _until(check, what=f"committed offset {offset} (last {got[-1:] or None})")


@contextlib.asynccontextmanager
async def _running(settings: Settings, stage: StageHandler) -> AsyncIterator[asyncio.Task[None]]:
    runtime = StageRuntime(settings, stage, _metrics())
    stage.runtime = runtime  # type: ignore[attr-defined]  # for tests that look at its consumer
    task = asyncio.create_task(runtime.run())
    try:
        yield task
    finally:
        task.cancel()  # a crash as far as offsets go: nothing is committed on the way out
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _outputs(settings: Settings, expected: int | None) -> list[Record]:
    return read_topics(settings.kafka, [settings.topics.normalized], expected=expected)


async def test_held_inputs_are_not_committed_redelivered_after_a_crash_then_released(
    pipeline_settings: Settings,
) -> None:
    settings = pipeline_settings
    values = [b"ok-0", b"ok-1", b"ok-2", b"hold-3", b"ok-4", b"ok-5"]
    _produce(settings, values)

    first = Holder(settings)
    async with _running(settings, first):
        await _until(lambda: len(first.seen) == 6, what="the first run to consume")
        await _committed_is(settings, 3)  # below the held input, though 4 and 5 are answered
        assert sorted(r.value for r in _outputs(settings, 5)) == sorted(
            v for v in values if v != b"hold-3"
        )

    second = Holder(settings)  # a restart: the held input comes again, and what followed it
    async with _running(settings, second):
        await _until(lambda: len(second.seen) >= 3, what="the restart to consume")
        assert [p.offset for p in second.seen if p.partition == 0] == [3, 4, 5]
        assert _committed(settings) == 3
        second.release = True
        await _committed_is(settings, 6)
        outputs = _outputs(settings, 5 + 3)
        assert [r.value for r in outputs].count(b"hold-3") == 1
        assert not second.held


async def test_a_partition_holding_max_pending_inputs_pauses_until_released(
    pipeline_settings: Settings,
) -> None:
    settings = pipeline_settings
    stage = Holder(settings)
    stage.max_pending = 3
    _produce(settings, [b"hold-%d" % i for i in range(4)])
    async with _running(settings, stage) as task:
        await _until(lambda: len(stage.held) == 4, what="the holds")
        _produce(settings, [b"ok-late"])
        await asyncio.sleep(3)
        assert len(stage.seen) == 4, "a paused partition must not be fetched"
        assert _committed(settings) <= 0  # nothing past the oldest held input (0)
        stage.release = True
        await _until(lambda: len(stage.seen) == 5, what="the partition to resume")
        await _committed_is(settings, 5)
        assert not task.done()


async def test_a_record_that_breaks_process_is_dead_lettered_and_the_rest_goes_on(
    pipeline_settings: Settings,
) -> None:
    settings = pipeline_settings
    stage = Holder(settings, fail_on=b"boom")
    _produce(settings, [b"ok-0", b"ok-1", b"boom", b"ok-3", b"ok-4"])
    async with _running(settings, stage) as task:
        await _committed_is(settings, 5)
        assert not task.done()
        outputs = _outputs(settings, 4)
        assert sorted(r.value for r in outputs) == [b"ok-0", b"ok-1", b"ok-3", b"ok-4"]
        [letter] = read_topics(settings.kafka, [settings.topics.deadletter], expected=1)
        record = serde_for("DeadLetter").decode(letter.value or b"")
        assert record["error_kind"] == "internal_error"
        assert record["original_value"] == b"boom"
        assert record["source_offset"] == 2
        assert "ValueError" in record["message"]
        _produce(settings, [b"ok-5"])  # the loop is still alive
        await _committed_is(settings, 6)


async def test_commit_after_a_rebalance_revoked_partitions_mid_batch_does_not_crash(
    pipeline_settings: Settings,
) -> None:
    settings = pipeline_settings
    partitions = settings.topics.partitions
    for p in range(partitions):
        _produce(settings, [b"ok-%d" % p], partition=p)
    slow = Holder(settings)
    slow.gate = asyncio.Event()
    async with _running(settings, slow) as slow_task:
        # Joined, fetched a batch of every partition (more batches wait behind the gate).
        await _until(lambda: len(slow.batches) == 1, what="the first batch")
        await asyncio.sleep(2)
        slow.gate.set()
        await _until(lambda: len(slow.seen) == partitions, what="every partition")
        slow.gate.clear()
        for p in range(partitions):
            _produce(settings, [b"mid-%d" % p], partition=p)
        await _until(lambda: len(slow.batches) >= 2, what="a batch that straddles the rebalance")
        other = Holder(settings)
        async with _running(settings, other) as other_task:
            await _until(
                lambda: 0 < len(slow.runtime.consumer.assignment()) < partitions,  # type: ignore[attr-defined]
                what="the rebalance",
            )
            straddling = slow.batches[-1]
            slow.gate.set()  # the batch ends: its commit names partitions it no longer owns
            await asyncio.sleep(3)
            assert not slow_task.done(), slow_task.exception() if slow_task.done() else ""
            for p in range(partitions):
                _produce(settings, [b"late-%d" % p], partition=p)
            print(f"batch of partitions {straddling}, kept {slow.runtime.consumer.assignment()}")  # type: ignore[attr-defined]
            await _until(
                lambda: all(_committed(settings, p) == 3 for p in range(partitions)),
                what="both consumers to commit their partitions",
            )
            assert not slow_task.done() and not other_task.done()
        # No zombie writes: the straddling batch's answers for the partitions the slow consumer
        # lost were not sent; their new owner answered them, once.
        answers = Counter(r.value for r in _outputs(settings, None))
        assert all(answers[b"mid-%d" % p] == 1 for p in range(partitions)), answers


def in_thread(
    main: Callable[[], Coroutine[Any, Any, None]],
    failed: list[BaseException],
    thaw: threading.Event,
) -> threading.Thread:
    """Start ``main`` on an event loop of its own in a thread (another member of the group, as
    the broker sees it). What it raises goes into ``failed`` for the test's thread, and ``thaw``
    is set so a frozen loop waiting for it wakes."""

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the test's own thread
            failed.append(exc)
            thaw.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


class Frozen(Holder):
    """A Holder whose first batch freezes its whole worker (the event loop: no heartbeat, no
    rebalance callback) until ``thaw`` is set, like a SIGSTOP or a long pause."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.frozen = threading.Event()
        self.thaw = threading.Event()

    async def process(self, batch: Sequence[Input]) -> Outputs:
        if not self.frozen.is_set():
            self.frozen.set()
            self.thaw.wait(120)  # blocks the loop on purpose
        return await super().process(batch)


async def test_a_worker_frozen_past_its_session_timeout_does_not_send_its_batch_on_waking(
    pipeline_settings: Settings,
) -> None:
    """The frozen worker's session expires; a new owner answers its partitions (the old values and
    newer ones); then it wakes inside ``process``, before its heartbeat hears of the rebalance.
    Its batch's answers would land after the new owner's (a stale latest value): they are not
    sent, every input is answered once, and it goes on."""
    settings = pipeline_settings
    partitions = settings.topics.partitions
    for p in range(partitions):
        _produce(settings, [b"v1-%d" % p], partition=p)
    frozen, owner = Frozen(settings), Holder(settings)
    stop = threading.Event()
    failed: list[BaseException] = []

    async def replace() -> None:
        assert await asyncio.to_thread(frozen.frozen.wait, 60), "no batch reached the worker"
        for p in range(partitions):
            _produce(settings, [b"v2-%d" % p], partition=p)
        async with _running(settings, owner):
            await _until(lambda: len(owner.seen) == 2 * partitions, what="the new owner")
            for p in range(partitions):
                await _committed_is(settings, 2, p)
            frozen.thaw.set()
            await asyncio.to_thread(stop.wait, 60)

    thread = in_thread(replace, failed, frozen.thaw)
    try:
        async with _running(settings, frozen) as task:
            await _until(lambda: bool(frozen.seen) or bool(failed), what="the worker to wake")
            batch = len(frozen.seen)
            runtime: StageRuntime = frozen.runtime  # type: ignore[attr-defined]
            skipped = runtime.metrics.skipped.labels(STAGE, "revoked")
            await _until(lambda: skipped._value.get() >= batch, timeout_s=20, what="the drop")
            await _until(lambda: bool(frozen.revoked), what="the worker to rejoin")
            assert not task.done(), task.exception() if task.done() else ""
    finally:
        stop.set()
        thread.join(60)
    assert not failed, failed
    answers = Counter(r.value for r in _outputs(settings, None))
    print(f"frozen with a batch of {batch}; dropped {skipped._value.get():.0f}; {answers}")
    assert answers == Counter(b"v%d-%d" % (v, p) for v in (1, 2) for p in range(partitions))


async def test_an_out_of_order_sequence_rebuilds_the_producer_and_the_batch_is_sent(
    pipeline_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker answers a batch with OutOfOrderSequenceNumber (a fatal state of an idempotent
    producer): the runtime stops that producer, makes a new one, sends the batch again with it and
    commits; each output is written once."""
    from aiokafka.errors import OutOfOrderSequenceNumber

    from prodcat.streams.batch_sender import BatchSender

    settings = pipeline_settings
    values = [b"ok-%d" % i for i in range(5)]
    real_send = BatchSender.send_reporting
    failures = [OutOfOrderSequenceNumber()]
    senders: list[int] = []

    async def failing_once(self: BatchSender, records: object) -> object:
        senders.append(id(self.producer))
        if failures:
            raise failures.pop()
        return await real_send(self, records)  # type: ignore[arg-type]

    monkeypatch.setattr(BatchSender, "send_reporting", failing_once)
    _produce(settings, values)
    stage = Holder(settings)
    async with _running(settings, stage) as task:
        await _committed_is(settings, 5)
        assert sorted(r.value for r in _outputs(settings, 5)) == values
        assert len(set(senders)) == 2, "the batch was not sent again by a new producer"
        assert not task.done()
