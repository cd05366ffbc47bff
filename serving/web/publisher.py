"""Writes of the web UI (labels, their tombstones, similarity judgements), acknowledged.

Each write waits for the broker's acknowledgement before the request answers, so what the
annotator sees as saved is durable; a write that is not acknowledged in time is a
:class:`~prodcat.serving.web.exceptions.PublishError` (503: nothing was recorded, try again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
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

    def send_all(self, topic: str, records: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Send every (key, value) and wait until the broker acknowledged all of them (a bulk
        write: one round trip per batch, not per record). Raises :class:`PublishError` naming how
        many were not acknowledged; a caller may send them all again (keys are idempotent)."""
        errors: list[Any] = []
        pending = [0]

        def delivered(err: Any, _msg: Any) -> None:
            pending[0] -= 1
            if err is not None:
                errors.append(err)

        deadline = time.monotonic() + self.timeout_s
        for key, value in records:
            while True:
                try:
                    self._producer.produce(topic, key=key, value=value, on_delivery=delivered)
                    pending[0] += 1
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    if time.monotonic() > deadline:
                        raise PublishError(f"cannot write to {topic}: queue full") from None
                    self._producer.poll(0.05)
                except KafkaException as exc:
                    raise PublishError(f"cannot write to {topic}: {exc}") from exc
        while pending[0] > 0:
            if time.monotonic() > deadline + self.timeout_s:
                raise PublishError(
                    f"{topic}: {pending[0]} of {len(records)} records not acknowledged"
                )
            self._producer.poll(0.05)
        if errors:
            raise PublishError(
                f"{topic}: {len(errors)} of {len(records)} records refused: {errors[0]}"
            )

    def close(self) -> None:
        """Deliver what is queued, then shut the producer down (it stops reconnecting now, not
        whenever the object is garbage-collected)."""
        self._producer.flush(self.timeout_s)
        self._producer.close()
