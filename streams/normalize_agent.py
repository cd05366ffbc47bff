"""The normalisation agent: ``products.raw`` (bytes, any JSON) → ``products.normalized`` (Avro).

The agent is thin: it takes micro-batches of raw events, turns each into an outgoing record with
``NormalizeStage.process`` (pure, testable without Kafka), sends them all, and waits until the broker
has acknowledged every output before the batch's input offsets are acked. A crash therefore replays
at most the unacknowledged batch (at-least-once): every input ends as a product or a dead letter.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import faust

from prodcat.core.metrics import StageMetrics
from prodcat.core.settings import Settings, TopicNames
from prodcat.schemas.exceptions import RegistryError, SerdeError
from prodcat.schemas.serde import AvroSerde, serde_for
from prodcat.streams.deadletter import dead_letter
from prodcat.streams.exceptions import NormalizationError
from prodcat.streams.normalize import normalize_event
from prodcat.streams.stage import (
    SOURCE_HEADER,
    Outgoing,
    header_map,
    register_stage,
    source_headers,
)

__all__ = ["SOURCE_HEADER", "STAGE", "NormalizeStage", "build_stage", "register_normalize"]

logger = logging.getLogger(__name__)

STAGE = "normalize"


class NormalizeStage:
    """Turns one raw input message into its outgoing record.

    Never raises because of the input; only an unreachable schema registry (RegistryError) escapes.
    """

    def __init__(
        self,
        topics: TopicNames,
        products: AvroSerde,
        dead_letters: AvroSerde,
        worker: str | None = None,
    ) -> None:
        self.topics = topics
        self.products = products
        self.dead_letters = dead_letters
        self.worker = worker

    def process(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
        topic: str,
        partition: int,
        offset: int,
        now_ms: int,
    ) -> Outgoing:
        hdrs = header_map(headers)
        out_headers, feed = source_headers(hdrs, topic, partition, offset)
        try:
            product = normalize_event(value or b"", feed=feed, key=key, seen_at_ms=now_ms)
            encoded = self.products.encode(product)
        except NormalizationError as exc:
            kind, message = exc.kind, str(exc)
        except RegistryError:
            raise  # infrastructure, not input: the batch is retried, nothing is dead-lettered
        except SerdeError as exc:
            kind, message = "encode_error", str(exc)
            logger.error(
                "normalised record failed its schema at %s/%d/%d: %s", topic, partition, offset, exc
            )
        except Exception as exc:  # a bug must not stop the stream: dead-letter and log it
            kind, message = "internal_error", f"{type(exc).__name__}: {exc}"
            logger.exception(
                "normalisation failed unexpectedly at %s/%d/%d", topic, partition, offset
            )
        else:
            return Outgoing(
                self.topics.normalized,
                product["product_id"].encode(),
                encoded,
                out_headers,
                feed,
                None,
            )
        record = dead_letter(
            stage=STAGE,
            error_kind=kind,
            message=message,
            key=key,
            value=value,
            headers=hdrs,
            feed=feed,
            topic=topic,
            partition=partition,
            offset=offset,
            worker=self.worker,
            now_ms=now_ms,
        )
        return Outgoing(
            self.topics.deadletter, key, self.dead_letters.encode(record), out_headers, feed, kind
        )


def build_stage(settings: Settings) -> NormalizeStage:
    registry = settings.serde.registry_url
    return NormalizeStage(
        settings.topics,
        serde_for("Product", registry, topic=settings.topics.normalized),
        serde_for("DeadLetter", registry, topic=settings.topics.deadletter),
        worker=f"{socket.gethostname()}:{settings.worker.app_id}",
    )


def register_normalize(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    """Declare normalisation on ``app``: a batch-consumer task, or a Faust agent (settings)."""
    stage = build_stage(settings)

    def handle(records: Sequence[Any]) -> Sequence[Outgoing]:
        """aiokafka ConsumerRecords or Faust Messages (same attribute names) → outputs."""
        now_ms = time.time_ns() // 1_000_000
        return [
            stage.process(
                key=r.key,
                value=r.value,
                headers=r.headers,
                topic=r.topic,
                partition=r.partition,
                offset=r.offset,
                now_ms=now_ms,
            )
            for r in records
        ]

    return register_stage(
        app, settings, metrics, stage=STAGE, topic=settings.topics.raw, handle=handle
    )
