"""The C heap of a long-running process (glibc): how much is in use and free, and giving the free
part back to the system.

A worker's heap fills and empties with every batch (decoded records, TensorFlow tensors, fetched
images, librdkafka buffers) from several threads, each with a malloc arena of its own; glibc keeps
what was freed inside the arenas, so the resident size creeps up in steps long after the live data
stopped growing. ``malloc_trim(0)`` returns those free pages (the top of each heap and whole free
pages inside it). Where the C library is not glibc both are absent and the callers do nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import cache
from typing import cast

_MALLINFO2_FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2``: ``uordblks`` in use, ``fordblks`` free, ``hblkhd`` mmapped."""

    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS.split()]


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


@cache
def mallinfo() -> Callable[[], MallInfo2] | None:
    """glibc's ``mallinfo2`` (2.33+), or None where the C library has none."""
    libc = _libc()
    function = getattr(libc, "mallinfo2", None)
    if function is None:
        return None
    function.restype = MallInfo2
    function.argtypes = []
    return cast("Callable[[], MallInfo2]", function)


def release_free_memory() -> bool:
    """Give the C heap's free pages back to the system (``malloc_trim(0)``); False where the C
    library cannot (not glibc) or nothing was released."""
    function = getattr(_libc(), "malloc_trim", None)
    if function is None:
        return False
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return bool(function(0))
