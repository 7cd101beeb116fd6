"""Tables written back once per batch, with many keys per changelog record.

A Faust table sends one changelog record per key written, at ~110 µs each; with many users nearly
every event writes a different key, so that cost bounded a worker to ~1.5k events/s. These tables
are written back instead: an agent stages each changed value during a batch and `flush()` sends,
per partition, one changelog record holding every value the batch changed. A value reaches
RocksDB only once its changelog record is acknowledged, and until then reads are served from
memory, so RocksDB never holds what the changelog lacks: a worker that restarts with its RocksDB,
and one that restores a partition from the changelog, end with the same values.

The changelog's records are JSON objects {key: value, or null for a deleted key}, at most
app.chunks.MESSAGE_BYTES each, under keys unique per record (a compacted topic would have to keep
them all: see docs/deployment.md). Faust's recovery and standby replicas hand them to
`apply_changelog_batch`, which writes each value under its own RocksDB key, as Faust would have.

A partition's changelog records are sent one at a time: each waits until the one before it is
acknowledged, so no produce batch ever holds two of them. The embedded broker reports a
partition's end offset as the first offset of its last batch + 1, and Faust's recovery reads up
to that end: with one record per batch it is exact, while the rest of Kairos's traffic (triggers,
envelopes) is batched as the producer likes.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Iterable
from functools import partial
from typing import Any

import faust
import orjson
import rocksdict
from faust.types import TP, EventT

from app.chunks import chunked
from app.faust_app import app, settings
from app.partitioning import key_bytes, partition_of


class WrittenBackTable(faust.Table):  # type: ignore[misc,type-arg]
    """A table written back once per batch: many keys per changelog record (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Staged by the current batch, not yet sent: partition → key → value (None: deleted).
        self._dirty: defaultdict[int, dict[str, Any]] = defaultdict(dict)
        #: Sent and not yet acknowledged: partition → key → (value, flush number).
        self._in_flight: defaultdict[int, dict[str, tuple[Any, int]]] = defaultdict(dict)
        #: The last changelog record sent per partition: the next one waits for it (docstring).
        self._last_sent: dict[int, Awaitable[Any]] = {}
        self._flushes = itertools.count(1)
        #: Makes changelog keys unique across restarts of this worker (see the module docstring).
        self._incarnation = time.time_ns()

    def db(self, partition: int) -> Any:
        """The partition's RocksDB (rocksdict, raw mode): Faust's store API has no batch writes."""
        return self.data._db_for_partition(partition)  # type: ignore[attr-defined]

    def read(self, partition: int, key: str) -> Any:
        """The key's latest value: staged, in flight, or in RocksDB (None if it has none)."""
        dirty = self._dirty.get(partition)
        if dirty and key in dirty:
            return dirty[key]
        sent = self._in_flight.get(partition)
        if sent and key in sent:
            return sent[key][0]
        raw = self.db(partition).get(key_bytes(key))
        return None if raw is None else orjson.loads(raw)

    def read_owned(self, key: str) -> Any:
        """The key's value, read outside stream iteration (the HTTP API)."""
        return self.read(partition_of(key, self.partitions or settings.partitions), key)

    def stage(self, partition: int, key: str, value: Any) -> None:
        """Record the key's new value (None deletes it); it is written by the next `flush`."""
        self._dirty[partition][key] = value

    async def flush(self) -> list[Awaitable[Any]]:
        """Send each partition's staged values as one changelog record; RocksDB follows the ack.

        The agent calls this at the end of every batch, before Faust acknowledges the batch's
        events: Faust flushes the producer before it commits their offsets, so a committed
        offset never covers a change the changelog lacks. Returns the records' delivery futures.
        """
        sent = []
        for partition, values in self._dirty.items():
            if not values:
                continue
            flush = next(self._flushes)
            in_flight = self._in_flight[partition]
            encoded = {}
            for key, value in values.items():
                in_flight[key] = (value, flush)
                # Serialized now: the engine updates states in place, and the record must hold
                # what this batch ended with.
                encoded[key] = orjson.dumps(value)
            entries = iter(encoded.items())
            pairs = [key_bytes(key) + b":" + value for key, value in encoded.items()]
            for part, group in enumerate(chunked(pairs)):
                written = dict(itertools.islice(entries, len(group)))  # the group's own entries
                previous = self._last_sent.get(partition)
                if previous is not None:
                    await previous
                fut = await self.changelog_topic.send(
                    key=f"{partition}:{self._incarnation}:{flush}:{part}",
                    value=b"{%s}" % b",".join(group),
                    partition=partition,
                    key_serializer="json",
                    value_serializer="raw",
                    callback=partial(
                        self._written, partition=partition, flush=flush, encoded=written
                    ),
                )
                self._last_sent[partition] = fut
                sent.append(fut)
        self._dirty.clear()
        return sent

    def _written(self, fut: Any, partition: int, flush: int, encoded: dict[str, bytes]) -> None:
        """The changelog has the record: write its values to RocksDB and forget them here."""
        metadata = fut.result()
        self._write(partition, encoded)
        self.data.set_persisted_offset(metadata.topic_partition, metadata.offset)
        in_flight = self._in_flight[partition]
        for key in encoded:
            if key in in_flight and in_flight[key][1] == flush:
                del in_flight[key]

    def _write(self, partition: int, encoded: dict[str, bytes]) -> None:
        """Values (JSON; `null` deletes) into the partition's RocksDB, in one write batch."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in encoded.items():
            if value == b"null":
                batch.delete(key_bytes(key))
            else:
                batch.put(key_bytes(key), value)
        self.db(partition).write(batch)

    def apply_changelog_batch(self, batch: Iterable[EventT[Any]]) -> None:
        """Recovery and standbys: each changelog record holds many keys' values."""
        offsets: dict[TP, int] = {}
        for event in batch:
            message = event.message
            offsets[message.tp] = max(message.offset, offsets.get(message.tp, -1))
            if message.value is not None:
                values = orjson.loads(message.value)
                encoded = {key: orjson.dumps(value) for key, value in values.items()}
                self._write(message.partition, encoded)
        for tp, offset in offsets.items():
            self.data.set_persisted_offset(tp, offset)

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        # Values of partitions given away are the new owner's to change: forget ours.
        for tp in revoked:
            self._dirty.pop(tp.partition, None)
            self._in_flight.pop(tp.partition, None)
            self._last_sent.pop(tp.partition, None)
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)


def written_back_table(name: str, help: str) -> WrittenBackTable:
    """A written-back table of the app, keyed by JSON strings, with JSON values."""
    table = WrittenBackTable(
        app,
        name=name,
        default=None,
        beacon=app.tables.beacon,
        partitions=settings.partitions,
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
        help=help,
    )
    app.tables.add(table)
    return table
