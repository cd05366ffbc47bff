"""The web UI's Prometheus metrics (names fixed: dashboards use them), declared on a registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from prodcat.serving.api import ApiMetrics


class WebMetrics:
    """Annotation and similarity-evaluation metrics, plus the API's HTTP request metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.http = ApiMetrics(registry)
        self.queue_depth = Gauge(
            "prodcat_annotation_queue_depth",
            "Annotation requests without an exclusive label, by strategy.",
            ["strategy"],
            registry=registry,
        )
        self.labels = Counter(
            "prodcat_annotation_labels",
            "Labels submitted through the UI, by the answered request's strategy.",
            ["strategy"],
            registry=registry,
        )
        self.seconds = Histogram(
            "prodcat_annotation_seconds",
            "Time an annotator took per label (card shown to label submitted).",
            buckets=(1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 300),
            registry=registry,
        )
        self.judgements = Counter(
            "prodcat_similarity_judgements",
            "Similarity judgements recorded, by verdict.",
            ["relevant"],
            registry=registry,
        )

        self.mapping_decisions = Counter(
            "prodcat_mapping_decisions",
            "Feed-category mapping decisions taken on the Mappings screen, by status.",
            ["status"],
            registry=registry,
        )
        self.mapping_labels = Counter(
            "prodcat_mapping_ui_labels",
            "Labels (source mapping) written by approvals on the Mappings screen.",
            registry=registry,
        )

        self.reviews = Counter(
            "prodcat_label_reviews",
            "Held labels reviewed in the Review queue, by decision (confirmed, corrected) and the "
            "label's source.",
            ["decision", "source"],
            registry=registry,
        )
        self.second_opinions = Counter(
            "prodcat_second_opinions",
            "Blind second labels of double-labelled products, by whether they agreed with the first.",
            ["agreed"],
            registry=registry,
        )
        self.labelled_accuracy = Gauge(
            "prodcat_labelled_accuracy",
            "Share of the random-strategy requests answered in the last 7 days whose top-1 "
            "suggestion the person's label agreed with, per feed: the model's accuracy measured "
            "with labels (beside the label-free estimate).",
            ["feed"],
            registry=registry,
        )
        self.labelled_accuracy_labels = Gauge(
            "prodcat_labelled_accuracy_labels",
            "Random-strategy labels of the last 7 days behind prodcat_labelled_accuracy, per feed.",
            ["feed"],
            registry=registry,
        )
        self.suspects_held = Gauge(
            "prodcat_labels_held",
            "Labels the firewall holds for review, by source.",
            ["source"],
            registry=registry,
        )

    def set_labelled_accuracy(self, accuracy: dict[str, tuple[int, int]]) -> None:
        """Per feed: (correct, labels) of the random share over the window; a feed without
        labels in the window any more has no figure (NaN) and 0 labels."""
        seen = {s.labels["feed"] for m in self.labelled_accuracy.collect() for s in m.samples}
        for feed in seen | set(accuracy):
            correct, labels = accuracy.get(feed, (0, 0))
            self.labelled_accuracy.labels(feed).set(correct / labels if labels else float("nan"))
            self.labelled_accuracy_labels.labels(feed).set(labels)

    def set_suspects(self, held: dict[str, int]) -> None:
        """Set the held labels per source; sources with none left go to 0."""
        seen = {s.labels["source"] for m in self.suspects_held.collect() for s in m.samples}
        for source in seen | set(held):
            self.suspects_held.labels(source).set(held.get(source, 0))

    def set_depth(self, depth: dict[str, int]) -> None:
        """Set the queue depth per strategy; strategies that emptied go to 0."""
        seen = {labels[0] for labels in self._depth_labels()}
        for strategy in seen | set(depth):
            self.queue_depth.labels(strategy).set(depth.get(strategy, 0))

    def _depth_labels(self) -> list[tuple[str, ...]]:
        return [
            (sample.labels["strategy"],)
            for metric in self.queue_depth.collect()
            for sample in metric.samples
        ]
