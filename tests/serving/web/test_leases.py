"""Leases: one annotator per product at a time, expiry, skips."""

from __future__ import annotations

from prodcat.serving.web.leases import LeaseBook


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_leased_product_goes_to_nobody_else_until_it_expires() -> None:
    clock = Clock()
    book = LeaseBook(ttl_s=60, skip_ttl_s=600, clock=clock)
    lease = book.acquire("p1", "alice")
    assert lease is not None and lease.expires == 160
    assert book.acquire("p1", "bob") is None
    assert not book.available("p1", "bob") and book.available("p1", "alice")
    assert book.holder("p1") == "alice"
    clock.now = 161
    assert book.holder("p1") is None and book.available("p1", "bob")
    assert book.acquire("p1", "bob") is not None


def test_renewing_keeps_the_start_and_a_new_lease_releases_the_old_one() -> None:
    clock = Clock()
    book = LeaseBook(ttl_s=60, skip_ttl_s=600, clock=clock)
    book.acquire("p1", "alice")
    clock.now = 130
    again = book.acquire("p1", "alice")
    assert again is not None and again.started == 100 and again.expires == 190
    book.acquire("p2", "alice")
    assert book.holder("p1") is None and book.current("alice").product_id == "p2"
    assert book.leased_count() == 1


def test_skip_releases_for_others_but_not_for_the_skipper() -> None:
    clock = Clock()
    book = LeaseBook(ttl_s=60, skip_ttl_s=600, clock=clock)
    book.acquire("p1", "alice")
    book.skip("p1", "alice")
    assert book.holder("p1") is None
    assert book.available("p1", "bob") and not book.available("p1", "alice")
    clock.now = 701
    assert book.available("p1", "alice")
    book.skip("p2", "alice")
    book.forget_skip("p2", "alice")
    assert book.available("p2", "alice")


def test_release_only_by_the_holder() -> None:
    book = LeaseBook(ttl_s=60, skip_ttl_s=600, clock=Clock())
    book.acquire("p1", "alice")
    assert book.release("p1", "bob") is None and book.holder("p1") == "alice"
    assert book.release("p1", "alice") is not None and book.holder("p1") is None
