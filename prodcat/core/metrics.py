"""Prometheus metrics of the stream workers, declared against a registry the caller owns."""

from __future__ import annotations

import ctypes
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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
        self.retries = Counter(
            "prodcat_stage_retries",
            "Retries of a stage's batch, send or tick after a transient error, by error class.",
            ["stage", "error"],
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
        self._models: ModelMetrics | None = None
        self._milvus: MilvusMetrics | None = None
        self._feeds: FeedMetrics | None = None

    def stage(self, name: str) -> StageMetrics:
        return StageMetrics(self, name)

    def models(self) -> ModelMetrics:
        """The model-serving series, declared once per registry (classify and embed share them)."""
        if self._models is None:
            self._models = ModelMetrics(self.registry)
        return self._models

    def milvus(self) -> MilvusMetrics:
        """The vector-store series, declared once per registry."""
        if self._milvus is None:
            self._milvus = MilvusMetrics(self.registry)
        return self._milvus

    def feeds(self) -> FeedMetrics:
        """The per-feed series of the normaliser (coverage, profile versions), declared once."""
        if self._feeds is None:
            self._feeds = FeedMetrics(self.registry)
        return self._feeds


class StageMetrics:
    """The worker's metrics seen from one stage: the stage label is bound."""

    def __init__(self, metrics: WorkerMetrics, stage: str) -> None:
        self.stage = stage
        self.registry = metrics.registry  # for a stage's own metrics (e.g. SamplerMetrics)
        self.events_in = metrics.events_in
        self.events_out = metrics.events_out
        self.dead_letters = metrics.dead_letters
        self.skipped = metrics.skipped
        self.retries = metrics.retries
        self.batch_seconds = metrics.batch_seconds.labels(stage)
        self.batch_size = metrics.batch_size.labels(stage)
        self.event_latency = metrics.event_latency.labels(stage)
        self.consumer_lag = metrics.consumer_lag
        self.ready = metrics.ready.labels(stage)
        self.models = metrics.models  # shared series of stages that call models / Milvus
        self.milvus = metrics.milvus
        self.feeds = metrics.feeds
        self._feeds: set[str] = set()

    def retried(self, error: str) -> None:
        """Count one retry after ``error`` (an exception class name: a bounded label)."""
        self.retries.labels(self.stage, error[:60]).inc()

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


class FeedMetrics:
    """What the normaliser understands of each feed: field coverage, profile version, re-profiles.

    ``prodcat_feed_field_total{feed, field}`` counts records whose field came out non-empty
    (``title``, ``category``, ``price``, ``brand``, ``image``, ...); divided by
    ``prodcat_feed_records_total{feed}`` it is the field's coverage, which the alert
    ``ProdcatFeedCoverageDropped`` watches for titles and categories.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter(
            "prodcat_feed_records",
            "Records the normaliser consumed per feed (products and dead letters).",
            ["feed"],
            registry=registry,
        )
        self.fields = Counter(
            "prodcat_feed_field",
            "Products whose field came out non-empty, per feed.",
            ["feed", "field"],
            registry=registry,
        )
        self.profile_version = Gauge(
            "prodcat_feed_profile_version",
            "Version of the feed profile the normaliser applies.",
            ["feed"],
            registry=registry,
        )
        self.profiles = Counter(
            "prodcat_feed_profiles",
            "Feed profiles published or adopted, by why (first, reprofile, override, adopted).",
            ["feed", "reason"],
            registry=registry,
        )
        self.held = Gauge(
            "prodcat_feed_held_records",
            "Records held until their feed's profile is ready (or re-profiled).",
            ["feed"],
            registry=registry,
        )


CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class ModelMetrics:
    """Model calls (latency and errors per model and backend), what the classifier predicts
    (top-1 confidence) and which version serves, with its training time (for its age)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.request_seconds = Histogram(
            "prodcat_model_request_seconds",
            "Wall time of one model call (a chunk of products), failed calls included.",
            ["model", "backend"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.request_errors = Counter(
            "prodcat_model_request_errors",
            "Failed model calls by kind: unavailable (server down or slow, after retries), "
            "signature (deployment does not fit), input (a product the model rejects), other.",
            ["model", "backend", "kind"],
            registry=registry,
        )
        self.confidence = Histogram(
            "prodcat_prediction_confidence",
            "Top-1 exclusive probability of each prediction.",
            ["model"],
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        )
        self.expected_correct = Counter(
            "prodcat_expected_correct",
            "Sum of the calibrated top-1 probabilities of the predictions (the model card's "
            "temperature): expected correct predictions, per feed. Divided by "
            "prodcat_expected_predictions_total over a window it estimates the accuracy without "
            "labels.",
            ["model", "feed"],
            registry=registry,
        )
        self.expected_predictions = Counter(
            "prodcat_expected_predictions",
            "Predictions counted in prodcat_expected_correct_total (from calibrated versions).",
            ["model", "feed"],
            registry=registry,
        )
        self.mapping_checked = Counter(
            "prodcat_mapping_checked",
            "Predictions of products whose feed path has an approved mapping (prodcat mappings).",
            ["model", "feed"],
            registry=registry,
        )
        self.mapping_agreed = Counter(
            "prodcat_mapping_agreed",
            "Of prodcat_mapping_checked_total, the predictions at the mapped node or below it: "
            "divided by it over a window, the approved mappings' purity by the model's account.",
            ["model", "feed"],
            registry=registry,
        )
        self.version = Gauge(
            "prodcat_model_version",
            "Model version that answered the last call.",
            ["model"],
            registry=registry,
        )
        self.trained = Gauge(
            "prodcat_model_trained_timestamp_seconds",
            "Export time (right after training) of the version that answered the last call, "
            "from its model card; age = time() - this.",
            ["model"],
            registry=registry,
        )

    def call(self, model: str, backend: str, seconds: float, error: str | None) -> None:
        """Observer for ``prodcat.serving.backends.MeteredBackend``."""
        self.request_seconds.labels(model, backend).observe(seconds)
        if error is not None:
            self.request_errors.labels(model, backend, error).inc()

    def served(self, model: str, version: int, trained_at: float | None) -> None:
        self.version.labels(model).set(version)
        if trained_at is not None:
            self.trained.labels(model).set(trained_at)


class MilvusMetrics:
    """Vector-store operations (upsert, search, delete, get): latency and errors."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "prodcat_milvus_seconds",
            "Wall time of one vector-store operation, failed ones included.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "prodcat_milvus_errors",
            "Failed vector-store operations, by operation and error class.",
            ["operation", "kind"],
            registry=registry,
        )

    def operation(self, operation: str, seconds: float, error: str | None) -> None:
        """Observer for ``prodcat.serving.vector_store.VectorStore``."""
        self.seconds.labels(operation).observe(seconds)
        if error is not None:
            self.errors.labels(operation, error).inc()


class DriftMetrics:
    """The drift agent's series: PSI of the last closed window per model and signal."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.psi = Gauge(
            "prodcat_drift_psi",
            "Population stability index of the last closed window against the serving "
            "version's training reference; signal: category (top-1) or confidence (top-1 prob).",
            ["model", "signal"],
            registry=registry,
        )
        self.psi_expected = Gauge(
            "prodcat_drift_psi_expected",
            "PSI the last closed window would show from sampling noise alone, without drift: "
            "(non-empty bins - 1) * (1/window + 1/reference). Alert on psi - psi_expected.",
            ["model", "signal"],
            registry=registry,
        )
        self.window_predictions = Gauge(
            "prodcat_drift_window_predictions",
            "Predictions in the last closed window.",
            ["model"],
            registry=registry,
        )
        self.window_version = Gauge(
            "prodcat_drift_window_version",
            "Model version of the last closed window.",
            ["model"],
            registry=registry,
        )
        self.windows = Counter(
            "prodcat_drift_windows", "Windows closed and scored.", ["model"], registry=registry
        )
        self.reference_missing = Counter(
            "prodcat_drift_reference_missing",
            "Predictions of a model version with no usable drift reference (left out).",
            ["model"],
            registry=registry,
        )


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


_MALLINFO2_FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS.split()]


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    """glibc's ``mallinfo2`` (2.33+), or None where the C library has none."""
    try:
        libc = ctypes.CDLL(None)
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    function.argtypes = []
    return cast("Callable[[], _MallInfo2]", function)


class MemoryCollector(Collector):
    """Where a worker's memory is, to tell a leak from fragmentation when its RSS grows: the C
    heap's bytes in use and free (glibc), its mmapped blocks, Python's allocated objects (blocks)
    and the process's threads. Collected at scrape time; a few microseconds."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._mallinfo = _mallinfo2()
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        if self._mallinfo is not None:
            info = self._mallinfo()
            heap = GaugeMetricFamily(
                "prodcat_process_malloc_bytes",
                "The C heap (glibc malloc): in_use, free (held, not returned to the system), mmapped.",
                labels=["kind"],
            )
            heap.add_metric(["in_use"], float(info.uordblks + info.hblkhd))
            heap.add_metric(["free"], float(info.fordblks))
            heap.add_metric(["mmapped"], float(info.hblkhd))
            yield heap
        yield GaugeMetricFamily(
            "prodcat_python_allocated_blocks",
            "Memory blocks the Python interpreter has allocated (objects and their buffers).",
            value=float(sys.getallocatedblocks()),
        )
        try:
            threads = len(os.listdir("/proc/self/task"))
        except OSError:
            return
        yield GaugeMetricFamily("prodcat_process_threads", "Threads of the process.", value=threads)
