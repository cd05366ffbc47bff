"""Kafka security settings reach all three client stacks: librdkafka, aiokafka and Faust."""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi
import faust
import pytest
from pydantic import SecretStr, ValidationError

from prodcat.core.kafka_config import aiokafka_config, librdkafka_config
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
