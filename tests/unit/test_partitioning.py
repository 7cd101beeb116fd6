"""Envelopes land where Faust would have sent each record; tables read the keys it wrote."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from faust.serializers import codecs

from app.partitioning import key_bytes, partition_of

KEYS = ["user-1", "anon:3f2a", "é", 'quote"d', "nul\x00byte", "line\u2028sep", "😀", "tab\tand/"]


@pytest.mark.parametrize("key", KEYS)
def test_key_bytes_are_fausts_json_key_bytes(key: str) -> None:
    assert key_bytes(key) == codecs.dumps("json", key)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("partitions", [1, 8, 13])
def test_partition_is_kafkas_default_partitioner_over_the_json_key(
    key: str, partitions: int
) -> None:
    every = list(range(partitions))
    expected = DefaultPartitioner()(codecs.dumps("json", key), every, every)
    assert partition_of(key, partitions) == expected
