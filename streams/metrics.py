"""Prometheus metrics of the stream workers, declared against a registry the caller owns."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_FEED_LABEL = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
_MAX_FEEDS = 200

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class WorkerMetrics:
    """Counters, latency histograms and lag of a worker's stages (normalize, classify, ...)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events_in = Counter(
            "prodcat_events_in", "Events consumed by a stage.", ["stage", "feed"], registry=registry
        )
        self.events_out = Counter(
            "prodcat_events_out",
            "Records produced by a stage.",
            ["stage", "feed"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "prodcat_dead_letters",
            "Inputs sent to the dead-letter topic.",
            ["stage", "feed", "reason"],
            registry=registry,
        )
        self.skipped = Counter(
            "prodcat_events_skipped",
            "Inputs a stage consumed with nothing to do (e.g. a product without images).",
            ["stage", "reason"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "prodcat_batch_seconds",
            "Time to process one micro-batch, outputs acknowledged.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "prodcat_batch_size",
            "Events per micro-batch.",
            ["stage"],
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
            registry=registry,
        )
        self.event_latency = Histogram(
            "prodcat_event_latency_seconds",
            "Age of the oldest input of a micro-batch (broker timestamp) when its outputs are acknowledged.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "prodcat_consumer_lag",
            "Messages behind the partition's high watermark.",
            ["stage", "topic", "partition"],
            registry=registry,
        )
        self.ready = Gauge(
            "prodcat_worker_ready",
            "1 once the worker has partitions assigned.",
            ["stage"],
            registry=registry,
        )

    def stage(self, name: str) -> StageMetrics:
        return StageMetrics(self, name)


class StageMetrics:
    """The worker's metrics seen from one stage: the stage label is bound."""

    def __init__(self, metrics: WorkerMetrics, stage: str) -> None:
        self.stage = stage
        self.registry = metrics.registry  # for a stage's own metrics (e.g. SamplerMetrics)
        self.events_in = metrics.events_in
        self.events_out = metrics.events_out
        self.dead_letters = metrics.dead_letters
        self.skipped = metrics.skipped
        self.batch_seconds = metrics.batch_seconds.labels(stage)
        self.batch_size = metrics.batch_size.labels(stage)
        self.event_latency = metrics.event_latency.labels(stage)
        self.consumer_lag = metrics.consumer_lag
        self.ready = metrics.ready.labels(stage)
        self._feeds: set[str] = set()

    def set_lag(self, topic: str, partition: int, highwater: int | None, next_offset: int) -> None:
        """Lag of a partition: its high watermark minus the next offset this stage will read."""
        if highwater is not None:
            lag = max(0, highwater - next_offset)
            self.consumer_lag.labels(self.stage, topic, str(partition)).set(lag)

    def feed_label(self, feed: str | None) -> str:
        """A bounded label value for a feed name taken from message headers."""
        if not feed:
            return "unknown"
        if feed in self._feeds:
            return feed
        if not _FEED_LABEL.match(feed):
            return "invalid"
        if len(self._feeds) >= _MAX_FEEDS:
            return "other"
        self._feeds.add(feed)
        return feed


class SamplerMetrics:
    """The sampler agent's own series, besides its stage metrics (events in, dead letters, lag)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.candidates = Counter(
            "prodcat_sampler_candidates",
            "Predictions taken into a selection window as candidates.",
            registry=registry,
        )
        self.requests = Counter(
            "prodcat_sampler_requests",
            "Annotation requests emitted, by strategy (random: the random share).",
            ["strategy"],
            registry=registry,
        )
        self.excluded = Counter(
            "prodcat_sampler_excluded",
            "Predictions not requested because the product is labelled or already pending.",
            ["reason"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "prodcat_sampler_rate_limited",
            "Requests a window would have emitted but the rate limit (max_per_minute) held back.",
            registry=registry,
        )
        self.fallbacks = Counter(
            "prodcat_sampler_fallbacks",
            "Candidates scored by the fallback: no_vector (density), no_committee (QBC).",
            ["reason"],
            registry=registry,
        )
        self.state_records = Counter(
            "prodcat_sampler_state_records",
            "Records of the labels and annotation.requests topics read to rebuild and follow the "
            "dedupe state (bad: undecodable, logged and ignored).",
            ["topic", "outcome"],
            registry=registry,
        )
        self.labelled = Gauge(
            "prodcat_sampler_labelled_products", "Labelled products known.", registry=registry
        )
        self.pending = Gauge(
            "prodcat_sampler_pending_products",
            "Products with an open annotation request.",
            registry=registry,
        )


class RetrainMetrics:
    """The retrain trigger's own series (labels, jobs, gate), labelled by model name."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.labels_consumed = Counter(
            "prodcat_labels_consumed",
            "Valid labels the retrain trigger consumed, by source and objective.",
            ["source", "objective"],
            registry=registry,
        )
        self.labels_invalid = Counter(
            "prodcat_labels_invalid",
            "Labels dead-lettered by the retrain trigger, by reason.",
            ["reason"],
            registry=registry,
        )
        self.pending = Gauge(
            "prodcat_retrain_pending_labels",
            "Valid labels consumed that no finished or running job covers yet.",
            ["model"],
            registry=registry,
        )
        self.running = Gauge(
            "prodcat_retrain_job_running",
            "1 while a training job runs.",
            ["model"],
            registry=registry,
        )
        self.jobs_started = Counter(
            "prodcat_retrain_jobs_started", "Training jobs launched.", ["model"], registry=registry
        )
        self.jobs_finished = Counter(
            "prodcat_retrain_jobs_finished",
            "Training jobs finished, by outcome: promoted, rejected, failed, timeout.",
            ["model", "outcome"],
            registry=registry,
        )
        self.job_seconds = Histogram(
            "prodcat_retrain_job_seconds",
            "Wall time of a training job.",
            ["model"],
            buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
            registry=registry,
        )
        self.last_decision = Gauge(
            "prodcat_retrain_last_decision",
            "Last gate decision: 1 promoted, 0 rejected, -1 job failed or timed out.",
            ["model"],
            registry=registry,
        )
        self.last_version = Gauge(
            "prodcat_retrain_last_version",
            "Model version of the last finished job (the candidate's, or the promoted one's).",
            ["model"],
            registry=registry,
        )
