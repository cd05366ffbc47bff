"""What the sampler must remember: labelled and pending products, and its request rate.

:class:`Exclusions` is rebuilt from Kafka on start-up (the compacted ``labels`` topic and
``annotation.requests``, both from the beginning) and then follows both topics, so a restarted or
rebalanced sampler never asks again for a product that is labelled or already waiting for a label.
:class:`TokenBucket` caps the requests per minute. Both are pure: time comes in as arguments.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any


class Exclusions:
    """Products that must not be requested: labelled (objective in ``objectives``) or pending.

    A product is pending from its request's ``requested_at`` for ``pending_ttl_ms``; after that an
    unanswered request may be issued again. Labels arrive keyed by product and objective; a
    tombstone (``label`` None) removes the label its key held.
    """

    def __init__(self, pending_ttl_ms: int, objectives: Iterable[str] = ("exclusive",)) -> None:
        self.pending_ttl_ms = pending_ttl_ms
        self.objectives = frozenset(objectives)
        self._label_keys: dict[bytes, str] = {}  # labels key → product_id, relevant objectives only
        self._labelled: Counter[str] = Counter()
        self._pending: dict[str, int] = {}  # product_id → newest requested_at (ms)

    def apply_label(self, key: bytes | None, label: Mapping[str, Any] | None) -> None:
        """A record of the ``labels`` topic (``label`` None: a tombstone of ``key``)."""
        if key is not None and key in self._label_keys:  # this key's previous label is replaced
            old = self._label_keys.pop(key)
            self._labelled[old] -= 1
            if self._labelled[old] <= 0:
                del self._labelled[old]
        if label is None or label.get("objective") not in self.objectives:
            return
        product_id = str(label["product_id"])
        slot = key if key is not None else f"{product_id}\x00{label['objective']}".encode()
        self._label_keys[slot] = product_id
        self._labelled[product_id] += 1

    def apply_request(self, request: Mapping[str, Any] | None) -> None:
        """A record of ``annotation.requests`` (ours or another sampler's)."""
        if request is None:
            return
        product_id, at = str(request["product_id"]), int(request["requested_at"])
        self._pending[product_id] = max(at, self._pending.get(product_id, at))

    def is_labelled(self, product_id: str) -> bool:
        return product_id in self._labelled

    def is_pending(self, product_id: str, now_ms: int) -> bool:
        at = self._pending.get(product_id)
        return at is not None and now_ms - at < self.pending_ttl_ms

    def reason(self, product_id: str, now_ms: int) -> str | None:
        """Why ``product_id`` must not be requested now (``labelled``, ``pending``), or None."""
        if self.is_labelled(product_id):
            return "labelled"
        if self.is_pending(product_id, now_ms):
            return "pending"
        return None

    def expire(self, now_ms: int) -> int:
        """Forget requests older than the TTL (bounded memory); returns how many were dropped."""
        old = [pid for pid, at in self._pending.items() if now_ms - at >= self.pending_ttl_ms]
        for pid in old:
            del self._pending[pid]
        return len(old)

    @property
    def labelled_count(self) -> int:
        return len(self._labelled)

    def pending_count(self, now_ms: int) -> int:
        return sum(
            1
            for pid, at in self._pending.items()
            if now_ms - at < self.pending_ttl_ms and pid not in self._labelled
        )


class TokenBucket:
    """``per_minute`` tokens a minute, at most ``capacity`` saved up (a minute's worth by default).

    Starts full, so a fresh sampler may emit its first batch at once.
    """

    def __init__(self, per_minute: float, now_s: float, capacity: float | None = None) -> None:
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive, got {per_minute}")
        self.rate_per_s = per_minute / 60.0
        self.capacity = float(capacity if capacity is not None else per_minute)
        self._tokens = self.capacity
        self._at = now_s

    def available(self, now_s: float) -> int:
        """Whole tokens available at ``now_s``."""
        elapsed = max(0.0, now_s - self._at)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate_per_s)
        self._at = max(self._at, now_s)
        return int(self._tokens + 1e-9)

    def take(self, n: int, now_s: float) -> None:
        """Spend ``n`` tokens (at most what is available)."""
        if n > self.available(now_s):
            raise ValueError(f"cannot take {n} tokens, {self.available(now_s)} available")
        self._tokens -= n
