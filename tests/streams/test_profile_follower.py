"""The normaliser's profile follower on the real broker: a profile it cannot decode *now* because
the schema registry is unreachable is read again once it answers, never skipped."""

from __future__ import annotations

import asyncio
import time

import pytest

from prodcat.core.settings import SerdeSettings, Settings
from prodcat.streams.feeds.infer import infer_profile
from prodcat.streams.feeds.profile import FeedProfile
from prodcat.streams.feeds.store import publish_profile
from prodcat.streams.profile_follower import ProfileFollower
from tests.conftest import free_port
from tests.fake_registry import FakeSchemaRegistry, serve_registry

pytestmark = [pytest.mark.integration]


def _profile(feed: str) -> FeedProfile:
    records = [{"name": f"Lamp {i}", "preis": f"{i},99 EUR", "sku": f"s{i}"} for i in range(30)]
    return infer_profile(records, feed=feed)


def test_a_registry_outage_delays_profiles_but_loses_none(pipeline_settings: Settings) -> None:
    port = free_port()
    settings = pipeline_settings.model_copy(
        update={"serde": SerdeSettings(registry_url=f"http://127.0.0.1:{port}")}
    )
    registry = FakeSchemaRegistry()
    with serve_registry(port, registry):
        for feed in ("shop-a", "shop-b"):
            publish_profile(settings, _profile(feed))

    # A worker of its own: the same registry under another name, so no schema is cached yet.
    reader = settings.model_copy(
        update={"serde": SerdeSettings(registry_url=f"http://localhost:{port}")}
    )

    async def follow() -> tuple[list[str], list[str]]:
        adopted: list[str] = []
        follower = ProfileFollower(reader, lambda p: adopted.append(p.feed))
        # The registry is down: catching up gives up after its deadline with nothing adopted.
        await follower.start(catch_up_s=3.0)
        await asyncio.sleep(2.0)
        during = list(adopted)
        with serve_registry(port, registry):
            deadline = time.monotonic() + 60
            while len(adopted) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
        await follower.stop()
        return during, adopted

    during, adopted = asyncio.run(follow())
    assert during == []
    assert sorted(adopted) == ["shop-a", "shop-b"]
