"""Follows the UI's topics from the beginning into the :class:`~prodcat.serving.web.view.TopicView`.

Like the sampler's state follower, but in a thread of the web process with a librdkafka consumer
without a consumer group: every web process reads everything (``products.normalized``,
``annotation.requests``, ``labels``, ``similarity.judgements``, ``products.predictions``,
``feeds.mappings``, ``taxonomy.events``, ``labels.suspect``, ``labels.second``,
``ui.sessions.revoked``). It reports ready
once it has read up to the end offsets it found at start; pages say "catching up" until then.
Records it cannot decode are counted and logged with topic/partition/offset and skipped: the UI
only reads these topics, their producers own dead-lettering.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from prodcat.core.kafka_config import librdkafka_config, watermarks
from prodcat.core.settings import Settings
from prodcat.schemas.exceptions import RegistryError, SerdeError
from prodcat.schemas.serde import AvroSerde, serde_for
from prodcat.serving.web.view import TopicView

logger = logging.getLogger(__name__)


class TopicFollower:
    """A daemon thread applying every record of the UI's topics to ``view``."""

    def __init__(
        self, settings: Settings, view: TopicView, *, only: Collection[str] | None = None
    ) -> None:
        """``only``: follow these topics alone (the API follows ``products.predictions`` for the
        similarity search's same-kind term)."""
        topics, registry = settings.topics, settings.serde.registry_url
        self.kafka = settings.kafka
        self.view = view
        # topic → (its Avro serde, None for JSON values, applied raw; what to do with a record)
        self._apply: dict[
            str, tuple[AvroSerde | None, Callable[[Any, Any, bytes | None], None]]
        ] = {
            topics.normalized: (
                serde_for("Product", registry, topic=topics.normalized),
                lambda key, record, _raw: view.apply_product(key, record),
            ),
            topics.annotation_requests: (
                serde_for("AnnotationRequest", registry, topic=topics.annotation_requests),
                lambda _key, record, _raw: view.apply_request(record),
            ),
            topics.labels: (
                serde_for("Label", registry, topic=topics.labels),
                lambda key, record, raw: (
                    view.apply_label(key, record, raw) if key is not None else None
                ),
            ),
            topics.judgements: (
                serde_for("SimilarityJudgement", registry, topic=topics.judgements),
                lambda key, record, _raw: (
                    view.apply_judgement(key, record) if key is not None else None
                ),
            ),
            topics.predictions: (
                serde_for("Prediction", registry, topic=topics.predictions),
                lambda key, record, _raw: (
                    view.apply_prediction(key, record) if key is not None else None
                ),
            ),
            topics.mappings: (
                None,
                lambda key, _record, raw: view.apply_mapping(key, raw) if key is not None else None,
            ),
            topics.taxonomy_events: (
                None,
                lambda key, _record, raw: (
                    view.apply_taxonomy_event(key, raw) if key is not None else None
                ),
            ),
            topics.suspects: (
                None,
                lambda key, _record, raw: view.apply_suspect(key, raw) if key is not None else None,
            ),
            topics.second_opinions: (
                None,
                lambda key, _record, raw: (
                    view.apply_second_opinion(key, raw) if key is not None else None
                ),
            ),
            topics.revoked_sessions: (
                None,
                lambda key, _record, raw: (
                    view.apply_revoked_session(key, raw) if key is not None else None
                ),
            ),
        }
        if only is not None:
            self._apply = {topic: how for topic, how in self._apply.items() if topic in only}
        self.counts: Counter[tuple[str, str]] = Counter()
        self.ready = threading.Event()
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ui-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wait_ready(self, timeout_s: float) -> bool:
        return self.ready.wait(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except (KafkaException, RegistryError) as exc:
                self.error = str(exc)
                logger.warning("ui follower: %s; restarting in 5 s", exc)
                self._stop.wait(5)
            except Exception as exc:  # e.g. sqlite3.Error: the view must not go stale silently
                self.error = f"{type(exc).__name__}: {exc}"
                logger.exception("ui follower failed; restarting in 5 s")
                self._stop.wait(5)

    def _follow(self) -> None:
        consumer = Consumer(
            librdkafka_config(
                self.kafka,
                **{
                    "group.id": f"prodcat-ui-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": False,
                    "auto.offset.reset": "earliest",
                },
            )
        )
        try:
            partitions = self._partitions(consumer)
            ends = {}
            for tp in partitions:
                _low, high = watermarks(consumer, tp)
                ends[(tp.topic, tp.partition)] = high
            consumer.assign(partitions)
            # Reading resumes where the view's checkpoint says (a kept view), else from the
            # beginning; a restart after an error may read again what the view holds: every
            # apply is idempotent (latest value per key), so that is harmless.
            starts = {(tp.topic, tp.partition): tp.offset for tp in partitions}
            pending = {tp for tp, end in ends.items() if end > max(starts[tp], 0)}
            started, read = time.monotonic(), 0
            if not pending:
                self._caught_up(started, read)
            while not self._stop.is_set():
                messages = consumer.consume(5000, timeout=0.5)
                with self.view.batch():
                    for message in messages:
                        read += self._one(message, pending, ends)
                    if messages:
                        self.view.save_offsets(_next_offsets(messages))
                if pending:
                    # Positions, not only offsets read: the last records of a compacted
                    # partition may be gone, and nothing may be left to read at its end.
                    for tp in consumer.position([TopicPartition(t, p) for t, p in pending]):
                        if tp.offset >= ends[(tp.topic, tp.partition)]:
                            pending.discard((tp.topic, tp.partition))
                    continue
                if not self.ready.is_set():
                    self._caught_up(started, read)
        finally:
            consumer.close()

    def _caught_up(self, started: float, read: int) -> None:
        self.error = None
        self.ready.set()
        logger.info(
            "ui follower: caught up with %d records in %.1f s", read, time.monotonic() - started
        )

    def _partitions(self, consumer: Consumer) -> list[TopicPartition]:
        metadata = consumer.list_topics(timeout=30)
        missing = [t for t in self._apply if t not in metadata.topics]
        if missing:
            raise KafkaException(f"topics {missing} do not exist (run `prodcat topics create`)")
        saved = self.view.offsets()
        return [
            TopicPartition(topic, partition, saved.get((topic, partition), OFFSET_BEGINNING))
            for topic in self._apply
            for partition in sorted(metadata.topics[topic].partitions)
        ]

    def _one(self, message: Any, pending: set[tuple[str, int]], ends: dict[Any, int]) -> int:
        err = message.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return 0
            raise KafkaException(err)
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if (topic, partition) in pending and offset + 1 >= ends[(topic, partition)]:
            pending.discard((topic, partition))
        serde, apply = self._apply[topic]
        raw = message.value()
        try:
            record = None if raw is None or serde is None else serde.decode(raw)
        except RegistryError:
            raise
        except SerdeError as exc:
            self.counts[(topic, "bad")] += 1
            logger.warning(
                "ui follower: skipping undecodable %s/%d/%d: %s", topic, partition, offset, exc
            )
            return 1
        try:
            apply(message.key(), record, raw)
        except (KeyError, TypeError, ValueError) as exc:  # a record of an unexpected shape
            self.counts[(topic, "bad")] += 1
            logger.warning("ui follower: skipping %s/%d/%d: %r", topic, partition, offset, exc)
            return 1
        self.counts[(topic, "ok")] += 1
        return 1


def _next_offsets(messages: list[Any]) -> dict[tuple[str, int], int]:
    """The next offset to read of each partition in ``messages``."""
    out: dict[tuple[str, int], int] = {}
    for message in messages:
        if message.error() is None:
            key = (message.topic(), message.partition())
            out[key] = max(out.get(key, 0), message.offset() + 1)
    return out
