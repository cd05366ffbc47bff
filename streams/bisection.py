"""Isolating the record that breaks a batch: bisect until it stands alone, keep the rest.

One implementation for every caller: the model stages (classify: a product the model rejects;
embed: an image it rejects), run in a worker thread, use :func:`bisect`; the stage runtime
(:mod:`prodcat.streams.runtime`), which isolates a record its stage's ``process`` cannot handle and
dead-letters it as ``internal_error``, uses :func:`bisect_async`. With one bad record in ``n``,
about ``2·log2(n)`` extra attempts are made, and every good record is handled exactly once more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
E = TypeVar("E", bound=BaseException)


async def bisect_async(
    items: Sequence[T],
    attempt: Callable[[Sequence[T]], Awaitable[R]],
    *,
    failure: type[E] | tuple[type[E], ...],
    isolate: Callable[[T, E], R],
    combine: Callable[[R, R], R],
) -> R:
    """``attempt(items)``; when it raises ``failure``, the two halves separately, recursively; a
    single item that still fails becomes ``isolate(item, error)``. Halves are combined in order."""
    try:
        return await attempt(items)
    except failure as exc:
        if len(items) <= 1:
            if not items:
                raise
            return isolate(items[0], exc)
    middle = len(items) // 2
    left = await bisect_async(
        items[:middle], attempt, failure=failure, isolate=isolate, combine=combine
    )
    right = await bisect_async(
        items[middle:], attempt, failure=failure, isolate=isolate, combine=combine
    )
    return combine(left, right)


def bisect(
    items: Sequence[T],
    attempt: Callable[[Sequence[T]], R],
    *,
    failure: type[E] | tuple[type[E], ...],
    isolate: Callable[[T, E], R],
    combine: Callable[[R, R], R],
) -> R:
    """:func:`bisect_async` for a blocking ``attempt`` (e.g. a model call in a worker thread).

    The coroutine never suspends (``attempt`` is synchronous), so it runs to its end in one step,
    without an event loop."""

    async def attempt_now(part: Sequence[T]) -> R:
        return attempt(part)

    return _run_to_end(
        bisect_async(items, attempt_now, failure=failure, isolate=isolate, combine=combine)
    )


def _run_to_end(coro: Coroutine[Any, Any, R]) -> R:
    try:
        coro.send(None)
    except StopIteration as done:
        result: R = done.value
        return result
    coro.close()
    raise RuntimeError("a synchronous bisection suspended")
