"""The retrain trigger's logic, testable without Kafka: label accounting, when to launch, the job.

**State lives in Kafka.** The trigger consumes ``labels`` in its own consumer group and commits
offsets only when a training job *finishes* (whatever its outcome), and then only up to the
positions consumed when that job was *launched*. So:

* after a restart, the labels no finished job covers are consumed again and counted again, and
  the wait is measured from the oldest one's broker timestamp: nothing is forgotten;
* a job that was running when the worker stopped is retried (its labels were never committed);
* a job that fails or times out still commits: a permanently failing job is retried only after
  ``min_new_labels`` more labels (or ``max_wait_s``), never in a tight loop;
* labels consumed while a job runs are not covered by it and count toward the next job.

**Single flight**: one :class:`TriggerState` launches at most one job at a time. The trigger is a
singleton: run the ``retrain`` role in one worker (two would split the partitions and each count
its share).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prodcat.core.errors import ProdcatError
from prodcat.schemas.records import Label
from prodcat.schemas.serde import AvroSerde
from prodcat.serving.exceptions import ModelCardUnavailableError
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.decoding import decode_records
from prodcat.streams.stage import Outgoing
from prodcat.training.exceptions import TrainingError
from prodcat.training.labels import (
    LabelError,
    Vocabulary,
    load_vocabulary,
    newest_version,
    validate_label,
)
from prodcat.training.taxonomy import CategoryTree

logger = logging.getLogger(__name__)

JOB_COMMAND: tuple[str, ...] = (sys.executable, "-m", "prodcat", "retrain", "run")
#: How a job can end (JobOutcome.outcome).
JOB_OUTCOMES: tuple[str, ...] = ("promoted", "rejected", "failed", "timeout")


@dataclass
class Launch:
    """What a launched job covers: the positions consumed and the labels counted at launch."""

    offsets: dict[int, int]
    labels: int


@dataclass
class TriggerState:
    """Counts valid labels per partition since the last covered offset; decides launches."""

    min_new_labels: int
    max_wait_s: float
    positions: dict[int, int] = field(default_factory=dict)
    pending: dict[int, int] = field(default_factory=dict)
    oldest_ms: dict[int, int] = field(default_factory=dict)
    running: Launch | None = None

    @property
    def pending_labels(self) -> int:
        return sum(self.pending.values())

    def consumed(self, partition: int, next_offset: int, valid: int, oldest_ms: int | None) -> None:
        """A batch of one partition was handled: ``valid`` labels count toward the next job."""
        self.positions[partition] = next_offset
        if valid:
            self.pending[partition] = self.pending.get(partition, 0) + valid
            if oldest_ms is not None and partition not in self.oldest_ms:
                self.oldest_ms[partition] = oldest_ms

    def revoked(self, partitions: Sequence[int]) -> None:
        """Partitions moved to another consumer: it recounts them from the committed offsets."""
        for partition in partitions:
            self.positions.pop(partition, None)
            self.pending.pop(partition, None)
            self.oldest_ms.pop(partition, None)

    def due(self, now_ms: int) -> bool:
        """Whether a job should start now (never while one runs)."""
        if self.running is not None or not self.pending_labels:
            return False
        if self.pending_labels >= self.min_new_labels:
            return True
        oldest = min(self.oldest_ms.values(), default=now_ms)
        return now_ms - oldest >= self.max_wait_s * 1000

    def launch(self) -> Launch:
        """Mark a job as running; the labels counted so far are its, later ones the next job's."""
        if self.running is not None:
            raise RuntimeError("a training job is already running")
        self.running = Launch(dict(self.positions), self.pending_labels)
        self.pending.clear()
        self.oldest_ms.clear()
        return self.running

    def finished(self) -> dict[int, int]:
        """The job ended: the offsets to commit (those consumed when it was launched)."""
        if self.running is None:
            raise RuntimeError("no training job is running")
        offsets = {p: o for p, o in self.running.offsets.items() if p in self.positions}
        self.running = None
        return offsets


class LabelStage:
    """Decodes and validates a micro-batch of labels: one output per record, in order.

    Valid labels are consumed without a Kafka output (``topic`` None); tombstones are skipped
    (``tombstone``); undecodable or invalid labels become dead letters with their reason. The
    vocabulary is the configured taxonomy's nodes (``taxonomy()``, when one is configured) plus
    the newest serving classifier's classes, re-read when a new version appears.
    """

    def __init__(
        self,
        *,
        labels: AvroSerde,
        dead_letters: DeadLetters,
        model_base: Path,
        name: str,
        taxonomy: Callable[[], CategoryTree | None] | None = None,
    ) -> None:
        self.labels = labels
        self.dead_letters = dead_letters
        self.model_base = model_base
        self.name = name
        self.taxonomy = taxonomy
        self._vocabulary: Vocabulary | None = None

    def vocabulary(self) -> Vocabulary:
        """The labels' vocabulary; a served card that cannot be read (being written, corrupt) is
        waited for (a transient error: the runtime retries), never a reason to dead-letter."""
        current = self._vocabulary
        if current is None or current.version != newest_version(self.model_base, self.name):
            try:
                loaded = load_vocabulary(self.model_base, self.name, self._taxonomy())
            except TrainingError as exc:
                raise ModelCardUnavailableError(str(exc)) from exc
            current = self._vocabulary = loaded
        return current

    def _taxonomy(self) -> CategoryTree | None:
        if self.taxonomy is None:
            return None
        try:
            return self.taxonomy()
        except ProdcatError as exc:  # validate by the served classes until it can be read
            logger.warning("the configured taxonomy cannot be read (%s); using the model's", exc)
            return None

    def process(
        self, records: Sequence[Any], now_ms: int
    ) -> list[tuple[Outgoing, Mapping[str, Any] | None]]:
        """``(output, valid label or None)`` per record. Raises only on registry outages."""
        decoded, dead = decode_records(records, self.labels, self.dead_letters, now_ms, Label)
        results: dict[int, tuple[Outgoing, Mapping[str, Any] | None]] = {
            i: (letter, None) for i, letter in dead.items()
        }
        vocabulary = self.vocabulary()
        for item in decoded:
            key = item.record.key
            if item.value is None:
                skip = Outgoing(None, key, None, item.out_headers, item.feed, None, "tombstone")
                results[item.index] = (skip, None)
                continue
            try:
                label = validate_label(item.value, vocabulary, key)
            except LabelError as exc:
                results[item.index] = (
                    item.dead(self.dead_letters, exc.kind, exc.message, now_ms),
                    None,
                )
                continue
            results[item.index] = (
                Outgoing(None, key, None, item.out_headers, item.feed, None),
                label,
            )
        return [results[i] for i in range(len(records))]


@dataclass(frozen=True)
class JobOutcome:
    """How a training job ended: promoted, rejected (by the gate), failed or timeout."""

    outcome: str
    version: int
    reason: str
    seconds: float
    result: dict[str, Any] | None = None
    log: Path | None = None


class Launcher(Protocol):
    """Runs one training job to its end (cancelling the call stops the job)."""

    async def run(self, version: int) -> JobOutcome: ...


class JobRunner:
    """Runs one training job as a local subprocess (its own process group), with a timeout.

    ``command`` is the job's argv without ``--version`` / ``--result`` (default:
    ``prodcat retrain run``); it gets ``env`` (the worker's settings). Its output goes to
    ``<work_dir>/jobs/v<version>/job.log``. Cancelling :meth:`run` kills the job.
    """

    def __init__(
        self,
        *,
        work_dir: Path,
        env: Mapping[str, str],
        timeout_s: float,
        command: Sequence[str] = JOB_COMMAND,
    ) -> None:
        self.work_dir = work_dir
        self.env = dict(env)
        self.timeout_s = timeout_s
        self.command = tuple(command)

    async def run(self, version: int) -> JobOutcome:
        folder = self.work_dir / "jobs" / f"v{version}"
        folder.mkdir(parents=True, exist_ok=True)
        log_path, result_path = folder / "job.log", folder / "result.json"
        result_path.unlink(missing_ok=True)
        started = time.monotonic()
        args = [*self.command, "--version", str(version), "--result", str(result_path)]
        proc = await spawn_job(args, log_path, self.env)
        try:
            code = await asyncio.wait_for(proc.wait(), self.timeout_s)
        except TimeoutError:
            kill_group(proc)
            await proc.wait()
            reason = f"job timed out after {self.timeout_s:g}s (log: {log_path})"
            return JobOutcome(
                "timeout", version, reason, time.monotonic() - started, None, log_path
            )
        except asyncio.CancelledError:  # the worker is stopping: the job must not outlive it
            kill_group(proc)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(proc.wait())
            raise
        seconds = time.monotonic() - started
        if code != 0:
            reason = f"job failed with exit code {code}: {_tail(log_path)} (log: {log_path})"
            return JobOutcome("failed", version, reason, seconds, None, log_path)
        try:
            result = json.loads(result_path.read_text(encoding="utf-8"))
            outcome, reason = str(result["outcome"]), str(result["reason"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = f"job exited 0 without a readable result {result_path}: {exc}"
            return JobOutcome("failed", version, reason, seconds, None, log_path)
        return JobOutcome(
            outcome, int(result.get("version", version)), reason, seconds, result, log_path
        )


async def spawn_job(
    args: Sequence[str], log_path: Path, env: Mapping[str, str]
) -> asyncio.subprocess.Process:
    """Start a job process: its own session (so :func:`kill_group` stops all of it), output
    appended to ``log_path``, killed if this process dies (:func:`die_with_parent`)."""
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def die_with_parent() -> None:
    """In the job's process, before exec: SIGKILL it when the process that started it dies, so
    a trigger killed by SIGKILL leaves no job behind (it runs in its own session, out of reach of
    the trigger's process group). Linux only; elsewhere the job lock below still refuses a second
    job for a version."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(path: Path, chars: int = 400) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "")[-chars:]
