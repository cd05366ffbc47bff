"""Follows the compacted ``feeds.profiles`` topic into the normaliser's :class:`ProfileBook`.

Every normalise worker reads the whole topic (no consumer group: each needs every feed's profile)
from the beginning when it starts, before it normalises anything, so a restarted worker applies
the profiles it had instead of inferring new ones; then it keeps following, so an operator's
override (``prodcat feeds override``) or another worker's re-profile is adopted while it runs.
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

from prodcat.core.kafka_config import aiokafka_config
from prodcat.core.settings import Settings
from prodcat.schemas.exceptions import SerdeError
from prodcat.schemas.serde import AvroSerde
from prodcat.streams.feeds.profile import FeedProfile
from prodcat.streams.feeds.store import decode_profile, profile_serde

__all__ = ["ProfileFollower"]

logger = logging.getLogger(__name__)

_POLL_MS = 500


class ProfileFollower:
    """Reads ``feeds.profiles`` and hands every decodable profile to ``adopt``."""

    def __init__(
        self,
        settings: Settings,
        adopt: Callable[[FeedProfile], None],
        *,
        serde: AvroSerde | None = None,
    ) -> None:
        self.topic = settings.topics.profiles
        self.adopt = adopt
        self.serde = serde or profile_serde(settings)
        self._options: dict[str, Any] = {
            **aiokafka_config(settings.kafka),
            "group_id": None,
            "enable_auto_commit": False,
            "client_id": f"{settings.worker.app_id}-profiles",
            "auto_offset_reset": "earliest",
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
                "topic %s not found: feeds are profiled from scratch (run `prodcat topics create`)",
                self.topic,
            )
        else:
            ends = await self.consumer.end_offsets(assigned)
            while time.monotonic() < deadline:
                positions = {tp: await self.consumer.position(tp) for tp in assigned}
                if all(positions[tp] >= ends[tp] for tp in assigned):
                    break
                await self._poll()
        logger.info("read %d feed profiles from %s", self.read, self.topic)
        self._task = asyncio.create_task(self._follow(), name="profile-follower")

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("ProfileFollower.start() was not called")
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
            except KafkaError as exc:  # the broker is away: keep following once it is back
                logger.warning("following %s: %s; retrying in %.1fs", self.topic, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _poll(self) -> None:
        batches = await self.consumer.getmany(timeout_ms=_POLL_MS)
        for messages in batches.values():
            for message in messages:
                if message.value is None:
                    continue
                try:
                    profile = decode_profile(self.serde, message.value)
                except (SerdeError, KeyError, TypeError, ValueError) as exc:
                    logger.error(
                        "skipping an undecodable profile at %s/%d/%d: %s",
                        message.topic,
                        message.partition,
                        message.offset,
                        exc,
                    )
                    continue
                self.read += 1
                self.adopt(profile)
