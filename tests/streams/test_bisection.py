"""Bisection isolates the records that break a batch and handles every other one once more."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from prodcat.streams.bisection import bisect, bisect_async


class Rejected(Exception):
    pass


def _attempt(calls: list[list[int]]):  # type: ignore[no-untyped-def]
    def attempt(items: Sequence[int]) -> list[str]:
        calls.append(list(items))
        if any(i % 7 == 3 and i < 20 for i in items):
            raise Rejected("rejected")
        return [f"ok {i}" for i in items]

    return attempt


def _isolate(item: int, exc: Rejected) -> list[str]:
    return [f"bad {item}"]


def test_bisect_keeps_order_and_isolates_each_bad_item() -> None:
    calls: list[list[int]] = []
    out = bisect(
        list(range(20)),
        _attempt(calls),
        failure=Rejected,
        isolate=_isolate,
        combine=list.__add__,
    )
    assert out == [f"bad {i}" if i % 7 == 3 and i < 20 else f"ok {i}" for i in range(20)]


def test_one_bad_item_in_many_costs_about_two_calls_per_halving() -> None:
    calls: list[list[int]] = []
    out = bisect(
        [*range(100, 600), 10, *range(600, 1099)],
        _attempt(calls),
        failure=Rejected,
        isolate=_isolate,
        combine=list.__add__,
    )
    assert out.count("bad 10") == 1
    assert len(out) == 1000
    assert len(calls) <= 2 * 10 + 1  # log2(1000) < 10


async def test_bisect_async_is_the_same_algorithm() -> None:
    calls: list[list[int]] = []
    sync = _attempt(calls)

    async def attempt(items: Sequence[int]) -> list[str]:
        return sync(items)

    out = await bisect_async(
        list(range(10)), attempt, failure=Rejected, isolate=_isolate, combine=list.__add__
    )
    assert out == [f"bad {i}" if i % 7 == 3 and i < 20 else f"ok {i}" for i in range(10)]


def test_other_errors_propagate() -> None:
    def attempt(items: Sequence[int]) -> list[str]:
        raise KeyError("not a rejection")

    with pytest.raises(KeyError):
        bisect([1, 2], attempt, failure=Rejected, isolate=_isolate, combine=list.__add__)
