"""Our partitioner agrees with Kafka's Java client and aiokafka, so keys land where others expect."""

from __future__ import annotations

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from prodcat.streams.partitioning import murmur2, partition_for, partitions_for

# org.apache.kafka.common.utils.UtilsTest#testMurmur2
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_java_reference_vectors() -> None:
    for data, expected in JAVA_VECTORS.items():
        assert murmur2(data) == expected, data


@given(st.binary(max_size=300))
def test_same_hash_as_aiokafka(data: bytes) -> None:
    assert murmur2(data) & 0xFFFFFFFF == aiokafka_murmur2(data)


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=1000))
def test_partition_in_range(key: bytes, n: int) -> None:
    assert 0 <= partition_for(key, n) < n


def test_batch_partitioner_matches_the_java_vectors() -> None:
    # Each vector repeated past the size where the batch hashes with arrays, mixed lengths.
    keys = [key for key in JAVA_VECTORS for _ in range(20)]
    for n in (1, 4, 7, 1000):
        assert partitions_for(keys, n) == [partition_for(key, n) for key in keys]
    assert partitions_for([], 4) == []


@given(
    st.lists(st.binary(min_size=0, max_size=9), min_size=1, max_size=200),
    st.integers(min_value=1, max_value=64),
)
def test_batch_partitioner_agrees_with_one_at_a_time(keys: list[bytes], n: int) -> None:
    # Short keys of few lengths, so most lengths reach the array path; every tail length occurs.
    assert partitions_for(keys, n) == [partition_for(key, n) for key in keys]
