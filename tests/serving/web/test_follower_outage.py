"""The UI's follower through a schema-registry outage (issue 17: "a registry outage for ... the UI
follower"; real broker). A web process that starts while the registry is away cannot decode the
products it must show: it says so, counts none of them as bad, does not report ready, and reads
every one of them once the registry is back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from prodcat.core.settings import SerdeSettings, Settings
from prodcat.schemas.serde import AvroSerde, serde_for
from prodcat.serving.web.follower import TopicFollower
from prodcat.serving.web.view import TopicView
from tests.conftest import free_port
from tests.fake_registry import FakeSchemaRegistry, serve_registry
from tests.streams.kafka_io import produce, product_records

pytestmark = [pytest.mark.integration]


def test_a_registry_outage_holds_the_view_back_and_loses_no_record(
    pipeline_settings: Settings, data_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    settings = pipeline_settings.model_copy(
        update={"serde": SerdeSettings(registry_url=f"http://127.0.0.1:{port}")}
    )
    topic = settings.topics.normalized
    registry = FakeSchemaRegistry()
    plain = serde_for("Product")
    with serve_registry(port, registry):  # the products are written while it is up
        # a serde of its own: the follower's (``serde_for``'s shared one) has no schema cached,
        # as in a web process of its own
        framed = AvroSerde(plain.record_name, registry_url=settings.serde.registry_url, topic=topic)
        records = [
            (key, framed.encode(plain.decode(value or b"")))
            for key, value in product_records(data_dir, 0, 200)
        ]
        framed.close()
        produce(settings, topic, records)

    view = TopicView(tmp_path / "view.sqlite", keep=True, identity="a")
    follower = TopicFollower(settings, view)
    follower.start()  # a web process starting while the registry is away
    try:
        deadline = time.monotonic() + 30
        while follower.error is None:
            assert time.monotonic() < deadline, "the follower never reported the outage"
            time.sleep(0.1)
        time.sleep(1)
        assert not follower.ready.is_set(), "ready with products it could not read"
        assert not any(outcome == "bad" for _, outcome in follower.counts), follower.counts
        assert int(view._rows("SELECT count(*) FROM products")[0][0]) == 0

        with serve_registry(port, registry):  # back, with the same schemas and ids
            assert follower.wait_ready(60), follower.error
            deadline = time.monotonic() + 10
            while follower.counts[(topic, "ok")] < len(records):
                assert time.monotonic() < deadline, follower.counts
                time.sleep(0.1)
    finally:
        follower.stop()
    assert follower.error is None
    assert follower.counts[(topic, "ok")] == len(records)
    assert not any(outcome == "bad" for _, outcome in follower.counts)
    assert int(view._rows("SELECT count(*) FROM products")[0][0]) == len(records)
    view.close()
