"""Kafka client configuration shared by the admin, replay and read-back clients (librdkafka)."""

from __future__ import annotations

import ssl
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from prodcat.core.settings import KafkaSettings


def uses_tls(kafka: KafkaSettings) -> bool:
    return kafka.security_protocol in ("SSL", "SASL_SSL")


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """A verifying TLS context: the configured CA bundle, else the system's trust store."""
    cafile = str(kafka.ssl_cafile) if kafka.ssl_cafile else None
    return ssl.create_default_context(cafile=cafile)


def librdkafka_config(kafka: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """Connection settings for confluent-kafka clients, security included."""
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "security.protocol": kafka.security_protocol,
        "log_level": 3,
    }
    if kafka.ssl_cafile is not None and uses_tls(kafka):
        config["ssl.ca.location"] = str(kafka.ssl_cafile)
    if kafka.sasl_mechanism:
        config["sasl.mechanism"] = kafka.sasl_mechanism
    if kafka.sasl_username:
        config["sasl.username"] = kafka.sasl_username
    if kafka.sasl_password is not None:
        config["sasl.password"] = kafka.sasl_password.get_secret_value()
    config.update(extra)
    return config


def producer_config(kafka: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """A fast, idempotent producer that partitions keys like the Java client and aiokafka (murmur2)."""
    return librdkafka_config(
        kafka,
        **{
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
            **extra,
        },
    )


def aiokafka_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection settings for aiokafka clients (the workers' own producers)."""
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if uses_tls(kafka):
        config["ssl_context"] = ssl_context(kafka)
    if kafka.sasl_mechanism:
        config["sasl_mechanism"] = kafka.sasl_mechanism
    if kafka.sasl_username:
        config["sasl_plain_username"] = kafka.sasl_username
    if kafka.sasl_password is not None:
        config["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return config


# Answers a broker gives for a partition whose leader is not elected or not known to it yet: a topic
# created a moment ago, or a leader moving. They pass within seconds; anything else is an error.
_LEADER_SETTLING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError._UNKNOWN_PARTITION,
    }
)


def watermarks(
    consumer: Consumer, tp: TopicPartition, *, settle_s: float = 30.0, sleep: float = 0.25
) -> tuple[int, int]:
    """The low and high offsets of ``tp``, waiting up to ``settle_s`` for a new partition's leader."""
    deadline = time.monotonic() + settle_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            code = exc.args[0].code() if exc.args and isinstance(exc.args[0], KafkaError) else None
            if code not in _LEADER_SETTLING or time.monotonic() > deadline:
                raise
        time.sleep(sleep)
