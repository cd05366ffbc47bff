"""The retrain trigger agent: ``labels`` → (N new labels or T seconds) → one training job at a time.

A task of the stage runtime (:mod:`prodcat.streams.runtime`, group ``<app_id>-retrain``) with
deferred inputs, because its commits follow jobs, not batches (see
:mod:`prodcat.streams.retrain_trigger` for how the state lives in Kafka). Per micro-batch it decodes
and validates the labels (invalid ones become dead letters with their reason, acknowledged before
going on) and counts the valid ones, which it holds. On the runtime's tick, every
``check_interval_s``, it launches a job when due (:class:`~prodcat.streams.retrain_trigger.TriggerState`)
and runs it as a subprocess (``prodcat retrain run``) or a Kubernetes Job; when it ends it publishes
a ``rejected`` event for a failed or timed-out job (the job publishes its own events otherwise),
updates the metrics and releases the labels the job covered, so their offsets are committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Sequence, Set
from typing import Any

import faust
from aiokafka import TopicPartition

from prodcat.core.metrics import RetrainMetrics, StageMetrics
from prodcat.core.settings import Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.model_events import model_event
from prodcat.streams.retrain_trigger import (
    JOB_OUTCOMES,
    JobOutcome,
    JobRunner,
    LabelStage,
    Launcher,
    TriggerState,
    kill_group,
    spawn_job,
)
from prodcat.streams.runtime import StageHandler, register_stage
from prodcat.streams.stage import Input, Outgoing, Outputs, Position
from prodcat.streams.taxonomy_store import configured_taxonomy
from prodcat.streams.worker_process import worker_env
from prodcat.training.labels import free_version

logger = logging.getLogger(__name__)

STAGE = "retrain"
DECISIONS = {"promoted": 1.0, "rejected": 0.0, "failed": -1.0, "timeout": -1.0}
BACKFILL_COMMAND: tuple[str, ...] = (sys.executable, "-m", "prodcat", "backfill")


class RetrainTrigger(StageHandler):
    """Consumes labels, counts them, runs training jobs one at a time."""

    #: Labels consumed while a job runs wait for the next one; past this many a partition pauses.
    max_pending = 100_000

    def __init__(
        self,
        settings: Settings,
        metrics: StageMetrics,
        retrain_metrics: RetrainMetrics,
        runner: Launcher | None = None,
    ) -> None:
        cfg, topics, registry = settings.retrain, settings.topics, settings.serde.registry_url
        dead_letters = DeadLetters.for_stage(settings, "labels")
        super().__init__(STAGE, topics.labels, dead_letters)
        self.settings = settings
        self.metrics = metrics
        self.retrain_metrics = retrain_metrics
        self.model = settings.serving.classifier
        for outcome in JOB_OUTCOMES:  # series exist from the start, so increase() sees the first
            retrain_metrics.jobs_finished.labels(self.model, outcome)
        self.state = TriggerState(cfg.min_new_labels, cfg.max_wait_s)
        self.stage = LabelStage(
            labels=serde_for("Label", registry, topic=topics.labels),
            dead_letters=dead_letters,
            model_base=settings.serving.model_base,
            name=self.model,
            taxonomy=lambda: configured_taxonomy(settings),
        )
        self.events = serde_for("ModelEvent", registry, topic=topics.model_events)
        self.runner = runner or _launcher(settings)
        self._job: asyncio.Task[JobOutcome] | None = None
        self.backfills = BackfillLauncher(settings)
        self._held: dict[int, list[int]] = {}  # partition → offsets of valid labels held
        self._next_check = time.monotonic()

    def process(self, batch: Sequence[Input]) -> Outputs:
        now_ms = time.time_ns() // 1_000_000
        results = self.stage.process(batch, now_ms)
        valid: dict[int, int] = {}
        oldest: dict[int, int] = {}
        next_offsets: dict[int, int] = {}
        held: list[Position] = []
        for record, (out, label) in zip(batch, results, strict=True):
            next_offsets[record.partition] = record.offset + 1
            if out.error_kind is not None:
                self.retrain_metrics.labels_invalid.labels(out.error_kind).inc()
            if label is None:
                continue
            self.retrain_metrics.labels_consumed.labels(label["source"], label["objective"]).inc()
            valid[record.partition] = valid.get(record.partition, 0) + 1
            ts = record.timestamp or now_ms
            oldest[record.partition] = min(oldest.get(record.partition, ts), ts)
            held.append(Position(record.topic, record.partition, record.offset))
            self._held.setdefault(record.partition, []).append(record.offset)
        for partition, next_offset in next_offsets.items():
            self.state.consumed(
                partition, next_offset, valid.get(partition, 0), oldest.get(partition)
            )
        return Outputs.of((out for out, _ in results), held=held)

    async def on_tick(self, now: float) -> Outputs | None:
        outputs = None
        if self._job is not None and self._job.done():
            outputs = self._finished(self._job.result())
            self._job = None
        if time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + self.settings.retrain.check_interval_s
            if self.state.due(time.time_ns() // 1_000_000):
                self._launch()
        self.retrain_metrics.pending.labels(self.model).set(self.state.pending_labels)
        return outputs

    def on_revoked(self, partitions: Set[TopicPartition]) -> None:
        """Another consumer recounts them from the committed offsets."""
        gone = [tp.partition for tp in partitions if tp.topic == self.topic]
        self.state.revoked(gone)
        for partition in gone:
            self._held.pop(partition, None)

    async def stop(self) -> None:
        if self._job is not None:
            self._job.cancel()
            await asyncio.gather(self._job, return_exceptions=True)
        await self.backfills.stop()

    def _launch(self) -> None:
        cfg = self.settings.retrain
        launch = self.state.launch()
        version = free_version(self.settings.serving.model_base, self.model, cfg.work_dir)
        logger.info(
            "retrain: launching job v%d for %d new labels (offsets %s)",
            version,
            launch.labels,
            launch.offsets,
        )
        self.retrain_metrics.jobs_started.labels(self.model).inc()
        self.retrain_metrics.running.labels(self.model).set(1)
        self._job = asyncio.create_task(self.runner.run(version))

    def _finished(self, job: JobOutcome) -> Outputs:
        """Metrics, a ``rejected`` event for a failed job, and the covered labels released."""
        m = self.retrain_metrics
        m.running.labels(self.model).set(0)
        m.jobs_finished.labels(self.model, job.outcome).inc()
        m.job_seconds.labels(self.model).observe(job.seconds)
        m.last_decision.labels(self.model).set(DECISIONS.get(job.outcome, -1.0))
        m.last_version.labels(self.model).set(job.version)
        events: list[Outgoing] = []
        if job.outcome in ("failed", "timeout"):
            logger.error("retrain: job v%d %s: %s", job.version, job.outcome, job.reason)
            record = model_event(
                "rejected",
                model_name=self.model,
                version=job.version,
                reason=job.reason,
                artifact_uri=str(job.log) if job.log else None,
            )
            topic = self.settings.topics.model_events
            key = self.model.encode()
            events.append(Outgoing(topic, key, self.events.encode(record), [], None, None))
        else:
            logger.info("retrain: job v%d %s: %s", job.version, job.outcome, job.reason)
        if job.outcome == "promoted" and self.settings.backfill.after_promotion:
            self.backfills.start(job.version)
        released: list[Position] = []
        for partition, end in self.state.finished().items():
            offsets = self._held.get(partition, [])
            released += [Position(self.topic, partition, o) for o in offsets if o < end]
            self._held[partition] = [o for o in offsets if o >= end]
        return Outputs(oks=events, released=released)

    def observe(
        self, metrics: StageMetrics, outputs: Outputs, seconds: float, oldest_ts: float | None
    ) -> None:
        """Labels as they are consumed; a job's ``rejected`` event is not an input."""
        events = self.settings.topics.model_events
        inputs = [out for out in outputs if out.topic != events]
        if inputs:
            super().observe(metrics, Outputs.of(inputs), seconds, oldest_ts)


class BackfillLauncher:
    """Starts ``prodcat backfill --job promoted-v<version>`` after a promotion (setting
    ``backfill.after_promotion``), as a subprocess of the worker with the worker's settings; its
    output goes to ``<work_dir>/jobs/v<version>/backfill.log``. A newer promotion stops the one
    still running (the new job re-scores every product); stopping the worker stops it too, and the
    job can be resumed by hand with the same ``--job``."""

    def __init__(self, settings: Settings, command: Sequence[str] = BACKFILL_COMMAND) -> None:
        self.work_dir = settings.retrain.work_dir
        self.env = worker_env(settings)
        self.command = tuple(command)
        self._task: asyncio.Task[None] | None = None

    def start(self, version: int) -> None:
        previous, self._task = self._task, None
        if previous is not None and not previous.done():
            logger.info("retrain: a newer promotion (v%d) stops the running backfill", version)
            previous.cancel()
        self._task = asyncio.create_task(self._run(version))

    async def _run(self, version: int) -> None:
        job = f"promoted-v{version}"
        folder = self.work_dir / "jobs" / f"v{version}"
        folder.mkdir(parents=True, exist_ok=True)
        log_path = folder / "backfill.log"
        logger.info("retrain: backfill %s started (log: %s)", job, log_path)
        proc = await spawn_job([*self.command, "--job", job, "--no-progress"], log_path, self.env)
        try:
            code = await proc.wait()
        except asyncio.CancelledError:
            kill_group(proc)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(proc.wait())
            raise
        if code == 0:
            logger.info("retrain: backfill %s finished", job)
        else:
            logger.error(
                "retrain: backfill %s failed with exit code %d (log: %s)", job, code, log_path
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _launcher(settings: Settings) -> Launcher:
    """The job runner the settings ask for: a local subprocess or a Kubernetes Job."""
    cfg = settings.retrain
    if cfg.launcher == "kubernetes":
        from prodcat.streams.k8s_jobs import (
            ApiServer,
            JobTemplateError,
            KubernetesJobRunner,
            load_template,
        )

        if cfg.job_template is None:
            raise JobTemplateError("retrain.launcher=kubernetes needs retrain.job_template")
        return KubernetesJobRunner(
            api=ApiServer.in_cluster(cfg.kubernetes_api, cfg.kubernetes_namespace),
            template=load_template(cfg.job_template),
            work_dir=cfg.work_dir,
            timeout_s=cfg.job_timeout_s,
        )
    return JobRunner(work_dir=cfg.work_dir, env=worker_env(settings), timeout_s=cfg.job_timeout_s)


def register_retrain(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    """Declare the retrain trigger on ``app`` (a task of the stage runtime)."""
    trigger = RetrainTrigger(settings, metrics, RetrainMetrics(metrics.registry))
    return register_stage(app, settings, metrics, trigger)


__all__ = ["RetrainTrigger", "register_retrain"]
