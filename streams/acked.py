"""Records written to Kafka by commands, every one acknowledged by the broker or an error that says
which topic and broker, and what to do: :class:`AckedProducer` for many records (label imports,
dead-letter replays), :func:`produce_acknowledged` for one artifact (a feed profile, a taxonomy
version)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException, Producer

from prodcat.core.kafka_config import producer_config
from prodcat.core.settings import KafkaSettings
from prodcat.streams.exceptions import StreamsError

__all__ = ["AckedProducer", "produce_acknowledged"]

Headers = list[tuple[str, str | bytes | None]]


class AckedProducer:
    """Sends records (waiting for room when the client's queue is full) and, in :meth:`flush`,
    waits for every acknowledgement; ``what`` names the records in errors (``"labels"``)."""

    def __init__(self, kafka: KafkaSettings, *, what: str, **config: Any) -> None:
        self.kafka = kafka
        self.what = what
        self.producer = Producer(producer_config(kafka, **config))
        self.errors: list[str] = []
        self.topics: set[str] = set()

    def _delivered(self, err: object, _msg: object) -> None:
        if err is not None:
            self.errors.append(str(err))

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> None:
        """Queue one record (``value`` None: a tombstone)."""
        self.topics.add(topic)
        while True:
            try:
                self.producer.produce(
                    topic, value, key, headers=headers, on_delivery=self._delivered
                )
                break
            except BufferError:
                self.producer.poll(0.1)
            except KafkaException as exc:
                raise StreamsError(f"cannot publish {self.what} to {topic}: {exc}") from exc
        self.producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Return once the broker acknowledged every record sent; raise otherwise."""
        try:
            remaining = self.producer.flush(timeout_s)
        except KafkaException as exc:
            raise StreamsError(f"cannot publish {self.what}: {exc}") from exc
        if remaining or self.errors:
            detail = self.errors[0] if self.errors else f"not acknowledged within {timeout_s:.0f}s"
            topics = ", ".join(sorted(self.topics))
            raise StreamsError(
                f"cannot publish {self.what} to {topics} on {self.kafka.bootstrap_servers}: "
                f"{detail} (is the broker up? `prodcat dev kafka start`, then "
                "`prodcat topics create`)"
            )


def produce_acknowledged(
    kafka: KafkaSettings,
    topic: str,
    key: bytes,
    value: bytes,
    *,
    what: str,
    timeout_s: float = 30.0,
    **config: Any,
) -> None:
    """Write ``key``/``value`` to ``topic`` and wait for the broker's acknowledgement; ``what``
    names the record in errors (``"the profile of shop"``); ``config`` adds producer settings."""
    producer = AckedProducer(kafka, what=what, **config)
    producer.send(topic, key, value)
    producer.flush(timeout_s)
