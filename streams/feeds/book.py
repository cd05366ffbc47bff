"""The normaliser's memory of feeds: which profile applies, when to infer one, when to re-profile.

A :class:`ProfileBook` is pure (no Kafka): the normalise stage feeds it parsed records and the
profiles it reads back from ``feeds.profiles``, and publishes what it returns.

* A feed without a profile is **sampled**: its first records are held by the stage (not answered,
  so not committed) until ``sample_size`` of them arrived, or ``wait_s`` passed since the first,
  or the feed went quiet (no record for ``quiet_s``) with at least ``min_quiet_sample`` held (a
  feed smaller than the sample need not wait ``wait_s`` once all of it is in); then
  :meth:`ProfileBook.infer` builds version 1 from them and the stage releases them.
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
#: Infers one profile per record shape (shape key -> profile) from records, a feed name and the
#: operator's overrides (``infer_profiles`` with the Google taxonomy bound).
Inferrer = Callable[[Sequence[Record], str, Mapping[str, FieldSource]], Mapping[str, FeedProfile]]

_RECENT_FACTOR: Final = 2


@dataclass(frozen=True)
class BookSettings:
    """When to infer and re-infer a feed's profile."""

    sample_size: int = 500
    wait_s: float = 10.0
    quiet_s: float = 1.0
    min_quiet_sample: int = 50
    refine_at: int = 1000
    min_misfits: int = 20
    drift_share: float = 0.5


@dataclass
class FeedState:
    """What the book knows of one feed."""

    profiles: dict[str, FeedProfile] = field(default_factory=dict)
    overrides: dict[str, FieldSource] = field(default_factory=dict)
    sample: list[Record] = field(default_factory=list)
    first_held_at: float | None = None
    last_held_at: float | None = None
    misfits: int = 0
    seen: int = 0
    refined: bool = False
    recent: deque[tuple[Record, bool]] = field(default_factory=deque)

    @property
    def profile(self) -> FeedProfile | None:
        """The newest profile of the feed (any shape)."""
        return max(self.profiles.values(), key=lambda p: p.version, default=None)

    @property
    def version(self) -> int:
        return max((p.version for p in self.profiles.values()), default=0)


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

    def profiles(self, feed: str) -> list[FeedProfile]:
        """The profiles of ``feed``, one per record shape (empty while it has none)."""
        found = self._feeds.get(feed)
        return list(found.profiles.values()) if found is not None else []

    def feeds(self) -> list[str]:
        return sorted(self._feeds)

    # --- what the stage tells the book ------------------------------------------------------

    def hold(self, feed: str, record: Record) -> None:
        """A record the stage holds: a sample of a new feed, or a misfit of a known one."""
        state = self.state(feed)
        state.seen += 1
        now = self._clock()
        state.last_held_at = now
        if state.first_held_at is None:
            state.first_held_at = now
        if not state.profiles:
            state.sample.append(record)
        else:
            state.misfits += 1
            self._remember(state, record, fits=False)

    def fitted(self, feed: str, record: Record) -> None:
        """A record that fits the feed's profile (kept as recent context for a re-profile)."""
        state = self.state(feed)
        state.seen += 1
        self._remember(state, record, fits=True)

    def _remember(self, state: FeedState, record: Record, *, fits: bool) -> None:
        recent = state.recent
        if recent.maxlen is None:  # bounded once, then the deque drops the oldest itself
            recent = state.recent = deque(recent, maxlen=self.settings.sample_size * _RECENT_FACTOR)
        recent.append((record, fits))

    def due(self, feed: str) -> str | None:
        """What ``feed`` needs now: ``"infer"``, ``"reprofile"``, ``"release"`` (give up waiting:
        use the profile as it is), ``"refine"`` (re-infer once from more records than the first
        profile saw; nothing is held) or None."""
        state = self._feeds.get(feed)
        if state is None:
            return None
        if state.first_held_at is None:
            return "refine" if self._refine_due(state) else None
        now = self._clock()
        waited = now - state.first_held_at >= self.settings.wait_s
        if not state.profiles:
            cfg = self.settings
            quiet = (
                state.last_held_at is not None
                and now - state.last_held_at >= cfg.quiet_s
                and len(state.sample) >= cfg.min_quiet_sample
            )
            return "infer" if waited or quiet or len(state.sample) >= cfg.sample_size else None
        if state.misfits >= self.settings.min_misfits:
            recent = len(state.recent)
            share = sum(1 for _, fits in state.recent if not fits) / recent if recent else 1.0
            if share >= self.settings.drift_share:
                return "reprofile"
        return "release" if waited else None

    def _refine_due(self, state: FeedState) -> bool:
        at = self.settings.refine_at
        newest = state.profile
        return (
            not state.refined
            and at > 0
            and newest is not None
            and newest.sample_size < at
            and state.seen >= at
        )

    def due_feeds(self) -> dict[str, str]:
        """Every feed whose held records need something now (see :meth:`due`)."""
        found = {feed: self.due(feed) for feed in self._feeds}
        return {feed: action for feed, action in found.items() if action is not None}

    # --- what the book decides --------------------------------------------------------------

    def infer(self, feed: str) -> list[FeedProfile]:
        """The first profiles of ``feed`` (one per record shape) from its held sample."""
        state = self.state(feed)
        records = state.sample or [record for record, _ in state.recent]
        profiles = self._build(feed, state, records, "first profile")
        state.sample = []
        return profiles

    def reprofile(self, feed: str) -> list[FeedProfile]:
        """The next profiles of ``feed`` from its recent records (fitting and not), so that the
        shapes it sends now, old and new, each get one."""
        state = self.state(feed)
        old = dict(state.profiles)
        records = [record for record, _ in state.recent]
        profiles = self._build(feed, state, records, "re-profiled")
        profiles = [replace(p, reason=_changes(old.get(p.shape), p)) for p in profiles]
        state.profiles = {p.shape: p for p in profiles}
        state.recent.clear()
        return profiles

    def refine(self, feed: str) -> list[FeedProfile]:
        """Re-infer once from the recent records when the first profiles saw fewer than
        ``refine_at``; returns the new profiles only where the mapping changed."""
        state = self.state(feed)
        state.refined = True
        old = dict(state.profiles)
        records = [record for record, _ in state.recent]
        candidates = self._infer(records, feed, state.overrides)
        if all(_same_mapping(old.get(shape), p) for shape, p in candidates.items()):
            return []
        version = state.version + 1
        profiles = [
            replace(p, version=version, reason=f"refined from {len(records)} records")
            for p in candidates.values()
        ]
        state.profiles = {p.shape: p for p in profiles}
        return profiles

    def released(self, feed: str) -> None:
        """The stage answered every record it held for ``feed``."""
        state = self.state(feed)
        state.first_held_at = state.last_held_at = None
        state.misfits = 0
        state.sample = []

    def adopt(self, profile: FeedProfile) -> bool:
        """Take a profile read from ``feeds.profiles`` when it is newer than the one held."""
        state = self.state(profile.feed)
        current = state.profiles.get(profile.shape)
        if current is not None and current.version >= profile.version:
            return False
        if profile.version > state.version:  # a newer generation replaces every shape
            state.profiles = {}
        state.profiles[profile.shape] = profile
        state.overrides = dict(profile.overrides)
        return True

    def _build(
        self, feed: str, state: FeedState, records: Sequence[Record], reason: str
    ) -> list[FeedProfile]:
        version = state.version + 1
        inferred = self._infer(records, feed, state.overrides)
        profiles = [replace(p, version=version, reason=reason) for p in inferred.values()]
        state.profiles = {p.shape: p for p in profiles}
        return profiles


def _same_mapping(old: FeedProfile | None, new: FeedProfile) -> bool:
    if old is None:
        return False
    return {
        role: (f.sources, f.kind, f.delimiter, f.split, f.scale) for role, f in old.fields.items()
    } == {
        role: (f.sources, f.kind, f.delimiter, f.split, f.scale) for role, f in new.fields.items()
    }


def _changes(old: FeedProfile | None, new: FeedProfile) -> str:
    """A short account of what a re-profile changed (roles whose sources moved)."""
    if old is None:
        return f"re-profiled: a new record shape ({len(new.keys)} keys)"
    moved = []
    for role in sorted(set(old.fields) | set(new.fields)):
        before, after = old.fields.get(role), new.fields.get(role)
        if (before.sources if before else ()) != (after.sources if after else ()):
            was = ",".join(before.sources) if before else "-"
            now = ",".join(after.sources) if after else "-"
            moved.append(f"{role}: {was} -> {now}")
    return "re-profiled: " + ("; ".join(moved) if moved else "same mapping, new keys")
