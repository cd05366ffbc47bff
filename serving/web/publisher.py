"""Writes of the web UI (labels, their tombstones, similarity judgements), acknowledged.

Each write waits for the broker's acknowledgement before the request answers, so what the
annotator sees as saved is durable; a write that is not acknowledged in time is a
:class:`~prodcat.serving.web.exceptions.PublishError` (503: nothing was recorded, try again).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import KafkaException, Producer

from prodcat.core.kafka_config import producer_config
from prodcat.core.settings import KafkaSettings
from prodcat.serving.web.exceptions import PublishError


class Publisher:
    """A shared idempotent producer; :meth:`send` is thread-safe and blocks until acknowledged."""

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float = 15.0) -> None:
        self._producer = Producer(producer_config(kafka, **{"linger.ms": 0}))
        self.timeout_s = timeout_s

    def send(self, topic: str, key: bytes, value: bytes | None) -> None:
        done = threading.Event()
        outcome: list[Any] = []

        def delivered(err: Any, _msg: Any) -> None:
            outcome.append(err)
            done.set()

        try:
            self._producer.produce(topic, key=key, value=value, on_delivery=delivered)
        except (BufferError, KafkaException) as exc:
            raise PublishError(f"cannot write to {topic}: {exc}") from exc
        deadline = time.monotonic() + self.timeout_s
        while not done.is_set():
            if time.monotonic() > deadline:
                raise PublishError(f"{topic}: no acknowledgement within {self.timeout_s:g} s")
            self._producer.poll(0.05)
        if outcome[0] is not None:
            raise PublishError(f"{topic}: {outcome[0]}")

    def close(self) -> None:
        """Deliver what is queued, then shut the producer down (it stops reconnecting now, not
        whenever the object is garbage-collected)."""
        self._producer.flush(self.timeout_s)
        self._producer.close()
