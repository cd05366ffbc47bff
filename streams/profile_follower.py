"""Follows compacted topics: :class:`TopicFollower`, and ``feeds.profiles`` into the normaliser's
:class:`ProfileBook` (:class:`ProfileFollower`).

Every normalise worker reads the whole topic (no consumer group: each needs every feed's profile)
from the beginning when it starts, before it normalises anything, so a restarted worker applies
the profiles it had instead of inferring new ones; then it keeps following, so an operator's
override (``prodcat feeds override``) or another worker's re-profile is adopted while it runs.

A record that cannot be taken *now* (:meth:`TopicFollower.handle` raised a
:class:`~prodcat.core.errors.TransientError`, e.g. the schema registry is unreachable) is not
skipped: the follower reads again from it after a back-off, as it does when the broker is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from prodcat.core.errors import TransientError
from prodcat.core.kafka_config import aiokafka_config
from prodcat.core.settings import Settings
from prodcat.schemas.exceptions import RegistryError, SerdeError
from prodcat.schemas.serde import AvroSerde
from prodcat.streams.feeds.profile import FeedProfile
from prodcat.streams.feeds.store import decode_profile, profile_serde

__all__ = ["ProfileFollower", "TopicFollower"]

logger = logging.getLogger(__name__)

_POLL_MS = 500


class TopicFollower:
    """Reads a (compacted) topic from its beginning up to its end at start, then follows it;
    :meth:`handle` gets every record (override it). No consumer group: every process reads all."""

    def __init__(self, settings: Settings, topic: str, *, name: str) -> None:
        self.topic = topic
        self.name = name
        self._options: dict[str, Any] = {
            **aiokafka_config(settings.kafka),
            "group_id": None,
            "enable_auto_commit": False,
            "client_id": f"{settings.worker.app_id}-{name}",
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed",
        }
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.read = 0

    async def start(self, catch_up_s: float = 30.0) -> None:
        """Read the topic up to its end (at most ``catch_up_s``), then follow it in the background."""
        self._consumer = AIOKafkaConsumer(**self._options)  # in the worker's event loop
        # Without a group, a subscription is assigned every partition of the topic.
        self.consumer.subscribe([self.topic])
        await self.consumer.start()
        deadline = time.monotonic() + catch_up_s
        while not self.consumer.assignment() and time.monotonic() < deadline:
            await self._poll()
        assigned = sorted(self.consumer.assignment())
        if not assigned:
            logger.warning(
                "topic %s not found: %s starts empty (run `prodcat topics create`)",
                self.topic,
                self.name,
            )
        else:
            ends = await self.consumer.end_offsets(assigned)
            delay = 0.5
            while time.monotonic() < deadline:
                positions = {tp: await self.consumer.position(tp) for tp in assigned}
                if all(positions[tp] >= ends[tp] for tp in assigned):
                    break
                try:
                    await self._poll()
                except TransientError as exc:  # read again from that record after a pause
                    logger.warning("reading %s: %s; retrying in %.1fs", self.topic, exc, delay)
                    await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                    delay = min(delay * 2, 30.0)
        logger.info("read %d %s from %s", self.read, self.name, self.topic)
        self._task = asyncio.create_task(self._follow(), name=f"{self.name}-follower")

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError(f"{type(self).__name__}.start() was not called")
        return self._consumer

    async def stop(self) -> None:
        if self._consumer is None:
            return
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.consumer.stop()

    async def _follow(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._poll()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except (KafkaError, TransientError) as exc:  # the broker or registry is away
                logger.warning("following %s: %s; retrying in %.1fs", self.topic, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _poll(self) -> None:
        batches = list((await self.consumer.getmany(timeout_ms=_POLL_MS)).items())
        for position, (tp, messages) in enumerate(batches):
            for message in messages:
                try:
                    used = self.handle(message)
                except TransientError:
                    # This record, and every record fetched after it, is read again.
                    self.consumer.seek(tp, message.offset)
                    for later, rest in batches[position + 1 :]:
                        self.consumer.seek(later, rest[0].offset)
                    raise
                if used:
                    self.read += 1

    def handle(self, message: Any) -> bool:
        """Take one record (an aiokafka ``ConsumerRecord``); True when it was used."""
        raise NotImplementedError


class ProfileFollower(TopicFollower):
    """Reads ``feeds.profiles`` and hands every decodable profile to ``adopt``."""

    def __init__(
        self,
        settings: Settings,
        adopt: Callable[[FeedProfile], None],
        *,
        serde: AvroSerde | None = None,
    ) -> None:
        super().__init__(settings, settings.topics.profiles, name="feed profiles")
        self.adopt = adopt
        self.serde = serde or profile_serde(settings)

    def handle(self, message: Any) -> bool:
        if message.value is None:
            return False
        try:
            profile = decode_profile(self.serde, message.value)
        except RegistryError:
            raise  # not the record's fault: read it again once the registry answers
        except (SerdeError, KeyError, TypeError, ValueError) as exc:
            logger.error(
                "skipping an undecodable profile at %s/%d/%d: %s",
                message.topic,
                message.partition,
                message.offset,
                exc,
            )
            return False
        self.adopt(profile)
        return True
