"""Issue 17, item 8: logout revokes a session on every UI replica (real broker). Each replica
signs cookies with the same secret, so a copied cookie works on any of them; a logout on one is
published on ``ui.sessions.revoked`` and every replica's follower reads it into its view, so the
others refuse the cookie too, and so does a replica started later."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from prodcat.core.settings import Settings
from prodcat.serving.web.auth import SessionCodec
from prodcat.serving.web.follower import TopicFollower
from prodcat.serving.web.publisher import Publisher
from prodcat.serving.web.server import session_codec
from prodcat.serving.web.view import TopicView

pytestmark = [pytest.mark.integration]


@contextlib.contextmanager
def _replica(settings: Settings, path: Path) -> Iterator[SessionCodec]:
    """What a UI process builds for its sessions: a view its follower keeps, a publisher, the
    codec wired to both (``web_parts`` does the same)."""
    view = TopicView(path)
    follower = TopicFollower(settings, view)
    publisher = Publisher(settings.kafka)
    follower.start()
    try:
        assert follower.wait_ready(60), follower.error
        yield session_codec(settings, view, publisher)
    finally:
        follower.stop()
        publisher.close()
        view.close()


def test_a_logout_on_one_replica_is_refused_by_the_others(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    ui = pipeline_settings.ui.model_copy(update={"secret": SecretStr("s" * 32)})
    settings = pipeline_settings.model_copy(update={"ui": ui})
    with (
        _replica(settings, tmp_path / "a.sqlite") as a,
        _replica(settings, tmp_path / "b.sqlite") as b,
    ):
        session = a.new("alice", now=float(int(time.time())))  # cookies keep whole seconds
        cookie = a.dumps(session)
        assert b.loads(cookie) == session  # the same secret: any replica takes it
        a.revoke(session)  # logout on replica a
        assert a.loads(cookie) is None
        started = time.monotonic()
        while b.loads(cookie) is not None:
            assert time.monotonic() - started < 30, "replica b still takes the revoked cookie"
            time.sleep(0.05)
        seconds = time.monotonic() - started
        other = b.new("alice", now=float(int(time.time())))  # alice's next login works on either
        assert a.loads(b.dumps(other)) == other and b.loads(b.dumps(other)) == other
    with _replica(settings, tmp_path / "c.sqlite") as c:  # a replica started after the logout
        assert c.loads(cookie) is None
        assert c.loads(c.dumps(other)) == other
    print(f"\nthe other replica refused the revoked cookie {seconds:.2f} s after the logout")
