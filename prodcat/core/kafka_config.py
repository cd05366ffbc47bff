"""Kafka client configuration shared by the admin, replay and read-back clients (librdkafka)."""

from __future__ import annotations

import ssl
from typing import Any

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
