"""Errors raised by prodcat's command-line layer and local services."""


class ProdcatError(Exception):
    """Base class for errors of the prodcat package."""


class ConfigError(ProdcatError):
    """A setting is missing or invalid; the message names it."""


class LocalKafkaError(ProdcatError):
    """The local Kafka broker could not be installed, started or stopped."""


class TransientError(Exception):
    """Infrastructure that is down or slow (registry, model server, vector store), not bad input.

    Stream stages retry the batch with backoff on these and never dead-letter the input.
    """
