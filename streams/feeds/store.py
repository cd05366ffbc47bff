"""Feed profiles on Kafka: the compacted ``feeds.profiles`` topic, keyed by feed (``feed/shape``).

:func:`encode_profile` / :func:`decode_profile` map a :class:`FeedProfile` onto the Avro
``FeedProfile`` record; :func:`read_profiles` materialises the topic (latest version per key);
:func:`publish_profile` writes one and waits for the broker's acknowledgement. The normalise stage
follows the topic while it runs (``streams/normalize_agent.py``); the CLI (``prodcat feeds show``,
``override``) reads and writes it with these functions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from prodcat.core.settings import Settings
from prodcat.schemas.serde import AvroSerde, serde_for
from prodcat.streams.acked import produce_acknowledged
from prodcat.streams.compacted import read_compacted
from prodcat.streams.feeds.profile import FeedProfile

__all__ = [
    "decode_profile",
    "encode_profile",
    "profile_key",
    "profile_serde",
    "publish_profile",
    "read_profiles",
]


def profile_key(profile: FeedProfile) -> bytes:
    """``feed`` for a feed with one record shape, ``feed/shape`` otherwise."""
    return (f"{profile.feed}/{profile.shape}" if profile.shape else profile.feed).encode()


def profile_serde(settings: Settings) -> AvroSerde:
    return serde_for("FeedProfile", settings.serde.registry_url, topic=settings.topics.profiles)


def encode_profile(serde: AvroSerde, profile: FeedProfile, *, now_ms: int | None = None) -> bytes:
    record = {**profile.to_dict(), "created_at": now_ms or time.time_ns() // 1_000_000}
    return serde.encode(record)


def decode_profile(serde: AvroSerde, value: bytes) -> FeedProfile:
    record = serde.decode(value)
    return FeedProfile.from_dict(record)


def read_profiles(settings: Settings, *, timeout_s: float = 60.0) -> dict[str, FeedProfile]:
    """The live profile of every feed (and shape) on ``feeds.profiles``, by key."""
    serde = profile_serde(settings)
    live = read_compacted(settings.kafka, settings.topics.profiles, timeout_s=timeout_s)
    return {key.decode(): decode_profile(serde, value) for key, value in live.values.items()}


def latest_for(profiles: Mapping[str, FeedProfile], feed: str) -> list[FeedProfile]:
    """The profiles of ``feed`` (one per record shape), newest version first."""
    found = [p for p in profiles.values() if p.feed == feed]
    return sorted(found, key=lambda p: (-p.version, p.shape))


def publish_profile(settings: Settings, profile: FeedProfile, *, timeout_s: float = 30.0) -> None:
    """Write ``profile`` to ``feeds.profiles`` and wait until the broker acknowledges it."""
    produce_acknowledged(
        settings.kafka,
        settings.topics.profiles,
        profile_key(profile),
        encode_profile(profile_serde(settings), profile),
        what=f"the profile of {profile.feed}",
        timeout_s=timeout_s,
    )
