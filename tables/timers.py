"""The timer index: `engine.timers.timer_key(due, user, timer)` → user key (JSON), per partition.

The timers themselves live in their users' state; this table orders them by due time, so that a
tick reads only the keys due now (a range scan of the partition's RocksDB, from the first key).
Written in the user's partition (Faust writes a table to the current event's partition), so it is
co-partitioned with `kairos.users` and moves, with its changelog, when a partition does.
"""

from __future__ import annotations

from collections.abc import Iterator

import faust

from app import topics
from app.faust_app import app, settings
from engine.timers import due_bound, parse_timer_key

timer_index = app.Table(
    topics.TABLE_TIMERS,
    default=None,
    partitions=settings.partitions,
    # Values are JSON: Faust decodes table values with the app's value serializer on reads.
    schema=faust.Schema(key_type=bytes, key_serializer="raw", value_serializer="json"),
    help="Pending timers ordered by due time",
)


def due_entries(partition: int, now_ms: int) -> Iterator[tuple[bytes, int, str, str]]:
    """(key, due, user, timer id) of every index entry of `partition` due by `now_ms`, in order.

    Reads the partition's RocksDB directly (Faust's store has no range scan): the keys sort by due
    time, so the scan stops at the first key not yet due.
    """
    bound = due_bound(now_ms)
    db = timer_index.data._db_for_partition(partition)  # type: ignore[attr-defined]
    for key in db.keys():  # noqa: SIM118 - a rocksdict, iterated in key order
        if key > bound:
            return
        due, user, timer_id = parse_timer_key(key)
        yield key, due, user, timer_id


def forget(key: bytes) -> None:
    """Remove an index entry, if there (without reading it: a delete needs no decode)."""
    if key in timer_index:
        del timer_index[key]


def count_entries(partitions: set[int]) -> int:
    """Index entries in these partitions (for the pending-timers gauge; O(entries))."""
    total = 0
    for partition in partitions:
        db = timer_index.data._db_for_partition(partition)  # type: ignore[attr-defined]
        total += sum(1 for _ in db.keys())  # noqa: SIM118 - a rocksdict
    return total
