"""Which partition of a co-partitioned topic (and table) a key belongs to.

The same computation as Kafka's default partitioner over the key's JSON bytes, which is what
Faust's producer and its `table_route` use: records Kairos groups into envelopes by this partition
land where a single record sent with that key would, and `GET /users/{id}` finds their owner.
"""

from __future__ import annotations

from functools import lru_cache

import orjson
from aiokafka.partitioner import murmur2


def key_bytes(key: str) -> bytes:
    """A table or topic key as Faust serializes it (its JSON codec is orjson): the RocksDB key."""
    return orjson.dumps(key)


# aiokafka's murmur2 is pure Python (~10 µs); keys repeat, so a bounded cache pays for itself.
@lru_cache(maxsize=1 << 18)
def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` (sent with Faust's JSON key codec)."""
    hashed: int = murmur2(key_bytes(key))
    return (hashed & 0x7FFFFFFF) % partitions
