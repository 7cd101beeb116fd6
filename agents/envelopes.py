"""Envelopes on Kairos's internal topics: many records per Kafka message, one partition each.

Faust pays ~0.3 ms per message it sends or reads, whatever its size; records bound for the same
partition of `kairos.identity` or `kairos.users` therefore travel together, as a JSON array, in
the order they were added. A single JSON object is one record, as other senders (ticks, merges,
CRM updates, older workers) write them; readers accept both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Mapping
from typing import Any

import orjson
from faust.types import TopicT

from app.chunks import chunked
from app.partitioning import partition_of

#: Records per message at most (and app.chunks.MESSAGE_BYTES of them).
MAX_RECORDS = 200


class Envelopes:
    """Records collected for one topic during a batch, grouped by the partition of their key."""

    def __init__(self, topic: TopicT, partitions: int) -> None:
        self.topic = topic
        self.partitions = partitions
        #: Serialized records by partition, in the order added.
        self.by_partition: defaultdict[int, list[bytes]] = defaultdict(list)

    def add(self, record: Mapping[str, Any]) -> None:
        partition = partition_of(record["key"], self.partitions)
        self.by_partition[partition].append(orjson.dumps(record))

    async def send(self) -> list[Awaitable[Any]]:
        """Send what was added, a message per partition (more past the size limits); clear.

        Returns the messages' delivery futures, for a caller that must know they were written
        before it records having sent them.
        """
        sent = []
        for partition, records in self.by_partition.items():
            for group in chunked(records, max_items=MAX_RECORDS):
                value = b"[%s]" % b",".join(group)
                sent.append(await self.topic.send(value=value, partition=partition))
        self.by_partition.clear()
        return sent


def unpack(value: bytes | None) -> list[Any]:
    """The records of one message: an envelope's list, or a single record."""
    decoded = orjson.loads(value or b"")
    return decoded if isinstance(decoded, list) else [decoded]
