"""Telling when a feed's records stop fitting its profile, so the stage can re-profile.

:func:`misfit` checks one parsed record: its top-level keys must still cover the profile's keys
(most of them), and the title role must still give text. :class:`DriftMonitor` keeps a window of
recent verdicts per profile and says when the share of misfits crosses a threshold.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from typing import Any, Final

from prodcat.streams.feeds.extract import compile_profile
from prodcat.streams.feeds.profile import FeedProfile

__all__ = ["DriftMonitor", "fits", "misfit"]

_MIN_KEY_SHARE: Final = 0.6


def misfit(record: Mapping[str, Any], profile: FeedProfile) -> str | None:
    """Why ``record`` does not fit ``profile`` (``"keys"``, ``"title"``), or None when it fits."""
    extractor = compile_profile(profile)
    keys = extractor.keys
    if keys:
        present = len(keys.intersection(record))  # a mapping iterates its keys
        if present < _MIN_KEY_SHARE * len(keys):
            return "keys"
    for get in extractor.title:
        value = get(record)
        if isinstance(value, str) and value.strip():
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return None
    return "title"


def fits(record: Mapping[str, Any], profile: FeedProfile) -> bool:
    """Whether ``record`` still fits ``profile`` (see :func:`misfit`)."""
    return misfit(record, profile) is None


class DriftMonitor:
    """A sliding window of fit verdicts for one profile.

    :meth:`observe` returns True once at least ``min_records`` were seen and the share of
    misfits among the last ``window`` records reaches ``threshold``; :attr:`reasons` counts why.
    Call :meth:`reset` after re-profiling.
    """

    def __init__(
        self,
        profile: FeedProfile,
        *,
        window: int = 500,
        threshold: float = 0.2,
        min_records: int = 50,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        self.profile = profile
        self.window = window
        self.threshold = threshold
        self.min_records = min(min_records, window)
        self._verdicts: deque[bool] = deque(maxlen=window)
        self._misfits = 0
        self.reasons: Counter[str] = Counter()

    @property
    def misfit_rate(self) -> float:
        return self._misfits / len(self._verdicts) if self._verdicts else 0.0

    def observe(self, record: Mapping[str, Any]) -> bool:
        """Record one record's verdict; True when the profile no longer fits the feed."""
        reason = misfit(record, self.profile)
        if len(self._verdicts) == self._verdicts.maxlen and self._verdicts[0]:
            self._misfits -= 1
        self._verdicts.append(reason is not None)
        if reason is not None:
            self._misfits += 1
            self.reasons[reason] += 1
        return len(self._verdicts) >= self.min_records and self.misfit_rate >= self.threshold

    def reset(self, profile: FeedProfile) -> None:
        """Start over with a new profile."""
        self.profile = profile
        self._verdicts.clear()
        self._misfits = 0
        self.reasons.clear()
