"""The normalisation agent: ``products.raw`` (bytes, any JSON) → ``products.normalized`` (Avro).

The agent is thin: :class:`NormalizeAgent` adapts ``NormalizeStage.process`` (one raw event → its
outgoing record; pure, testable without Kafka) to the stage runtime (:mod:`prodcat.streams.runtime`),
which sends a micro-batch's outputs and commits its input offsets only once the broker has
acknowledged every one. A crash therefore replays at most the unacknowledged batch (at-least-once):
every input ends as a product or a dead letter.
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
from prodcat.streams.deadletter import DeadLetters, dead_letter
from prodcat.streams.exceptions import NormalizationError
from prodcat.streams.normalize import normalize_event
from prodcat.streams.runtime import StageHandler, register_stage
from prodcat.streams.stage import (
    SOURCE_HEADER,
    Input,
    Outgoing,
    Outputs,
    Position,
    header_map,
    source_headers,
)

__all__ = [
    "SOURCE_HEADER",
    "STAGE",
    "NormalizeAgent",
    "NormalizeStage",
    "build_stage",
    "register_normalize",
]

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
        source = Position(topic, partition, offset)
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
                None,
                source,
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
            self.topics.deadletter,
            key,
            self.dead_letters.encode(record),
            out_headers,
            feed,
            kind,
            None,
            source,
        )


def build_stage(settings: Settings) -> NormalizeStage:
    registry = settings.serde.registry_url
    return NormalizeStage(
        settings.topics,
        serde_for("Product", registry, topic=settings.topics.normalized),
        serde_for("DeadLetter", registry, topic=settings.topics.deadletter),
        worker=f"{socket.gethostname()}:{settings.worker.app_id}",
    )


class NormalizeAgent(StageHandler):
    """``NormalizeStage`` over micro-batches of ``products.raw``, for the stage runtime."""

    def __init__(self, stage: NormalizeStage, topic: str) -> None:
        super().__init__(
            STAGE,
            topic,
            DeadLetters(
                stage.topics.deadletter, stage.dead_letters, stage=STAGE, worker=stage.worker
            ),
        )
        self.stage = stage

    def process(self, batch: Sequence[Input]) -> Outputs:
        now_ms = time.time_ns() // 1_000_000
        process = self.stage.process
        return Outputs.of(
            process(
                key=r.key,
                value=r.value,
                headers=r.headers,
                topic=r.topic,
                partition=r.partition,
                offset=r.offset,
                now_ms=now_ms,
            )
            for r in batch
        )


def register_normalize(app: faust.App, settings: Settings, metrics: StageMetrics) -> Any:
    """Declare normalisation on ``app``: a task of the stage runtime."""
    agent = NormalizeAgent(build_stage(settings), settings.topics.raw)
    return register_stage(app, settings, metrics, agent)
