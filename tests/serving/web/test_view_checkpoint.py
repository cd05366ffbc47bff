"""The UI's kept view: the next start catches up from its checkpoint, not from the beginning
(real broker). Issue 17, item 10."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from prodcat.core.settings import Settings
from prodcat.serving.web.follower import TopicFollower
from prodcat.serving.web.view import TopicView
from tests.streams.kafka_io import produce, product_records

pytestmark = [pytest.mark.integration]


def _follow(
    settings: Settings, path: Path, identity: str = "a", **kw: float
) -> tuple[TopicView, int]:
    """Open the kept view, follow until caught up; the view (open) and the records read."""
    view = TopicView(path, keep=True, identity=identity, **kw)  # type: ignore[arg-type]
    follower = TopicFollower(settings, view)
    follower.start()
    try:
        assert follower.wait_ready(60), follower.error
        time.sleep(0.5)  # the last poll's records
    finally:
        follower.stop()
    return view, sum(n for (_, outcome), n in follower.counts.items() if outcome == "ok")


def _products(view: TopicView) -> int:
    return int(view._rows("SELECT count(*) FROM products")[0][0])


def test_a_restart_reads_only_what_came_after_the_checkpoint(
    pipeline_settings: Settings, data_dir: Path, tmp_path: Path
) -> None:
    settings, path = pipeline_settings, tmp_path / "view.sqlite"
    first = product_records(data_dir, 0, 300)
    produce(settings, settings.topics.normalized, first)
    view, read = _follow(settings, path)
    assert (read, _products(view), view.reused) == (300, 300, False)
    saved = view.offsets()
    assert sum(n for (topic, _), n in saved.items() if topic == settings.topics.normalized) == 300
    view.close()
    assert path.is_file()  # kept

    produce(settings, settings.topics.normalized, product_records(data_dir, 300, 50))
    removed = first[0][0]
    produce(settings, settings.topics.normalized, [(removed, None)])  # a tombstone
    view, read = _follow(settings, path)
    assert view.reused and read == 51  # only the new records
    assert _products(view) == 349 and view.product(removed.decode()) is None
    view.close()

    view, read = _follow(settings, path, identity="other topics")  # not the same view: rebuilt
    assert not view.reused and read == 351 and _products(view) == 349
    view.close()
    view, read = _follow(settings, path, identity="other topics", max_age_s=1e-3)  # too old
    assert not view.reused and read == 351
    view.close()
    path.write_bytes(b"not a database" * 100)  # damaged: rebuilt
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    view, read = _follow(settings, path, identity="other topics")
    assert not view.reused and read == 351
    view.close()
