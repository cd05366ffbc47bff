"""One record written to Kafka and acknowledged, for commands that publish a single artifact
(a feed profile, a taxonomy version): an error says which topic and broker, and what to do."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException, Producer

from prodcat.core.kafka_config import producer_config
from prodcat.core.settings import KafkaSettings
from prodcat.streams.exceptions import StreamsError

__all__ = ["produce_acknowledged"]


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
    producer = Producer(producer_config(kafka, **config))
    errors: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    try:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
        remaining = producer.flush(timeout_s)
    except KafkaException as exc:
        raise StreamsError(f"cannot publish {what}: {exc}") from exc
    if remaining or errors:
        detail = errors[0] if errors else f"not acknowledged within {timeout_s:.0f}s"
        raise StreamsError(
            f"cannot publish {what} to {topic} on {kafka.bootstrap_servers}: {detail} (is the "
            "broker up? `prodcat dev kafka start`, then `prodcat topics create`)"
        )
