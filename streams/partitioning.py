"""Key → partition exactly as the Java client, librdkafka's murmur2 partitioner and aiokafka do."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``) as a signed 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n_words = length // 4
    for k in struct.unpack_from(f"<{n_words}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        base = n_words * 4
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` (Java's ``toPositive(murmur2(key)) % n``)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


#: Below this many keys of one length, hashing them one by one is cheaper than with arrays.
_VECTOR_MIN = 16
_M32 = np.uint32(_M)


def partitions_for(keys: Sequence[bytes], partitions: int) -> list[int]:
    """``partition_for`` of every key, hashed column-wise with numpy per key length (a batch of
    product ids costs ~0.2 µs a key instead of ~3)."""
    out = [0] * len(keys)
    by_length: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(index)
    for length, indices in by_length.items():
        if len(indices) < _VECTOR_MIN:
            for index in indices:
                out[index] = partition_for(keys[index], partitions)
            continue
        hashes = _murmur2_same_length([keys[i] for i in indices], length)
        for index, value in zip(
            indices, ((hashes & 0x7FFFFFFF) % partitions).tolist(), strict=True
        ):
            out[index] = value
    return out


def _murmur2_same_length(keys: list[bytes], length: int) -> np.ndarray:
    """Unsigned murmur2 of keys that are all ``length`` bytes long (uint32 arithmetic wraps)."""
    rows = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), length)
    n_words = length // 4
    h = np.full(len(keys), (_SEED ^ length) & _MASK, dtype=np.uint32)
    if n_words:
        words = np.ascontiguousarray(rows[:, : n_words * 4]).view("<u4")
        for column in range(n_words):
            k = words[:, column] * _M32
            k ^= k >> np.uint32(24)
            k *= _M32
            h *= _M32
            h ^= k
    tail = length & 3
    if tail:
        base = n_words * 4
        if tail == 3:
            h ^= rows[:, base + 2].astype(np.uint32) << np.uint32(16)
        if tail >= 2:
            h ^= rows[:, base + 1].astype(np.uint32) << np.uint32(8)
        h ^= rows[:, base].astype(np.uint32)
        h *= _M32
    h ^= h >> np.uint32(13)
    h *= _M32
    h ^= h >> np.uint32(15)
    return h
