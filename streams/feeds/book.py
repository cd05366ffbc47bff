"""The normaliser's memory of feeds: which profile applies, when to infer one, when to re-profile.

A :class:`ProfileBook` is pure (no Kafka): the normalise stage feeds it parsed records and the
profiles it reads back from ``feeds.profiles``, and publishes what it returns.

* A feed without a profile is **sampled**: its first records are held by the stage (not answered,
  so not committed) until ``sample_size`` of them arrived or ``wait_s`` passed since the first;
  then :meth:`ProfileBook.infer` builds version 1 from them and the stage releases them.
* A feed with a profile is **watched**: records that do not fit it (their title source is gone,
  their keys changed) are held too. When misfits are at least ``min_misfits`` and make up at least
  ``drift_share`` of the recent records, the feed is re-profiled from the recent records (new
  version, reason says what changed) and the held records are normalised with it; when they are
  a few stray records, they are released after ``wait_s`` with the profile they do not fit (and
  end as dead letters with their reason).
* An operator's overrides (``prodcat feeds override``) arrive as a profile on ``feeds.profiles``
  with a higher version; :meth:`ProfileBook.adopt` takes it, and every later inference keeps the
  overrides.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from prodcat.streams.feeds.profile import FeedProfile, FieldSource

__all__ = ["BookSettings", "FeedState", "Inferrer", "ProfileBook"]

Record = Mapping[str, Any]
Inferrer = Callable[[Sequence[Record], str, Mapping[str, FieldSource]], FeedProfile]

_RECENT_FACTOR: Final = 2


@dataclass(frozen=True)
class BookSettings:
    """When to infer and re-infer a feed's profile."""

    sample_size: int = 200
    wait_s: float = 5.0
    min_misfits: int = 20
    drift_share: float = 0.5


@dataclass
class FeedState:
    """What the book knows of one feed."""

    profile: FeedProfile | None = None
    overrides: dict[str, FieldSource] = field(default_factory=dict)
    sample: list[Record] = field(default_factory=list)
    first_held_at: float | None = None
    misfits: int = 0
    recent: deque[tuple[Record, bool]] = field(default_factory=deque)


class ProfileBook:
    """Per-feed profiles, samples and drift counts for one normalise worker."""

    def __init__(
        self,
        infer: Inferrer,
        settings: BookSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._infer = infer
        self.settings = settings or BookSettings()
        self._clock = clock
        self._feeds: dict[str, FeedState] = {}

    def state(self, feed: str) -> FeedState:
        found = self._feeds.get(feed)
        if found is None:
            found = self._feeds[feed] = FeedState()
        return found

    def profile(self, feed: str) -> FeedProfile | None:
        found = self._feeds.get(feed)
        return found.profile if found is not None else None

    def feeds(self) -> list[str]:
        return sorted(self._feeds)

    # --- what the stage tells the book ------------------------------------------------------

    def hold(self, feed: str, record: Record) -> None:
        """A record the stage holds: a sample of a new feed, or a misfit of a known one."""
        state = self.state(feed)
        if state.first_held_at is None:
            state.first_held_at = self._clock()
        if state.profile is None:
            state.sample.append(record)
        else:
            state.misfits += 1
            self._remember(state, record, fits=False)

    def fitted(self, feed: str, record: Record) -> None:
        """A record that fits the feed's profile (kept as recent context for a re-profile)."""
        self._remember(self.state(feed), record, fits=True)

    def _remember(self, state: FeedState, record: Record, *, fits: bool) -> None:
        state.recent.append((record, fits))
        limit = self.settings.sample_size * _RECENT_FACTOR
        while len(state.recent) > limit:
            state.recent.popleft()

    def due(self, feed: str) -> str | None:
        """What the held records of ``feed`` need now: ``"infer"``, ``"reprofile"``,
        ``"release"`` (give up waiting: use the profile as it is) or None (keep holding)."""
        state = self._feeds.get(feed)
        if state is None or state.first_held_at is None:
            return None
        waited = self._clock() - state.first_held_at >= self.settings.wait_s
        if state.profile is None:
            return "infer" if waited or len(state.sample) >= self.settings.sample_size else None
        if state.misfits >= self.settings.min_misfits:
            recent = len(state.recent)
            share = sum(1 for _, fits in state.recent if not fits) / recent if recent else 1.0
            if share >= self.settings.drift_share:
                return "reprofile"
        return "release" if waited else None

    def due_feeds(self) -> dict[str, str]:
        """Every feed whose held records need something now (see :meth:`due`)."""
        found = {feed: self.due(feed) for feed in self._feeds}
        return {feed: action for feed, action in found.items() if action is not None}

    # --- what the book decides --------------------------------------------------------------

    def infer(self, feed: str) -> FeedProfile:
        """Version 1 (or the next version) of ``feed``'s profile from its held sample."""
        state = self.state(feed)
        records = state.sample or [record for record, _ in state.recent]
        profile = self._build(feed, state, records, "first profile")
        state.sample = []
        return profile

    def reprofile(self, feed: str) -> FeedProfile:
        """The next version of ``feed``'s profile, inferred from its recent records, misfits
        weighted as they came (the new shape is what the feed sends now)."""
        state = self.state(feed)
        records = [record for record, fits in state.recent if not fits] or [
            record for record, _ in state.recent
        ]
        old = state.profile
        profile = self._build(feed, state, records, "re-profiled")
        if old is not None:
            profile = replace(profile, reason=_changes(old, profile))
        state.recent.clear()
        return profile

    def released(self, feed: str) -> None:
        """The stage answered every record it held for ``feed``."""
        state = self.state(feed)
        state.first_held_at = None
        state.misfits = 0
        state.sample = []

    def adopt(self, profile: FeedProfile) -> bool:
        """Take a profile read from ``feeds.profiles`` when it is newer than the one held."""
        state = self.state(profile.feed)
        current = state.profile
        if current is not None and current.version >= profile.version:
            return False
        state.profile = profile
        state.overrides = dict(profile.overrides)
        return True

    def _build(
        self, feed: str, state: FeedState, records: Sequence[Record], reason: str
    ) -> FeedProfile:
        version = state.profile.version + 1 if state.profile is not None else 1
        inferred = self._infer(records, feed, state.overrides)
        profile = replace(inferred, version=version, reason=reason)
        state.profile = profile
        return profile


def _changes(old: FeedProfile, new: FeedProfile) -> str:
    """A short account of what a re-profile changed (roles whose sources moved)."""
    moved = []
    for role in sorted(set(old.fields) | set(new.fields)):
        before, after = old.fields.get(role), new.fields.get(role)
        if (before.sources if before else ()) != (after.sources if after else ()):
            was = ",".join(before.sources) if before else "-"
            now = ",".join(after.sources) if after else "-"
            moved.append(f"{role}: {was} -> {now}")
    return "re-profiled: " + ("; ".join(moved) if moved else "same mapping, new keys")
