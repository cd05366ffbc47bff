"""The retrain trigger agent: ``labels`` → (N new labels or T seconds) → one training job at a time.

A task of the worker's Faust app with its own aiokafka consumer (group ``<app_id>-retrain``),
because its commits follow jobs, not batches (see :mod:`prodcat.streams.retrain_trigger` for how the state
lives in Kafka). Per micro-batch it decodes and validates the labels (invalid ones become dead
letters with their reason, acknowledged before going on) and counts the valid ones. Every
``check_interval_s`` it launches a job when due (:class:`~prodcat.streams.retrain_trigger.TriggerState`),
runs it as a subprocess (``prodcat retrain run``; a Kubernetes Job later), and when it ends
publishes a ``rejected`` event for a failed or timed-out job (the job publishes its own events
otherwise), updates the metrics and commits the offsets the job covered.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError

from prodcat.core.metrics import RetrainMetrics, StageMetrics
from prodcat.core.settings import Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.batch_consumer import (
    handle_and_send,
    stage_consumer,
    stage_producer,
    with_backoff,
)
from prodcat.streams.batch_sender import BatchSender
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.model_events import model_event
from prodcat.streams.retrain_trigger import (
    JOB_OUTCOMES,
    JobOutcome,
    JobRunner,
    LabelStage,
    Launcher,
    TriggerState,
)
from prodcat.streams.stage import Outgoing, record_batch
from prodcat.streams.worker_process import worker_env
from prodcat.training.labels import free_version

logger = logging.getLogger(__name__)

STAGE = "retrain"
DECISIONS = {"promoted": 1.0, "rejected": 0.0, "failed": -1.0, "timeout": -1.0}


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, state: TriggerState, metrics: StageMetrics) -> None:
        self.state = state
        self.metrics = metrics

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.state.revoked([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.metrics.ready.set(1)


class RetrainTrigger:
    """Consumes labels, counts them, runs training jobs one at a time."""

    def __init__(
        self,
        settings: Settings,
        metrics: StageMetrics,
        retrain_metrics: RetrainMetrics,
        runner: Launcher | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.retrain_metrics = retrain_metrics
        cfg, topics, registry = settings.retrain, settings.topics, settings.serde.registry_url
        self.model = settings.serving.classifier
        for outcome in JOB_OUTCOMES:  # series exist from the start, so increase() sees the first
            retrain_metrics.jobs_finished.labels(self.model, outcome)
        self.state = TriggerState(cfg.min_new_labels, cfg.max_wait_s)
        self.stage = LabelStage(
            labels=serde_for("Label", registry, topic=topics.labels),
            dead_letters=DeadLetters.for_stage(settings, "labels"),
            model_base=settings.serving.model_base,
            name=self.model,
        )
        self.events = serde_for("ModelEvent", registry, topic=topics.model_events)
        self.runner = runner or _launcher(settings)
        self._job: asyncio.Task[JobOutcome] | None = None
        self._counted: tuple[dict[int, int], dict[int, int]] = ({}, {})

    def _handle(self, records: Sequence[Any]) -> list[Outgoing]:
        now_ms = time.time_ns() // 1_000_000
        results = self.stage.process(records, now_ms)
        valid: dict[int, int] = {}
        oldest: dict[int, int] = {}
        for record, (out, label) in zip(records, results, strict=True):
            if out.error_kind is not None:
                self.retrain_metrics.labels_invalid.labels(out.error_kind).inc()
            if label is None:
                continue
            self.retrain_metrics.labels_consumed.labels(label["source"], label["objective"]).inc()
            valid[record.partition] = valid.get(record.partition, 0) + 1
            ts = record.timestamp or now_ms
            oldest[record.partition] = min(oldest.get(record.partition, ts), ts)
        self._counted = (valid, oldest)
        return [out for out, _ in results]

    async def run(self) -> None:
        settings, worker = self.settings, self.settings.worker
        consumer = stage_consumer(settings, STAGE)
        producer = stage_producer(settings, STAGE)
        consumer.subscribe([settings.topics.labels], listener=_Listener(self.state, self.metrics))
        await producer.start()
        await consumer.start()
        sender = BatchSender(producer)
        check_every = settings.retrain.check_interval_s
        next_check = time.monotonic()
        try:
            while True:
                timeout_ms = int(min(check_every, 0.5) * 1000)
                fetched = await consumer.getmany(
                    timeout_ms=timeout_ms, max_records=worker.batch_size
                )
                if fetched:
                    await self._consume(fetched, sender)
                if self._job is not None and self._job.done():
                    await self._finished(self._job.result(), consumer, producer)
                    self._job = None
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + check_every
                    if self.state.due(time.time_ns() // 1_000_000):
                        self._launch()
                self.retrain_metrics.pending.labels(self.model).set(self.state.pending_labels)
        finally:
            if self._job is not None:
                self._job.cancel()
                await asyncio.gather(self._job, return_exceptions=True)
            await consumer.stop()
            await producer.stop()

    async def _consume(self, fetched: dict[Any, list[Any]], sender: BatchSender) -> None:
        started = time.perf_counter()
        records = [m for messages in fetched.values() for m in messages]
        outgoing = await with_backoff(
            STAGE, functools.partial(handle_and_send, self._handle, sender, records)
        )
        valid, oldest = self._counted
        for tp, messages in fetched.items():
            self.state.consumed(
                tp.partition,
                messages[-1].offset + 1,
                valid.get(tp.partition, 0),
                oldest.get(tp.partition),
            )
        first = min((r.timestamp for r in records if r.timestamp), default=None)
        record_batch(
            self.metrics, outgoing, time.perf_counter() - started, first / 1000 if first else None
        )

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

    async def _finished(self, job: JobOutcome, consumer: AIOKafkaConsumer, producer: Any) -> None:
        m = self.retrain_metrics
        m.running.labels(self.model).set(0)
        m.jobs_finished.labels(self.model, job.outcome).inc()
        m.job_seconds.labels(self.model).observe(job.seconds)
        m.last_decision.labels(self.model).set(DECISIONS.get(job.outcome, -1.0))
        m.last_version.labels(self.model).set(job.version)
        if job.outcome in ("failed", "timeout"):
            logger.error("retrain: job v%d %s: %s", job.version, job.outcome, job.reason)
            record = model_event(
                "rejected",
                model_name=self.model,
                version=job.version,
                reason=job.reason,
                artifact_uri=str(job.log) if job.log else None,
            )
            value = self.events.encode(record)

            async def publish() -> None:
                await producer.send_and_wait(
                    self.settings.topics.model_events, value, key=self.model.encode()
                )

            await with_backoff(STAGE, publish)
        else:
            logger.info("retrain: job v%d %s: %s", job.version, job.outcome, job.reason)
        offsets = self.state.finished()
        if offsets:
            topic = self.settings.topics.labels
            try:
                await consumer.commit({TopicPartition(topic, p): o for p, o in offsets.items()})
            except (CommitFailedError, RebalanceInProgressError, KafkaError) as exc:
                # The partitions moved: their new owner counts the labels again (at worst a retrain).
                logger.warning("retrain: committing %s failed (%s)", offsets, exc)


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
    """Declare the retrain trigger on ``app`` (a task of the worker)."""
    trigger = RetrainTrigger(settings, metrics, RetrainMetrics(metrics.registry))

    async def retrain_trigger() -> None:
        await trigger.run()

    return app.task(retrain_trigger)


__all__ = ["RetrainTrigger", "register_retrain"]
