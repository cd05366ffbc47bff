"""Giving the C heap's free pages back to the system (glibc malloc_trim)."""

from __future__ import annotations

import os

import pytest

from prodcat.core.memory import mallinfo, release_free_memory


def _rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(mallinfo() is None, reason="the C library has no mallinfo2 (not glibc)")
def test_freed_blocks_held_between_live_ones_leave_the_resident_set() -> None:
    """~230 MiB of 4 KB blocks, one in sixteen kept: the rest is free inside the heap (glibc
    cannot shrink past the live blocks) and stays resident until it is trimmed."""
    info = mallinfo()
    assert info is not None
    blocks = [bytes(4000) + bytes([i % 256]) for i in range(60_000)]
    kept = blocks[::16]
    del blocks
    held = info().fordblks / 2**20
    before = _rss_mib()
    assert held > 150, held
    assert release_free_memory()
    after = _rss_mib()
    assert before - after > 100, (before, after)
    assert len(kept) == 3750
