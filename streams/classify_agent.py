"""The classify agent: ``products.normalized`` (Product) → ``products.predictions`` (Prediction).

Thin, like every agent: decode the micro-batch, call the model backend on chunks of
``ServingSettings.batch_size`` products (in a thread, so the event loop keeps heartbeating while the
model runs), turn outputs into records with ``prodcat.serving.classify`` and send. Offsets are committed
only after the predictions are acknowledged. A serving outage raises a TransientError and the batch
is retried with backoff (nothing dropped, nothing dead-lettered); a product the model rejects is
isolated by bisection and dead-lettered alone. Tombstones pass through as tombstones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import numpy as np

from prodcat.core.metrics import ModelMetrics, StageMetrics
from prodcat.core.model_store import CardStore, ClassifierCard
from prodcat.core.settings import ServingSettings, Settings
from prodcat.schemas.exceptions import RegistryError, SerdeError
from prodcat.schemas.records import Prediction, Product
from prodcat.schemas.serde import AvroSerde, serde_for
from prodcat.serving.backends import ModelBackend, ModelOutput, create_backend
from prodcat.serving.classify import EXCLUSIVE_PROBS, predictions
from prodcat.serving.committee import predict_with_committee
from prodcat.serving.exceptions import (
    ModelCardUnavailableError,
    ModelInputError,
    ModelNotFoundError,
)
from prodcat.streams.bisection import bisect
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.decoding import Decoded, decode_records
from prodcat.streams.mappings import DecisionFollower, agreement
from prodcat.streams.runtime import StageHandler, register_stage
from prodcat.streams.stage import Input, Outgoing, Outputs, position
from prodcat.training.calibration import calibrated
from prodcat.training.inputs import model_inputs
from prodcat.training.mappings import Decision, decision_of

logger = logging.getLogger(__name__)

STAGE = "classify"


class ClassifyStage:
    """Turns a micro-batch of normalised products into predictions (or dead letters)."""

    def __init__(
        self,
        *,
        topic: str,
        products: AvroSerde,
        predictions: AvroSerde,
        dead_letters: DeadLetters,
        backend: ModelBackend,
        cards: CardStore,
        serving: ServingSettings,
        metrics: ModelMetrics | None = None,
        feed_label: Callable[[str | None], str] | None = None,
    ) -> None:
        self.topic = topic
        self.products = products
        self.predictions = predictions
        self.dead_letters = dead_letters
        self.backend = backend
        self.cards = cards
        self.serving = serving
        self.metrics = metrics
        self.feed_label = feed_label or (lambda feed: feed or "unknown")
        #: Approved feed-category mappings by key (a DecisionFollower keeps it current), whose
        #: agreement with the predictions is counted; empty: none counted.
        self.mappings: dict[str, Decision] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="classify-model")

    def process(self, records: Sequence[Any], now_ms: int) -> list[Outgoing]:
        """One output per record, in order. Raises only TransientErrors (retry the batch)."""
        decoded, dead = decode_records(records, self.products, self.dead_letters, now_ms, Product)
        outputs: list[Outgoing | None] = [dead.get(i) for i in range(len(records))]
        pending: list[Decoded[Product]] = []
        for item in decoded:
            if item.value is None:  # a deleted product: delete its prediction too
                outputs[item.index] = item.output(self.topic)
            else:
                pending.append(item)
        size = self.serving.batch_size
        chunks = [pending[start : start + size] for start in range(0, len(pending), size)]
        # The model works on chunk i+1 (TensorFlow releases the GIL) while this thread turns the
        # outputs of chunk i into records.
        futures = [
            self._pool.submit(
                self._predict, model_inputs([d.value for d in chunk if d.value is not None])
            )
            for chunk in chunks
        ]
        try:
            for chunk, future in zip(chunks, futures, strict=True):
                products = [d.value for d in chunk if d.value is not None]
                try:
                    results = self._records(products, future.result(), now_ms)
                except ModelInputError:
                    results = self._classify(products, now_ms)  # isolate the bad product(s)
                for item, product, result in zip(chunk, products, results, strict=True):
                    outputs[item.index] = self._outgoing(item, product, result, now_ms)
        finally:
            for future in futures:
                future.cancel()
        return [out for out in outputs if out is not None]

    def _outgoing(
        self, item: Decoded[Product], product: Product, result: Prediction | str, now_ms: int
    ) -> Outgoing:
        if isinstance(result, str):
            return item.dead(self.dead_letters, "model_input", result, now_ms)
        try:
            encoded = self.predictions.encode(result)
        except RegistryError:
            raise
        except SerdeError as exc:
            return item.dead(self.dead_letters, "encode_error", str(exc), now_ms)
        key = product["product_id"].encode()
        # The input it answers: exactly once, the prediction joins that input's transaction;
        # at least once, a refused one dead-letters its input and a revoked one is not sent.
        return Outgoing(
            self.topic, key, encoded, item.out_headers, item.feed, None, None, position(item.record)
        )

    def _predict(self, inputs: dict[str, Any]) -> tuple[ModelOutput, list[ModelOutput]]:
        """The served version's outputs and, for query by committee, older versions'."""
        return predict_with_committee(self.backend, inputs, self.serving.committee_size)

    def _records(
        self,
        products: list[Product],
        outputs: tuple[ModelOutput, list[ModelOutput]],
        now_ms: int,
    ) -> list[Prediction | str]:
        output, members = outputs
        try:
            card = self.cards.classifier(output.name, output.version)
            committee = [(self.cards.classifier(m.name, m.version), m) for m in members]
        except ModelNotFoundError as exc:  # the served version's card: wait, do not dead-letter
            raise ModelCardUnavailableError(str(exc)) from exc
        prior = self.serving.mapping_prior and bool(self.mappings)
        within = self._mapped_nodes(products) if prior else None
        records = predictions(
            products,
            output,
            card,
            top_k=self.serving.top_k,
            rule_threshold=self.serving.rule_threshold,
            now_ms=now_ms,
            committee=committee,
            within=within,
        )
        if self.metrics is not None:
            self._observe(self.metrics, output, records)
            if card.temperature is not None:
                self._expect(self.metrics, output, products, card.temperature)
            if self.mappings:
                self._check_mappings(self.metrics, output, card, products)
        return list(records)

    def _mapped_nodes(self, products: list[Product]) -> list[tuple[str, ...]]:
        """Per product, the node its approved feed-category mapping names, or ``()``."""
        decisions = (decision_of(self.mappings, product) for product in products)
        return [decision.path if decision is not None else () for decision in decisions]

    def _check_mappings(
        self,
        metrics: ModelMetrics,
        output: ModelOutput,
        card: ClassifierCard,
        products: list[Product],
    ) -> None:
        """Count how many products of approved feed paths the model, on its own (before any
        mapping prior), predicts under the mapped node."""
        top = np.asarray(output.outputs[EXCLUSIVE_PROBS]).argmax(axis=1)
        own = [card.class_paths[i] for i in top]
        for feed, (checked, agreed) in agreement(products, own, self.mappings).items():
            label = self.feed_label(feed)
            metrics.mapping_checked.labels(output.name, label).inc(checked)
            metrics.mapping_agreed.labels(output.name, label).inc(agreed)

    def _expect(
        self,
        metrics: ModelMetrics,
        output: ModelOutput,
        products: list[Product],
        temperature: float,
    ) -> None:
        """The calibrated top-1 probabilities, summed per feed: the label-free accuracy estimate
        (``prodcat.training.calibration``)."""
        confident = calibrated(output.outputs[EXCLUSIVE_PROBS], temperature).max(axis=1)
        sums: dict[str, list[float]] = {}
        for product, p in zip(products, confident.tolist(), strict=True):
            slot = sums.setdefault(self.feed_label(product.get("feed")), [0.0, 0.0])
            slot[0] += p
            slot[1] += 1
        for feed, (expected, count) in sums.items():
            metrics.expected_correct.labels(output.name, feed).inc(expected)
            metrics.expected_predictions.labels(output.name, feed).inc(count)

    def _observe(
        self, metrics: ModelMetrics, output: ModelOutput, records: list[Prediction]
    ) -> None:
        """Which version served (and when it was trained), and the top-1 confidences."""
        exported_at = self.cards.card(output.name, output.version).get("exported_at")
        trained_at = float(exported_at) if isinstance(exported_at, int | float) else None
        metrics.served(output.name, output.version, trained_at)
        confidence = metrics.confidence.labels(output.name)
        for record in records:
            top = record["exclusive_top_k"]
            if top:
                confidence.observe(top[0]["probability"])

    def _classify(self, products: list[Product], now_ms: int) -> list[Prediction | str]:
        """Predictions for ``products``; a product the model rejects gets its error message."""

        def attempt(part: Sequence[Product]) -> list[Prediction | str]:
            return self._records(list(part), self._predict(model_inputs(list(part))), now_ms)

        def rejected(product: Product, exc: ModelInputError) -> list[Prediction | str]:
            return [str(exc)]

        return bisect(
            products, attempt, failure=ModelInputError, isolate=rejected, combine=list.__add__
        )


def build_stage(
    settings: Settings,
    backend: ModelBackend | None = None,
    metrics: ModelMetrics | None = None,
    feed_label: Callable[[str | None], str] | None = None,
) -> ClassifyStage:
    """The stage; with ``metrics``, model calls are timed and predictions observed."""
    registry, topics, serving = settings.serde.registry_url, settings.topics, settings.serving
    observe = metrics.call if metrics is not None else None
    return ClassifyStage(
        topic=topics.predictions,
        products=serde_for("Product", registry, topic=topics.normalized),
        predictions=serde_for("Prediction", registry, topic=topics.predictions),
        dead_letters=DeadLetters.for_stage(settings, STAGE),
        backend=backend or create_backend(serving, serving.classifier, observe=observe),
        cards=CardStore(serving.model_base),
        serving=serving,
        metrics=metrics,
        feed_label=feed_label,
    )


class ClassifyAgent(StageHandler):
    """``ClassifyStage`` for the stage runtime; the model runs in a worker thread. With a
    ``follower``, approved feed-category mappings are followed into the stage."""

    def __init__(
        self, stage: ClassifyStage, topic: str, follower: DecisionFollower | None = None
    ) -> None:
        super().__init__(STAGE, topic, stage.dead_letters)
        self.stage = stage
        if follower is not None:
            self.followers.append(follower)

    async def process(self, batch: Sequence[Input]) -> Outputs:
        now_ms = time.time_ns() // 1_000_000
        return Outputs.of(await asyncio.to_thread(self.stage.process, batch, now_ms))


def register_classify(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    """Declare classification on ``app`` (a task of the stage runtime)."""
    stage = build_stage(settings, metrics=metrics.models(), feed_label=metrics.feed_label)
    follower = DecisionFollower(settings, stage.mappings)
    agent = ClassifyAgent(stage, settings.topics.normalized, follower)
    return register_stage(app, settings, metrics, agent)
