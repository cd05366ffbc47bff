"""Errors raised by the Avro schema loading and serde code.

Everything derives from :class:`SerdeError`, so a stream stage can catch that one class and
dead-letter the message. Third-party errors (fastavro, confluent-kafka, httpx) are translated at
the boundary and kept as ``__cause__``.
"""

from __future__ import annotations

from prodcat.core.errors import ProdcatError, TransientError

__all__ = [
    "DecodeError",
    "EncodeError",
    "RegistryError",
    "SchemaError",
    "SerdeError",
    "UnknownSchemaError",
]


class SerdeError(ProdcatError):
    """Base class of every error raised by the ``schemas`` package."""


class SchemaError(SerdeError):
    """A schema cannot be found by name or is not a valid Avro schema."""


class EncodeError(SerdeError):
    """A record does not match the writer schema and cannot be encoded."""


class DecodeError(SerdeError):
    """Bytes cannot be decoded: bad framing, truncated or corrupt body, incompatible schemas."""


class UnknownSchemaError(DecodeError):
    """The writer schema of a message (fingerprint or registry id) is not known."""


class RegistryError(SerdeError, TransientError):
    """The Schema Registry could not be reached or refused a request.

    Not a :class:`DecodeError`: the message may be fine, the infrastructure is not, so callers
    should retry rather than dead-letter.
    """
