"""The sampler agent: ``products.predictions`` → ``annotation.requests`` (active learning).

Thin like every agent: decode predictions (or dead-letter them with the reason), gather them in a
selection window, and when the window closes let ``prodcat.training.sampler.select_requests`` pick the
products to label; send the ``AnnotationRequest``s (key product_id), then commit.

The dedupe state lives in Kafka: on start the agent reads the compacted ``labels`` topic and
``annotation.requests`` from the beginning (:class:`StateFollower`) and only then joins its
consumer group and reports ready; afterwards it keeps following both topics.

It runs on the stage runtime (:mod:`prodcat.streams.runtime`) with deferred inputs: predictions
taken into the open window are held, so their offsets are committed only when the window's
requests are acknowledged (or when the window holds nothing), and a crash replays the open window;
requests already sent are pending in the rebuilt state, so nothing is requested twice. The window
closes on the runtime's tick, on time even when no prediction arrives.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence, Set
from typing import TYPE_CHECKING, Any

import faust
import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from confluent_kafka.admin import AdminClient

from prodcat.core.kafka_config import aiokafka_config, librdkafka_config
from prodcat.core.metrics import SamplerMetrics, StageMetrics
from prodcat.core.settings import KafkaSettings, SamplerSettings, Settings
from prodcat.schemas.exceptions import RegistryError, SerdeError
from prodcat.schemas.records import Prediction
from prodcat.schemas.serde import AvroSerde, serde_for
from prodcat.streams.deadletter import DeadLetters
from prodcat.streams.decoding import decode_records
from prodcat.streams.exceptions import TopicError
from prodcat.streams.runtime import StageHandler, register_stage
from prodcat.streams.stage import Input, Outgoing, Outputs, Position, position
from prodcat.training.sampler import (
    CandidateWindow,
    Similarity,
    invalid_reason,
    mean_neighbour_similarity,
    select_requests,
)
from prodcat.training.sampler_state import Exclusions, TokenBucket

if TYPE_CHECKING:  # Milvus only for the density strategy, imported lazily
    from prodcat.serving.vector_store import OperationObserver

logger = logging.getLogger(__name__)

STAGE = "sample"
#: First wait after the state follower failed (doubled per failure, at most 30 s).
FOLLOW_RETRY_S = 0.5


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SamplerStage:
    """Predictions in, annotation requests out; no Kafka here (tests drive it directly)."""

    def __init__(
        self,
        *,
        topic: str,
        predictions: AvroSerde,
        requests: AvroSerde,
        dead_letters: DeadLetters,
        settings: SamplerSettings,
        metrics: SamplerMetrics,
        similarity: Similarity | None = None,
        store: Any | None = None,
        rng: np.random.Generator | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = topic
        self.predictions = predictions
        self.requests = requests
        self.dead_letters = dead_letters
        self.settings = settings
        self.metrics = metrics
        self.similarity = similarity
        self.store = store  # the vector store behind ``similarity``, closed with the stage
        self.rng = rng or np.random.default_rng()
        self.clock = clock
        self.exclusions = Exclusions(
            int(settings.pending_ttl_s * 1000), settings.labelled_objectives
        )
        self.window = CandidateWindow(settings.window_s, settings.max_candidates)
        self.bucket = TokenBucket(settings.max_per_minute, clock())

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def consume(self, records: Sequence[Any], now_ms: int) -> list[Outgoing]:
        """Take a micro-batch of predictions into the window; one Outgoing per record (dead
        letters are sent, the rest only counted)."""
        decoded, dead = decode_records(
            records, self.predictions, self.dead_letters, now_ms, Prediction
        )
        outputs: list[Outgoing | None] = [dead.get(i) for i in range(len(records))]
        for item in decoded:
            counted = functools.partial(
                Outgoing,
                None,
                item.record.key,
                None,
                item.out_headers,
                item.feed,
                None,
                source=position(item.record),
            )
            prediction = item.value
            if prediction is None:  # the product was deleted: so is its candidate
                if item.record.key:
                    self.window.remove(item.record.key.decode("utf-8", "replace"))
                outputs[item.index] = counted(skipped="deleted")
                continue
            problem = invalid_reason(prediction)
            if problem is not None:
                outputs[item.index] = item.dead(
                    self.dead_letters, "invalid_prediction", problem, now_ms
                )
                continue
            reason = self.exclusions.reason(prediction["product_id"], now_ms)
            if reason is not None:
                self.metrics.excluded.labels(reason).inc()
            else:
                self.window.add(prediction, self.clock())
                self.metrics.candidates.inc()
            outputs[item.index] = counted()
        return [out for out in outputs if out is not None]

    def close_window(self, now_ms: int) -> list[Outgoing]:
        """Select the window's requests (rate-limited) and empty it. Raises TransientErrors
        (vector store down) before changing any state, so the caller can retry."""
        now_s = self.clock()
        allowance = self.bucket.available(now_s)
        candidates = self.window.candidates()
        selection = select_requests(
            candidates,
            self.settings,
            self.exclusions,
            allowance=allowance,
            now_ms=now_ms,
            similarity=self.similarity,
            rng=self.rng,
        )
        self.window.drain()
        self.bucket.take(len(selection.requests), now_s)
        for reason, count in selection.excluded.items():
            self.metrics.excluded.labels(reason).inc(count)
        for reason, count in (selection.fallbacks or {}).items():
            self.metrics.fallbacks.labels(reason).inc(count)
        self.metrics.rate_limited.inc(selection.rate_limited)
        outputs = []
        for request in selection.requests:
            self.metrics.requests.labels(request["strategy"]).inc()
            key = request["product_id"].encode()
            outputs.append(Outgoing(self.topic, key, self.requests.encode(request), [], None, None))
        logger.info(
            "%s: %d candidates → %d requests (excluded %s, rate-limited %d)",
            STAGE,
            len(candidates),
            len(outputs),
            selection.excluded,
            selection.rate_limited,
        )
        return outputs


class StateFollower:
    """Reads ``labels`` and ``annotation.requests`` from the beginning into the stage's exclusions,
    then keeps following them (no consumer group: every sampler reads everything)."""

    def __init__(self, settings: Settings, stage: SamplerStage) -> None:
        topics = settings.topics
        registry = settings.serde.registry_url
        self.stage = stage
        self.kafka = settings.kafka
        self.labels_topic = topics.labels
        self.serdes = {
            topics.labels: serde_for("Label", registry, topic=topics.labels),
            topics.annotation_requests: serde_for(
                "AnnotationRequest", registry, topic=topics.annotation_requests
            ),
        }
        self._pending: deque[tuple[str, Any]] = deque()
        self.consumer = AIOKafkaConsumer(
            **aiokafka_config(settings.kafka),
            group_id=None,
            client_id=f"{settings.worker.app_id}-{STAGE}-state",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # no prediction of an aborted transaction
        )

    async def catch_up(self) -> None:
        """Assign every partition of both topics from offset 0 and read up to their current end."""
        await self.consumer.start()
        counts = await asyncio.to_thread(_partition_counts, self.kafka, list(self.serdes))
        partitions = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_beginning(*partitions)
        ends = await self.consumer.end_offsets(partitions)
        started, read = time.monotonic(), 0
        while True:
            positions = {tp: await self.consumer.position(tp) for tp in partitions}
            if all(positions[tp] >= end for tp, end in ends.items()):
                break
            read += await self._poll()
        logger.info(
            "%s: state rebuilt from %d records in %.1fs (%d labelled, %d pending)",
            STAGE,
            read,
            time.monotonic() - started,
            self.stage.exclusions.labelled_count,
            self.stage.exclusions.pending_count(_now_ms()),
        )

    async def follow(self) -> None:
        """Keep following; an outage of the schema registry or the broker is waited out (the
        records not yet applied are kept and applied first), never the end of the follower."""
        delay = FOLLOW_RETRY_S
        while True:
            try:
                await self._poll()
                delay = FOLLOW_RETRY_S
            except asyncio.CancelledError:
                raise
            except (RegistryError, KafkaError) as exc:
                logger.warning(
                    "%s: following the state failed (%s: %s); %d records wait; retrying in %.1fs",
                    STAGE,
                    type(exc).__name__,
                    exc,
                    len(self._pending),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _poll(self) -> int:
        """Apply the records left by a failed try, then the next fetched ones, in order."""
        count = self._apply_pending()
        fetched = await self.consumer.getmany(timeout_ms=500, max_records=10_000)
        for tp, messages in fetched.items():
            self._pending.extend((tp.topic, message) for message in messages)
        return count + self._apply_pending()

    def _apply_pending(self) -> int:
        count = 0
        while self._pending:
            topic, message = self._pending[0]
            self._apply(topic, self.serdes[topic], message)  # may raise: the record stays
            self._pending.popleft()
            count += 1
        return count

    def _apply(self, topic: str, serde: AvroSerde, message: Any) -> None:
        metrics, exclusions = self.stage.metrics, self.stage.exclusions
        try:
            value = None if message.value is None else serde.decode(message.value)
        except RegistryError:
            raise
        except SerdeError as exc:
            metrics.state_records.labels(topic, "bad").inc()
            logger.warning(
                "%s: ignoring undecodable %s/%d/%d: %s",
                STAGE,
                topic,
                message.partition,
                message.offset,
                exc,
            )
            return
        if topic == self.labels_topic:
            exclusions.apply_label(message.key, value)
        else:
            exclusions.apply_request(value)
        metrics.state_records.labels(topic, "ok").inc()

    async def stop(self) -> None:
        await self.consumer.stop()


def _partition_counts(kafka: KafkaSettings, topics: list[str]) -> dict[str, int]:
    metadata = AdminClient(librdkafka_config(kafka)).list_topics(timeout=30)
    missing = [t for t in topics if t not in metadata.topics]
    if missing:
        raise TopicError(f"{STAGE}: topics {missing} do not exist (run `prodcat topics create`)")
    return {t: len(metadata.topics[t].partitions) for t in topics}


class SamplerAgent(StageHandler):
    """``SamplerStage`` for the stage runtime: window inputs held, windows closed on ticks."""

    def __init__(self, settings: Settings, stage: SamplerStage, metrics: StageMetrics) -> None:
        super().__init__(STAGE, settings.topics.predictions, stage.dead_letters)
        self.settings = settings
        self.stage = stage
        self.metrics = metrics
        self.follower: StateFollower | None = None
        self._following: asyncio.Task[None] | None = None
        self._held: list[Position] = []  # inputs consumed since the window last emptied

    async def start(self) -> None:
        """Rebuild the dedupe state before joining the group, then keep following it."""
        self.follower = StateFollower(self.settings, self.stage)
        await self.follower.catch_up()
        self._following = asyncio.create_task(self.follower.follow(), name="sampler-state")

    async def stop(self) -> None:
        if self._following is not None:
            self._following.cancel()
            await asyncio.gather(self._following, return_exceptions=True)
        if self.follower is not None:
            await self.follower.stop()
        self.stage.close()

    def process(self, batch: Sequence[Input]) -> Outputs:
        outgoing = self.stage.consume(batch, _now_ms())
        taken = [
            out.source
            for out in outgoing
            if out.source is not None and out.error_kind is None and out.skipped is None
        ]
        if len(self.stage.window) == 0:  # nothing waits for a window: all of it may commit
            released, self._held = self._held, []
            return Outputs.of(outgoing, released=released)
        self._held.extend(taken)
        return Outputs.of(outgoing, held=taken)

    async def on_tick(self, now: float) -> Outputs | None:
        stage, metrics = self.stage, self.metrics
        if not stage.window.due(stage.clock()):
            return None
        started = time.perf_counter()
        requests = await asyncio.to_thread(stage.close_window, _now_ms())
        metrics.batch_seconds.observe(time.perf_counter() - started)
        metrics.batch_size.observe(len(requests))
        stage.exclusions.expire(_now_ms())
        stage.metrics.labelled.set(stage.exclusions.labelled_count)
        stage.metrics.pending.set(stage.exclusions.pending_count(_now_ms()))
        released, self._held = self._held, []
        return Outputs.of(requests, released=released)

    def on_revoked(self, partitions: Set[TopicPartition]) -> None:
        self._held = [
            p for p in self._held if TopicPartition(p.topic, p.partition) not in partitions
        ]

    def observe(
        self, metrics: StageMetrics, outputs: Outputs, seconds: float, oldest_ts: float | None
    ) -> None:
        """Inputs as they are consumed (in, dead letters, skips); requests as outputs."""
        for out in outputs:
            feed = metrics.feed_label(out.feed)
            if out.topic == self.stage.topic:  # an annotation request of a closed window
                metrics.events_out.labels(STAGE, feed).inc()
                continue
            metrics.events_in.labels(metrics.stage, feed).inc()
            if out.error_kind is not None:
                metrics.dead_letters.labels(metrics.stage, feed, out.error_kind).inc()
            elif out.skipped is not None:
                metrics.skipped.labels(metrics.stage, out.skipped).inc()


def _similarity(store: Any, neighbours: int) -> Similarity:
    def similarity(product_id: str) -> float | None:
        hits = store.search_by_id(product_id, neighbours + 1)
        return mean_neighbour_similarity(hits, product_id, neighbours)

    return similarity


def build_stage(
    settings: Settings,
    metrics: SamplerMetrics,
    store: Any | None = None,
    observe: OperationObserver | None = None,
) -> SamplerStage:
    """The stage; with the density strategy, a vector store (``store``, or one from settings,
    its operations timed by ``observe``, e.g. ``MilvusMetrics.operation``)."""
    registry, topics, sampler = settings.serde.registry_url, settings.topics, settings.sampler
    similarity = None
    if sampler.strategy == "density":
        if store is None:
            from prodcat.serving.vector_store import VectorStore  # Milvus only for this strategy

            store = VectorStore(settings.milvus, observe=observe)
            store.ensure_collection()
        similarity = _similarity(store, sampler.density_neighbours)
    return SamplerStage(
        topic=topics.annotation_requests,
        predictions=serde_for("Prediction", registry, topic=topics.predictions),
        requests=serde_for("AnnotationRequest", registry, topic=topics.annotation_requests),
        dead_letters=DeadLetters.for_stage(settings, STAGE),
        settings=sampler,
        metrics=metrics,
        similarity=similarity,
        store=store,
    )


def register_sampler(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    """Declare the sampler on ``app``: a task of the stage runtime (see the module doc)."""
    stage = build_stage(
        settings, SamplerMetrics(metrics.registry), observe=metrics.milvus().operation
    )
    return register_stage(app, settings, metrics, SamplerAgent(settings, stage, metrics))
