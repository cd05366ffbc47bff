"""Errors raised by the ``training`` package.

Everything derives from :class:`TrainingError`. Third-party errors (YAML, JSON, CSV, ``re``) are
translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from prodcat.core.errors import ProdcatError

__all__ = ["DatasetError", "RuleError", "TaxonomyError", "TrainingError"]


class TrainingError(ProdcatError):
    """Base class of every error raised by the ``training`` package."""


class TaxonomyError(TrainingError):
    """A category tree cannot be built or loaded, or a category is unknown."""


class RuleError(TrainingError):
    """A rules file cannot be read or a rule is invalid (the message names the rule index)."""


class DatasetError(TrainingError):
    """A dataset cannot be read, or a protocol cannot be applied to it."""
