"""When the profile book infers a new feed's profile: a full sample, a long wait, or a quiet feed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prodcat.streams.feeds.book import BookSettings, ProfileBook
from prodcat.streams.feeds.profile import FeedProfile, FieldSource


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _never(
    records: Sequence[Mapping[str, Any]], feed: str, overrides: Mapping[str, FieldSource]
) -> Mapping[str, FeedProfile]:
    raise AssertionError("due() only decides; nothing is inferred here")


def _book(clock: Clock) -> ProfileBook:
    settings = BookSettings(sample_size=500, wait_s=10.0, quiet_s=1.0, min_quiet_sample=50)
    return ProfileBook(_never, settings, clock=clock)


def test_a_small_feed_is_profiled_once_it_goes_quiet_not_after_the_long_wait() -> None:
    clock = Clock()
    book = _book(clock)
    for i in range(400):  # a feed of 400 records: fewer than the sample
        clock.now = i * 0.001
        book.hold("small", {"name": f"p{i}"})
    assert book.due("small") is None  # still arriving
    clock.now = 0.399 + 0.999
    assert book.due("small") is None
    clock.now = 0.399 + 1.0  # a second without a record: all of it is in
    assert book.due("small") == "infer"


def test_a_tiny_feed_still_waits_and_a_full_sample_does_not() -> None:
    clock = Clock()
    book = _book(clock)
    for i in range(20):  # under min_quiet_sample: too few to trust a quiet spell
        book.hold("tiny", {"name": f"p{i}"})
    clock.now = 5.0
    assert book.due("tiny") is None
    clock.now = 10.0
    assert book.due("tiny") == "infer"
    for i in range(500):
        book.hold("big", {"name": f"p{i}"})
    assert book.due("big") == "infer"  # the sample is full: no waiting at all
    book.released("tiny")
    assert book.due("tiny") is None
