"""The worker's memory series tell C-heap bytes from Python objects, as they change."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from prodcat.core.metrics import MemoryCollector, _mallinfo2


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


@pytest.mark.skipif(_mallinfo2() is None, reason="the C library has no mallinfo2 (not glibc)")
def test_a_native_buffer_shows_as_c_heap_in_use_and_objects_as_python_blocks() -> None:
    registry = CollectorRegistry()
    MemoryCollector(registry)
    heap_before = _sample(registry, "prodcat_process_malloc_bytes", kind="in_use")
    blocks_before = _sample(registry, "prodcat_python_allocated_blocks")
    buffer = bytearray(64 * 2**20)  # one malloc of 64 MiB (mmapped by glibc)
    objects = [object() for _ in range(100_000)]
    heap_after = _sample(registry, "prodcat_process_malloc_bytes", kind="in_use")
    blocks_after = _sample(registry, "prodcat_python_allocated_blocks")
    assert heap_after - heap_before >= 60 * 2**20
    assert blocks_after - blocks_before >= 90_000
    assert _sample(registry, "prodcat_process_malloc_bytes", kind="free") >= 0
    assert _sample(registry, "prodcat_process_threads") >= 1
    del buffer, objects
    assert (
        _sample(registry, "prodcat_process_malloc_bytes", kind="in_use") < heap_after - 60 * 2**20
    )
