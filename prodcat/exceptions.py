"""Errors raised by prodcat's command-line layer and local services."""


class ProdcatError(Exception):
    """Base class for errors of the prodcat package."""


class ConfigError(ProdcatError):
    """A setting is missing or invalid; the message names it."""


class LocalKafkaError(ProdcatError):
    """The local Kafka broker could not be installed, started or stopped."""
