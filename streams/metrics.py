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
