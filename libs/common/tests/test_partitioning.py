"""The batch murmur2 picks the partitions Kafka's own clients pick."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given
from hypothesis import strategies as st

from fraudpipe_common.partitioning import murmur2 as batch_murmur2
from fraudpipe_common.partitioning import partitions


@given(keys=st.lists(st.binary(max_size=40), max_size=60), count=st.integers(1, 64))
def test_partitions_equal_the_default_partitioner(keys: list[bytes], count: int) -> None:
    every = list(range(count))
    assert partitions(keys, count) == [DefaultPartitioner()(k, every, every) for k in keys]


def test_known_hashes_of_the_java_client() -> None:
    # Values from the Java client's own murmur2 tests (as signed ints there).
    keys = [b"21", b"foobar", b"a-little-bit-long-string", b"a-little-bit-longer-string"]
    expected = [-973932308, -790332482, -985981536, -1486304829]
    assert batch_murmur2(keys).astype("int32").tolist() == expected
    assert [murmur2(k) for k in keys] == [e & 0xFFFFFFFF for e in expected]
