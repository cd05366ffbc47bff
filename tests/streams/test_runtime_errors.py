"""Permanent errors are not retried forever: classification, the retry metric, and (on the real
broker) an output the broker rejects and a dead letter the dead-letter topic rejects."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumber,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from prometheus_client import CollectorRegistry

from prodcat.core.errors import TransientError
from prodcat.core.kafka_config import librdkafka_config, producer_config
from prodcat.core.metrics import WorkerMetrics
from prodcat.core.settings import Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams import runtime as runtime_module
from prodcat.streams.delivery_errors import Verdict, classify
from prodcat.streams.readback import read_topics
from prodcat.streams.runtime import with_backoff
from tests.streams.test_runtime import Holder, _committed_is, _outputs, _running


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "RETRY_INITIAL_S", 0.01)
    monkeypatch.setattr(runtime_module, "RETRY_MAX_S", 0.05)


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (TransientError("registry down"), Verdict.RETRY),
        (KafkaConnectionError(), Verdict.RETRY),
        (NotLeaderForPartitionError(), Verdict.RETRY),
        (MessageSizeTooLargeError(), Verdict.PERMANENT),
        (TopicAuthorizationFailedError(), Verdict.PERMANENT),
        (OutOfOrderSequenceNumber(), Verdict.REBUILD),
        (ValueError("a bug"), Verdict.PERMANENT),
    ],
)
def test_errors_are_classified(error: Exception, verdict: Verdict) -> None:
    assert classify(error) is verdict


def test_an_unknown_topic_is_permanent_after_metadata_refreshes() -> None:
    assert classify(UnknownTopicOrPartitionError(), 0) is Verdict.RETRY
    assert classify(UnknownTopicOrPartitionError(), 5) is Verdict.PERMANENT


async def test_a_permanent_error_is_raised_not_retried_forever() -> None:
    metrics = WorkerMetrics(CollectorRegistry()).stage("s")
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise MessageSizeTooLargeError()

    with pytest.raises(MessageSizeTooLargeError):
        await asyncio.wait_for(with_backoff("s", attempt, metrics=metrics), timeout=5)
    assert calls == 1


async def test_transient_errors_are_retried_and_counted() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry).stage("s")
    failures = [KafkaConnectionError(), TransientError("down")]

    async def attempt() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    assert await with_backoff("s", attempt, metrics=metrics) == "done"
    for error in ("KafkaConnectionError", "TransientError"):
        labels = {"stage": "s", "error": error}
        assert registry.get_sample_value("prodcat_stage_retries_total", labels) == 1


async def test_a_fatal_producer_state_rebuilds_the_producer_then_retries() -> None:
    rebuilt: list[int] = []
    failures = [OutOfOrderSequenceNumber()]

    async def attempt() -> str:
        if failures:
            raise failures.pop(0)
        return "sent"

    async def rebuild() -> None:
        rebuilt.append(1)

    assert await with_backoff("s", attempt, rebuild=rebuild) == "sent"
    assert rebuilt == [1]


# On the real broker


def _produce_large(settings: Settings, values: Sequence[bytes]) -> None:
    producer = Producer({**producer_config(settings.kafka), "message.max.bytes": 8_000_000})
    for i, value in enumerate(values):
        producer.produce(settings.topics.raw, key=b"k%d" % i, value=value, partition=0)
    assert producer.flush(30) == 0


def _set_topic_limit(settings: Settings, topic: str, max_bytes: int) -> None:
    admin = AdminClient(librdkafka_config(settings.kafka))
    entry = ConfigEntry(
        "max.message.bytes", str(max_bytes), incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource("topic", topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def _letters(settings: Settings, expected: int) -> list[dict[str, object]]:
    serde = serde_for("DeadLetter")
    records = read_topics(settings.kafka, [settings.topics.deadletter], expected=expected)
    return [serde.decode(r.value or b"") for r in records]


@pytest.mark.integration
async def test_an_output_the_broker_rejects_dead_letters_its_input_and_the_batch_goes_on(
    pipeline_settings: Settings,
) -> None:
    settings = pipeline_settings
    big = b"x" * (2 * 1024 * 1024)  # fits products.raw (10 MB), not products.normalized (1 MB)
    _produce_large(settings, [b"ok-0", big, b"ok-2"])
    stage = Holder(settings)
    async with _running(settings, stage) as task:
        await _committed_is(settings, 3)
        assert not task.done()
        assert sorted(r.value for r in _outputs(settings, 2)) == [b"ok-0", b"ok-2"]
        [letter] = _letters(settings, 1)
        assert letter["error_kind"] == "send_rejected"
        assert str(letter["message"]).startswith("send_rejected: MessageSizeTooLargeError")
        assert letter["original_value"] == big and letter["source_offset"] == 1


@pytest.mark.integration
async def test_a_dead_letter_the_dead_letter_topic_rejects_is_truncated_not_a_hostage(
    pipeline_settings: Settings,
) -> None:
    settings = pipeline_settings
    _set_topic_limit(settings, settings.topics.deadletter, 200_000)
    big = bytes(range(256)) * (2 * 1024 * 4)  # 2 MiB
    _produce_large(settings, [big, b"ok-1"])
    stage = Holder(settings)
    async with _running(settings, stage) as task:
        await _committed_is(settings, 2)
        assert not task.done()
        [letter] = _letters(settings, 1)
        assert letter["error_kind"] == "send_rejected"
        original = letter["original_value"]
        assert isinstance(original, bytes) and big.startswith(original) and len(original) < 200_000
        message = str(letter["message"])
        assert f"size={len(big)}" in message and "sha256=" in message and "truncated" in message


class _Flaky(Holder):
    """Raises a bug (not a transient error) on its first ``failures`` calls, then echoes."""

    def __init__(self, settings: Settings, failures: int) -> None:
        super().__init__(settings)
        self.failures = failures
        self.calls = 0

    async def process(self, batch: Sequence[object]) -> runtime_module.Outputs:  # type: ignore[override]
        self.calls += 1
        if self.calls <= self.failures:
            raise KeyError("a model card that is being written")
        return await super().process(batch)  # type: ignore[arg-type]


def _inputs(n: int) -> list[object]:
    from types import SimpleNamespace

    return [
        SimpleNamespace(topic="raw", partition=0, offset=i, key=b"k%d" % i, value=b"ok-%d" % i,
                        headers=[], timestamp=None)
        for i in range(n)
    ]  # fmt: skip


async def test_a_bug_gets_bounded_retries_before_bisection(pipeline_settings: Settings) -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry).stage("normalize")
    labels = {"stage": "normalize", "error": "KeyError"}

    async def process(stage: _Flaky) -> runtime_module.Outputs:
        runtime = runtime_module.StageRuntime(pipeline_settings, stage, metrics)
        try:
            return await runtime.process(_inputs(4))  # type: ignore[arg-type]
        finally:
            await runtime.consumer.stop()
            await runtime.producer.stop()

    outputs = await process(_Flaky(pipeline_settings, failures=runtime_module.BUG_RETRIES))
    assert len(outputs.oks) == 4 and not outputs.dead  # nothing dead-lettered: the retry did it
    assert registry.get_sample_value("prodcat_stage_retries_total", labels) == 2

    outputs = await process(_Flaky(pipeline_settings, failures=10**6))  # a bug that stays
    assert not outputs.oks and len(outputs.dead) == 4
    assert {o.error_kind for o in outputs.dead} == {"internal_error"}
    assert registry.get_sample_value("prodcat_stage_retries_total", labels) == 4
