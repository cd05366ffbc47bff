"""Dead-letter replay on a real broker: the originals go back to their stage once, and the stage
turns them into products."""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Producer

from prodcat.cli import main
from prodcat.core.kafka_config import producer_config
from prodcat.core.settings import Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.deadletter import dead_letter
from prodcat.streams.deadletter_replay import REPLAY_HEADER, replay_dead_letters
from prodcat.streams.readback import read_topics
from prodcat.streams.stage import FEED_HEADER
from prodcat.streams.worker_process import worker_env

pytestmark = [pytest.mark.integration]


def _record(i: int) -> bytes:
    return json.dumps(
        {
            "id": f"r{i}",
            "name": f"Garden hose {i} m",
            "price": "12.50",
            "category": "Garden > Hoses",
        }
    ).encode()


def _write_dead_letters(settings: Settings) -> None:
    """As stages write them: 4 of normalize (3 internal_error, 1 not_json), 1 of embed, and one
    normalize dead letter whose original was truncated by the dead-letter topic."""
    serde = serde_for("DeadLetter", topic=settings.topics.deadletter)
    producer = Producer(producer_config(settings.kafka))
    now_ms = time.time_ns() // 1_000_000
    letters = [
        ("normalize", "internal_error", "KeyError: 'x'", _record(i), i) for i in range(3)
    ] + [
        ("normalize", "not_json", "not JSON", b"{broken", 3),
        ("embed", "image_timeout", "no image within 5s", b"\x00avro", 4),
        (
            "normalize",
            "internal_error",
            "boom [original_value truncated to 10 of ...]",
            b"x" * 10,
            5,
        ),
    ]
    for stage, kind, message, value, offset in letters:
        topic = settings.topics.raw if stage == "normalize" else settings.topics.normalized
        letter = dead_letter(
            stage=stage,
            error_kind=kind,
            message=message,
            key=f"k{offset}".encode(),
            value=value,
            headers={FEED_HEADER: b"garden_shop"},
            feed="garden_shop",
            topic=topic,
            partition=0,
            offset=offset,
            worker="test",
            now_ms=now_ms,
        )
        producer.produce(settings.topics.deadletter, serde.encode(letter), f"k{offset}".encode())
    assert producer.flush(30) == 0


def _cli_sees(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI in this process reads the test's broker and topics from the environment."""
    for name, value in worker_env(settings).items():
        if name.startswith("PRODCAT_"):
            monkeypatch.setenv(name, value)


def test_replay_sends_each_original_once_and_the_stage_normalises_it(
    pipeline_settings: Settings, run_worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = pipeline_settings
    _cli_sees(settings, monkeypatch)
    _write_dead_letters(settings)

    dry = replay_dead_letters(
        settings, stage="normalize", reasons=["internal_*"], dry_run=True, progress=False
    )
    assert (dry.read, dry.matched, dry.replayed, dry.truncated) == (6, 4, 3, 1)
    assert read_topics(settings.kafka, [settings.topics.raw], idle_s=1.0) == []  # nothing sent

    report = replay_dead_letters(
        settings, stage="normalize", reasons=["internal_*"], progress=False
    )
    assert (report.replayed, report.truncated, report.already_replayed) == (3, 1, 0)
    assert report.by_topic == {settings.topics.raw: 3}
    raw = read_topics(settings.kafka, [settings.topics.raw], expected=3, timeout_s=30)
    assert sorted(r.value for r in raw) == sorted(_record(i) for i in range(3))
    assert {r.headers[FEED_HEADER] for r in raw} == {b"garden_shop"}
    assert all(
        r.headers[REPLAY_HEADER].startswith(settings.topics.deadletter.encode()) for r in raw
    )

    # Twice is once; another reason is still there to replay (through the CLI, by pattern).
    again = replay_dead_letters(settings, stage="normalize", reasons=["internal_*"], progress=False)
    assert (again.replayed, again.already_replayed) == (0, 3)
    assert main(["deadletters", "replay", "--stage", "normalize", "--reason", "not_json"]) == 0
    assert len(read_topics(settings.kafka, [settings.topics.raw], expected=4, timeout_s=30)) == 4
    markers = read_topics(settings.kafka, [settings.topics.replays], expected=4, timeout_s=30)
    assert {json.loads(m.value or b"")["stage"] for m in markers} == {"normalize"}

    # The stage, now fixed, normalises the replayed records; the broken one is a dead letter again.
    run_worker(settings, ["normalize"])
    out = read_topics(
        settings.kafka, [settings.topics.normalized, settings.topics.deadletter], expected=3 + 7,
        timeout_s=60,
    )  # fmt: skip
    assert len([r for r in out if r.topic == settings.topics.normalized]) == 3
    assert len([r for r in out if r.topic == settings.topics.deadletter]) == 6 + 1


def test_a_bad_since_says_what_to_give(
    pipeline_settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _cli_sees(pipeline_settings, monkeypatch)
    assert main(["deadletters", "replay", "--stage", "normalize", "--since", "yesterday"]) == 2
    assert "ISO time" in caplog.text
