"""Who is labelling what: leases on queued products and what each annotator skipped.

A product handed to an annotator is leased to them for ``ttl_s``; no one else is handed it while
the lease holds. Submitting or skipping releases it; an expired lease simply lapses (the
annotator walked away). Skips are remembered per annotator for ``skip_ttl_s`` so a skipped
product goes to someone else rather than straight back.

Leases live in this process's memory: run one web replica. Several replicas would need a shared
lease table (e.g. a compacted ``annotation.leases`` topic or sticky routing by annotator); see the
README. Memory is bounded by the number of annotators and what they skipped recently.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Lease:
    product_id: str
    annotator: str
    started: float
    expires: float


class LeaseBook:
    """Leases and skips; thread-safe, clock injectable (tests)."""

    def __init__(
        self, ttl_s: float, skip_ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.skip_ttl_s = skip_ttl_s
        self.clock = clock
        self._by_product: dict[str, Lease] = {}
        self._by_annotator: dict[str, str] = {}
        self._skips: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        for product_id, lease in list(self._by_product.items()):
            if lease.expires <= now:
                del self._by_product[product_id]
                if self._by_annotator.get(lease.annotator) == product_id:
                    del self._by_annotator[lease.annotator]

    def current(self, annotator: str) -> Lease | None:
        """The annotator's live lease, if any."""
        with self._lock:
            self._expire(self.clock())
            product_id = self._by_annotator.get(annotator)
            return None if product_id is None else self._by_product.get(product_id)

    def available(self, product_id: str, annotator: str) -> bool:
        """Whether ``product_id`` may be handed to ``annotator`` (not leased to another, not
        skipped by them recently)."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            lease = self._by_product.get(product_id)
            if lease is not None and lease.annotator != annotator:
                return False
            skipped = self._skips.get(annotator, {}).get(product_id)
            return skipped is None or skipped <= now

    def acquire(self, product_id: str, annotator: str) -> Lease | None:
        """Lease ``product_id`` to ``annotator`` (releasing their previous lease); None when
        someone else holds it. Renewing one's own lease keeps its start time."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            held = self._by_product.get(product_id)
            if held is not None and held.annotator != annotator:
                return None
            previous = self._by_annotator.get(annotator)
            if previous is not None and previous != product_id:
                self._by_product.pop(previous, None)
            started = held.started if held is not None else now
            lease = Lease(product_id, annotator, started, now + self.ttl_s)
            self._by_product[product_id] = lease
            self._by_annotator[annotator] = product_id
            return lease

    def holder(self, product_id: str) -> str | None:
        with self._lock:
            self._expire(self.clock())
            lease = self._by_product.get(product_id)
            return None if lease is None else lease.annotator

    def release(self, product_id: str, annotator: str) -> Lease | None:
        """End ``annotator``'s lease on ``product_id``; returns it (None if they held none)."""
        with self._lock:
            lease = self._by_product.get(product_id)
            if lease is None or lease.annotator != annotator:
                return None
            del self._by_product[product_id]
            if self._by_annotator.get(annotator) == product_id:
                del self._by_annotator[annotator]
            return lease

    def skip(self, product_id: str, annotator: str) -> None:
        """Release and remember the skip for ``skip_ttl_s``."""
        self.release(product_id, annotator)
        with self._lock:
            now = self.clock()
            skips = self._skips.setdefault(annotator, {})
            for pid, until in list(skips.items()):
                if until <= now:
                    del skips[pid]
            skips[product_id] = now + self.skip_ttl_s

    def forget_skip(self, product_id: str, annotator: str) -> None:
        with self._lock:
            self._skips.get(annotator, {}).pop(product_id, None)

    def leased_count(self) -> int:
        with self._lock:
            self._expire(self.clock())
            return len(self._by_product)
