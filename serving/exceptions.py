"""Errors raised by model serving, image fetching and the vector store.

Everything derives from :class:`ServingError`. Errors that mean "the infrastructure is down, retry"
also derive from :class:`prodcat.core.errors.TransientError`, which stream stages retry with backoff
instead of dead-lettering the input.
"""

from __future__ import annotations

from prodcat.core.errors import ModelNotFoundError, ProdcatError, TransientError


class ServingError(ProdcatError):
    """Base class of every error raised by the ``serving`` package."""


class ModelSignatureError(ServingError, TransientError):
    """The model's signature does not have the inputs or outputs the caller needs.

    A deployment mismatch, not the input's fault: stages retry (and log) rather than dead-letter.
    """


class BackendUnavailableError(ServingError, TransientError):
    """The model server could not be reached or did not answer within its deadline."""


class ModelCardUnavailableError(ServingError, TransientError):
    """The served version has no readable model card (being written, deleted, corrupt).

    A deployment problem, not the input's fault: stages wait for it (back-off, counted retries)
    rather than dead-letter every product while it lasts.
    """


class ImageFetchError(ServingError):
    """An image could not be fetched or is not an image; ``kind`` is the dead-letter reason.

    Kinds: ``bad_url``, ``scheme_not_allowed``, ``address_not_allowed``, ``not_found``,
    ``http_status``, ``too_large``, ``timeout``, ``connection``, ``too_many_redirects``,
    ``not_image``, ``bad_image``. ``transient``: another try may succeed (timeouts, connection
    errors, HTTP 429 and 5xx); ``retry_after``: the wait the server asked for, in seconds.
    """

    def __init__(
        self, kind: str, message: str, *, transient: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.transient = transient
        self.retry_after = retry_after


class VectorStoreError(ServingError):
    """The vector store refused a request (bad schema, bad filter)."""


class VectorStoreUnavailableError(VectorStoreError, TransientError):
    """The vector store could not be reached."""


class ModelInputError(ServingError):
    """The model rejected its input (e.g. bytes that do not decode as an image): not retryable."""


__all__ = [
    "BackendUnavailableError",
    "ImageFetchError",
    "ModelCardUnavailableError",
    "ModelInputError",
    "ModelNotFoundError",
    "ModelSignatureError",
    "ServingError",
    "TransientError",
    "VectorStoreError",
    "VectorStoreUnavailableError",
]
