"""Kafka security settings reach all three client stacks (librdkafka, aiokafka and Faust), and a
new partition's watermarks are read once its leader settles."""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi
import faust
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from pydantic import SecretStr, ValidationError

from prodcat.core.kafka_config import aiokafka_config, librdkafka_config, watermarks
from prodcat.core.settings import KafkaSettings, Settings
from prodcat.streams.app import _credentials

CA = Path(certifi.where())


def test_plaintext_has_no_security_settings() -> None:
    kafka = KafkaSettings()
    assert "ssl.ca.location" not in librdkafka_config(kafka)
    assert "ssl_context" not in aiokafka_config(kafka)
    assert _credentials(Settings(kafka=kafka)) is None


def test_sasl_ssl_with_a_ca_bundle_reaches_every_client() -> None:
    kafka = KafkaSettings(
        bootstrap_servers="kafka-0.kafka:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="prodcat",
        sasl_password=SecretStr("s3cret"),
        ssl_cafile=CA,
    )
    rd = librdkafka_config(kafka)
    assert rd["security.protocol"] == "SASL_SSL"
    assert rd["ssl.ca.location"] == str(CA)
    assert (rd["sasl.mechanism"], rd["sasl.username"], rd["sasl.password"]) == (
        "SCRAM-SHA-512",
        "prodcat",
        "s3cret",
    )
    aio = aiokafka_config(kafka)
    context = aio["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # the bundle was loaded
    assert aio["sasl_plain_password"] == "s3cret"
    credentials = _credentials(Settings(kafka=kafka))
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.ssl_context is not None
    assert credentials.ssl_context.cert_store_stats()["x509_ca"] > 0


def test_tls_without_sasl_gives_faust_ssl_credentials() -> None:
    kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=CA)
    credentials = _credentials(Settings(kafka=kafka))
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.context.cert_store_stats()["x509_ca"] > 0


def test_a_missing_ca_bundle_fails_at_load_time(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="is not a readable file"):
        KafkaSettings(security_protocol="SSL", ssl_cafile=tmp_path / "nope.pem")


class _SettlingConsumer:
    """Answers ``errors`` in turn before the watermarks, as a broker does while a leader settles."""

    def __init__(self, errors: list[int]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def get_watermark_offsets(self, tp: object, timeout: float) -> tuple[int, int]:
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return 3, 17


def test_watermarks_wait_for_a_new_partitions_leader() -> None:
    consumer = _SettlingConsumer(
        [KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE]
    )
    tp = TopicPartition("t", 0)
    assert watermarks(consumer, tp, sleep=0.0) == (3, 17)  # type: ignore[arg-type]
    assert consumer.calls == 3


def test_watermarks_raise_other_errors_at_once() -> None:
    consumer = _SettlingConsumer([KafkaError.TOPIC_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException):
        watermarks(consumer, TopicPartition("t", 0), sleep=0.0)  # type: ignore[arg-type]
    assert consumer.calls == 1


def test_watermarks_give_up_after_the_settle_time() -> None:
    consumer = _SettlingConsumer([KafkaError.NOT_LEADER_FOR_PARTITION] * 1000)
    with pytest.raises(KafkaException):
        watermarks(consumer, TopicPartition("t", 0), settle_s=0.05, sleep=0.01)  # type: ignore[arg-type]
    assert 1 < consumer.calls < 1000
