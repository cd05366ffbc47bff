"""Errors raised by the ``streams`` package.

Everything derives from :class:`StreamsError`. Input a stage cannot use raises a subclass that
carries a machine-readable ``kind``, so an agent can dead-letter the original bytes with that
reason (``DeadLetter.error_kind``) and count it, without parsing messages.
"""

from __future__ import annotations

from prodcat.core.errors import ProdcatError

__all__ = [
    "NormalizationError",
    "ReplayError",
    "StreamsError",
    "TopicError",
    "UnknownAgentError",
    "WorkerProcessError",
]


class StreamsError(ProdcatError):
    """Base class of every error raised by the ``streams`` package."""


class NormalizationError(StreamsError):
    """A raw product event cannot be turned into a ``Product``.

    ``kind`` is one of ``too_large``, ``not_utf8``, ``not_json``, ``not_object``, ``empty``,
    ``no_title``, ``wrong_type`` or ``invalid``; ``message`` is a short human-readable detail
    (bounded in length: it never quotes the whole input).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message

    def __reduce__(self) -> tuple[type[NormalizationError], tuple[str, str]]:
        return (type(self), (self.kind, self.message))


class TopicError(StreamsError):
    """A topic cannot be listed or created, or exists with the wrong shape."""


class ReplayError(StreamsError):
    """A dataset cannot be read or its events cannot be published."""


class UnknownAgentError(StreamsError):
    """A worker was asked to run an agent role that does not exist."""


class WorkerProcessError(StreamsError):
    """A worker process exited or did not become ready."""


class RetrainJobError(StreamsError):
    """A training job could not run (e.g. another job holds its version)."""
