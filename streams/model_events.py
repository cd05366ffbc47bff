"""``ModelEvent`` records (topic ``models.events``, key = model name): building and publishing.

The training job publishes ``trained``, ``evaluated`` and ``promoted`` or ``rejected``; the
retrain trigger publishes ``rejected`` for a job that failed or timed out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException, Producer

from prodcat.core.kafka_config import producer_config
from prodcat.core.settings import Settings
from prodcat.schemas.serde import serde_for
from prodcat.streams.exceptions import StreamsError

EVENTS = ("trained", "evaluated", "promoted", "rejected")


def model_event(
    event: str,
    *,
    model_name: str,
    version: int,
    metrics: Mapping[str, float] | None = None,
    baseline_version: int | None = None,
    reason: str | None = None,
    artifact_uri: str | None = None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """A ``ModelEvent`` record (schemas/model_event.avsc)."""
    if event not in EVENTS:
        raise ValueError(f"unknown model event {event!r}")
    return {
        "model_name": model_name,
        "model_version": version,
        "event": event,
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "baseline_version": baseline_version,
        "reason": reason,
        "artifact_uri": artifact_uri,
        "occurred_at": now_ms if now_ms is not None else time.time_ns() // 1_000_000,
    }


class EventPublisher:
    """Publishes model events synchronously (each one acknowledged before the job goes on)."""

    def __init__(self, settings: Settings, model_name: str) -> None:
        self.topic = settings.topics.model_events
        self.model_name = model_name
        self.serde = serde_for("ModelEvent", settings.serde.registry_url, topic=self.topic)
        self.producer = Producer(producer_config(settings.kafka, **{"linger.ms": 0}))

    def __call__(self, event: str, *, version: int, **fields: Any) -> None:
        record = model_event(event, model_name=self.model_name, version=version, **fields)
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        try:
            self.producer.produce(
                self.topic,
                key=self.model_name.encode(),
                value=self.serde.encode(record),
                on_delivery=delivered,
            )
            left = self.producer.flush(30)
        except KafkaException as exc:
            raise StreamsError(f"cannot publish model event {event}: {exc}") from exc
        if left or errors:
            raise StreamsError(f"model event {event} not acknowledged: {errors or 'timeout'}")
