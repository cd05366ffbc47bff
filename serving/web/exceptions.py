"""Errors of the web UI; all are :class:`prodcat.serving.exceptions.ServingError`."""

from __future__ import annotations

from prodcat.serving.exceptions import ServingError


class WebError(ServingError):
    """Base class of the web UI's errors."""


class AuthError(WebError):
    """A users file, account or secret that cannot be used."""


class ConflictError(WebError):
    """The action does not fit the current state (a product leased to someone else, nothing to
    undo, a label overwritten since); answered with 409."""


class InvalidInputError(WebError):
    """A request the UI refuses (unknown category, bad parameters); answered with 422."""


class PublishError(WebError):
    """Kafka did not acknowledge a write in time; answered with 503 (nothing was recorded)."""
