"""The sampler's state follower waits out a schema-registry outage instead of dying (issue 17,
item 4): a follower that died left labelled products to be requested again."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from prodcat.core.settings import load_settings
from prodcat.schemas.exceptions import RegistryError
from prodcat.streams import sampler_agent
from prodcat.streams.sampler_agent import StateFollower


class _Counter:
    def labels(self, *_: str) -> _Counter:
        return self

    def inc(self, *_: float) -> None:
        pass


class _Exclusions:
    def __init__(self) -> None:
        self.labelled: list[bytes] = []

    def apply_label(self, key: bytes, value: Any) -> None:
        self.labelled.append(key)

    def apply_request(self, value: Any) -> None:
        pass


class _Consumer:
    """Hands out two label records once, then nothing."""

    def __init__(self, topic: str) -> None:
        self.batches = [
            {
                TopicPartition(topic, 0): [
                    SimpleNamespace(key=b"p1/exclusive", value=b"a", partition=0, offset=0),
                    SimpleNamespace(key=b"p2/exclusive", value=b"b", partition=0, offset=1),
                ]
            }
        ]

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0.01)
        return self.batches.pop(0) if self.batches else {}


class _FlakySerde:
    """The registry is down for the first two decodes."""

    def __init__(self) -> None:
        self.failures = 2

    def decode(self, value: bytes) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise RegistryError("registry unreachable")
        return {"value": value}


async def test_a_registry_outage_is_waited_out_and_no_record_is_lost(monkeypatch: Any) -> None:
    monkeypatch.setattr(sampler_agent, "FOLLOW_RETRY_S", 0.01)
    settings = load_settings()
    exclusions = _Exclusions()
    stage = SimpleNamespace(
        exclusions=exclusions, metrics=SimpleNamespace(state_records=_Counter())
    )
    labels = settings.topics.labels
    monkeypatch.setattr(sampler_agent, "AIOKafkaConsumer", lambda **_: _Consumer(labels))
    follower = StateFollower(settings, stage)  # type: ignore[arg-type]
    follower.serdes[labels] = _FlakySerde()  # type: ignore[assignment]

    task = asyncio.create_task(follower.follow())
    for _ in range(300):
        if len(exclusions.labelled) == 2 or task.done():
            break
        await asyncio.sleep(0.01)
    assert not task.done(), task.exception() if task.done() else ""
    assert exclusions.labelled == [b"p1/exclusive", b"p2/exclusive"]  # both, once, in order
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
