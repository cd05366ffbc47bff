"""The retrain trigger without Kafka: label accounting, single flight, the job subprocess."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from prodcat.core.ids import label_key
from prodcat.localkafka import process_running
from prodcat.schemas.serde import serde_for
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.retrain_trigger import JobRunner, LabelStage, TriggerState


def test_n_new_labels_start_one_job_and_later_labels_count_toward_the_next() -> None:
    state = TriggerState(min_new_labels=10, max_wait_s=60)
    state.consumed(0, 6, valid=6, oldest_ms=1000)
    assert not state.due(2000)
    state.consumed(1, 4, valid=4, oldest_ms=1500)
    assert state.due(2000)
    launch = state.launch()
    assert launch.offsets == {0: 6, 1: 4} and launch.labels == 10
    state.consumed(0, 30, valid=24, oldest_ms=3000)  # during the job
    assert not state.due(10**9)  # single flight
    with pytest.raises(RuntimeError):
        state.launch()
    assert state.finished() == {0: 6, 1: 4}  # commit only what the job covered
    assert state.pending_labels == 24 and state.due(4000)


def test_time_starts_a_job_for_at_least_one_label() -> None:
    state = TriggerState(min_new_labels=100, max_wait_s=60)
    state.consumed(0, 5, valid=0, oldest_ms=None)  # only invalid labels: nothing pending
    assert not state.due(10**9)
    state.consumed(0, 6, valid=1, oldest_ms=1_000)
    assert not state.due(60_999)
    assert state.due(61_000)


def test_revoked_partitions_are_recounted_by_their_new_owner() -> None:
    state = TriggerState(min_new_labels=5, max_wait_s=60)
    state.consumed(0, 3, valid=3, oldest_ms=1)
    state.consumed(1, 3, valid=3, oldest_ms=1)
    state.launch()
    state.revoked([1])
    assert state.finished() == {0: 3}


@dataclass
class _Record:
    key: bytes | None
    value: bytes | None
    topic: str = "labels"
    partition: int = 0
    offset: int = 0
    headers: list = field(default_factory=list)
    timestamp: int = 0


def test_the_label_stage_counts_valid_labels_and_dead_letters_the_rest(tmp_path: Path) -> None:
    serde = serde_for("Label")
    stage = LabelStage(
        labels=serde,
        dead_letters=DeadLetters("dlq", serde_for("DeadLetter"), stage="labels", worker=None),
        model_base=tmp_path,  # no model yet: open vocabulary
        name="classifier",
    )
    good = {
        "product_id": "p1",
        "objective": "exclusive",
        "category_ids": ["c_0123456789ab"],
        "source": "human",
        "labelled_at": 1,
    }
    records = [
        _Record(label_key("p1", "exclusive"), serde.encode(good), offset=0),
        _Record(b"p1/exclusive", b"junk", offset=1),
        _Record(label_key("p2", "exclusive"), serde.encode(good), offset=2),  # key mismatch
        _Record(label_key("p3", "exclusive"), None, offset=3),
    ]
    results = stage.process(records, now_ms=5)
    assert [(out.topic, out.error_kind, out.skipped) for out, _ in results] == [
        (None, None, None),
        ("dlq", "decode_error", None),
        ("dlq", "key_mismatch", None),
        (None, None, "tombstone"),
    ]
    assert results[0][1] is not None and results[0][1]["product_id"] == "p1"


def test_a_corrupt_served_card_is_waited_for_not_a_reason_to_dead_letter_labels(
    tmp_path: Path,
) -> None:
    """The newest served version's card unreadable (a half-written or corrupt file): the batch
    raises a transient error (the runtime retries it with back-off) instead of the bug path
    dead-lettering every label as ``internal_error``; once the card is readable it validates."""
    from prodcat.core.errors import TransientError

    version = tmp_path / "classifier" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    (version / "model_card.json").write_text("{not json", encoding="utf-8")
    serde = serde_for("Label")
    stage = LabelStage(
        labels=serde,
        dead_letters=DeadLetters("dlq", serde_for("DeadLetter"), stage="labels", worker=None),
        model_base=tmp_path,
        name="classifier",
    )
    label = {"product_id": "p1", "objective": "exclusive", "category_ids": ["c_0123456789ab"],
             "source": "human", "labelled_at": 1}  # fmt: skip
    records = [_Record(label_key("p1", "exclusive"), serde.encode(label), offset=0)]
    with pytest.raises(TransientError, match="model card"):
        stage.process(records, now_ms=5)
    card = {"classes": [{"id": "c_0123456789ab", "path": "A"}], "rule_based_nodes": []}
    (version / "model_card.json").write_text(json.dumps(card), encoding="utf-8")
    ((out, valid),) = stage.process(records, now_ms=5)
    assert out.topic is None and valid is not None and valid["product_id"] == "p1"


def test_a_registry_outage_holds_the_labels_back_not_a_reason_to_dead_letter_them(
    tmp_path: Path,
) -> None:
    """Issue 17: the trigger started while the schema registry is away cannot decode the labels
    (registry framing, schema not yet fetched): the batch raises the registry's transient error,
    which the runtime retries with back-off, and dead-letters none; with the registry back the
    same labels validate."""
    from prodcat.core.errors import TransientError
    from prodcat.schemas.exceptions import RegistryError
    from prodcat.schemas.serde import AvroSerde
    from tests.conftest import free_port
    from tests.fake_registry import FakeSchemaRegistry, serve_registry

    version = tmp_path / "classifier" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    card = {"classes": [{"id": "c_0123456789ab", "path": "A"}], "rule_based_nodes": []}
    (version / "model_card.json").write_text(json.dumps(card), encoding="utf-8")
    port, registry = free_port(), FakeSchemaRegistry()
    url = f"http://127.0.0.1:{port}"
    label = {"product_id": "p1", "objective": "exclusive", "category_ids": ["c_0123456789ab"],
             "source": "human", "labelled_at": 1}  # fmt: skip
    with serve_registry(port, registry):
        writer = AvroSerde(serde_for("Label").record_name, registry_url=url, topic="labels")
        records = [_Record(label_key("p1", "exclusive"), writer.encode(label), offset=0)]
        writer.close()
    reader = AvroSerde(serde_for("Label").record_name, registry_url=url, topic="labels")
    stage = LabelStage(
        labels=reader,
        dead_letters=DeadLetters("dlq", serde_for("DeadLetter"), stage="labels", worker=None),
        model_base=tmp_path,
        name="classifier",
    )
    with pytest.raises(RegistryError) as raised:  # registry down: no verdict on the label
        stage.process(records, now_ms=5)
    assert isinstance(raised.value, TransientError)
    with serve_registry(port, registry):
        ((out, valid),) = stage.process(records, now_ms=5)
    reader.close()
    assert out.topic is None and valid is not None and valid["product_id"] == "p1"


def _runner(tmp_path: Path, code: str, timeout_s: float = 30) -> JobRunner:
    return JobRunner(
        work_dir=tmp_path, env={}, timeout_s=timeout_s, command=(sys.executable, "-c", code)
    )


WRITE_RESULT = """
import json, sys
path = sys.argv[sys.argv.index("--result") + 1]
json.dump({"version": 4, "outcome": "rejected", "reason": "worse"}, open(path, "w"))
"""


async def test_the_job_runner_reports_results_failures_and_timeouts(tmp_path: Path) -> None:
    done = await _runner(tmp_path, WRITE_RESULT).run(4)
    assert (done.outcome, done.version, done.reason) == ("rejected", 4, "worse")

    failed = await _runner(tmp_path, "import sys; print('boom'); sys.exit(3)").run(5)
    assert failed.outcome == "failed" and "exit code 3" in failed.reason and "boom" in failed.reason

    silent = await _runner(tmp_path, "pass").run(6)
    assert silent.outcome == "failed" and "without a readable result" in silent.reason

    slow = await _runner(tmp_path, "import time; time.sleep(30)", timeout_s=0.5).run(7)
    assert slow.outcome == "timeout" and slow.seconds < 10
    assert json.loads((tmp_path / "jobs" / "v4" / "result.json").read_text())["version"] == 4


TRIGGER = """
import asyncio, sys
from pathlib import Path
from prodcat.streams.retrain_trigger import JobRunner
work = Path(sys.argv[1])
job = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"
runner = JobRunner(
    work_dir=work, env={}, timeout_s=60, command=(sys.executable, "-c", job, str(work / "job.pid"))
)
asyncio.run(runner.run(1))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_job_dies_with_a_trigger_killed_by_sigkill(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    trigger = subprocess.Popen([sys.executable, "-c", TRIGGER, str(tmp_path)])
    pid_file = tmp_path / "job.pid"
    deadline = time.monotonic() + 30
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    job = int(pid_file.read_text())
    assert process_running(job)
    os.kill(trigger.pid, signal.SIGKILL)
    trigger.wait()
    deadline = time.monotonic() + 10
    while process_running(job) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_running(job), "the job outlived its trigger"


def test_a_second_job_for_the_same_version_is_refused(tmp_path: Path) -> None:
    from prodcat.streams.exceptions import RetrainJobError
    from prodcat.streams.retrain_job import job_lock

    with job_lock(tmp_path / "v3"):
        with (
            pytest.raises(RetrainJobError, match="another job for v3 is running"),
            job_lock(tmp_path / "v3"),
        ):
            pass
        with job_lock(tmp_path / "v4"):  # another version is free
            pass
    with job_lock(tmp_path / "v3"):  # released when the first job ended
        pass


BACKFILL_STANDIN = """
import os, sys, time
from pathlib import Path
job = sys.argv[sys.argv.index("--job") + 1]
Path(os.environ["MARKS"], job).write_text(" ".join(sys.argv[1:]) + f" pid={os.getpid()}")
time.sleep(float(os.environ.get("SLEEP", "0")))
"""


async def test_a_promotion_starts_a_backfill_and_a_newer_one_replaces_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from prodcat.core.settings import RetrainSettings, load_settings
    from prodcat.streams.retrain_agent import BackfillLauncher

    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("MARKS", str(marks))
    monkeypatch.setenv("SLEEP", "60")
    settings = load_settings(retrain=RetrainSettings(work_dir=tmp_path / "work"))
    launcher = BackfillLauncher(settings, command=(sys.executable, "-c", BACKFILL_STANDIN))

    async def mark(job: str) -> str:
        for _ in range(200):
            if (marks / job).exists():
                return (marks / job).read_text()
            await asyncio.sleep(0.05)
        raise AssertionError(f"no backfill {job} started")

    launcher.start(3)
    first = await mark("promoted-v3")
    assert first.startswith("--job promoted-v3 --no-progress")
    first_pid = int(first.rsplit("pid=", 1)[1])
    assert process_running(first_pid)

    launcher.start(4)  # a newer promotion: the running backfill is stopped, the new one runs
    second_pid = int((await mark("promoted-v4")).rsplit("pid=", 1)[1])
    for _ in range(100):
        if not process_running(first_pid):
            break
        await asyncio.sleep(0.05)
    assert not process_running(first_pid)
    assert (tmp_path / "work" / "jobs" / "v4" / "backfill.log").exists()

    await launcher.stop()  # the worker stopping: no backfill outlives it
    for _ in range(100):
        if not process_running(second_pid):
            break
        await asyncio.sleep(0.05)
    assert not process_running(second_pid)
