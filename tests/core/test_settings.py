"""Settings: environment parsing, nesting, validation errors that name the variable."""

from __future__ import annotations

import pytest

from prodcat.core.errors import ConfigError
from prodcat.core.settings import load_settings


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODCAT_KAFKA__BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("PRODCAT_TOPICS__RAW", "feeds.raw")
    monkeypatch.setenv("PRODCAT_WORKER__BATCH_SIZE", "500")
    monkeypatch.setenv("PRODCAT_KAFKA__SASL_PASSWORD", "s3cret")
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "broker-a:9092,broker-b:9092"
    assert settings.kafka.faust_broker == "kafka://broker-a:9092;kafka://broker-b:9092"
    assert settings.topics.raw == "feeds.raw"
    assert settings.topics.normalized == "products.normalized"
    assert settings.worker.batch_size == 500
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PRODCAT_WORKER__BATCH_SIZE", "0"),
        ("PRODCAT_KAFKA__BOOTSTRAP_SERVERS", "no-port"),
        ("PRODCAT_LOCAL_KAFKA__PORT", "70000"),
    ],
)
def test_invalid_values_fail_with_the_variable_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.worker.batch_size = 1  # type: ignore[misc]  # the assignment is what is tested
