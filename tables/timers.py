"""The timer index: `engine.timers.timer_key(due, user, timer)` → user key, per partition.

The timers themselves live in their users' state; this table orders them by due time, so that a
tick reads only the keys due now (a range scan of the partition's RocksDB, from the first key).
Written in the user's partition, so it is co-partitioned with `kairos.users` and moves, with its
changelog, when a partition does; written back once per batch like the profiles
(tables/written_back.py). An entry still in flight is seen by a tick only once written, so a timer
armed less than a batch before it is due may fire one tick late; an entry deleted in flight may
still be scanned, and is harmless: firing reads the user's own timers.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from app import topics
from engine.timers import key_due, parse_timer_key
from tables.written_back import written_back_table

#: JSON keys, like every table: Faust's changelog recovery decodes keys as JSON whatever the
#: table's serializer (raw keys made a restarted worker's recovery fail). A JSON string keeps the
#: fixed-width due time first, so encoded keys still sort by due time.
timer_index = written_back_table(topics.TABLE_TIMERS, help="Pending timers ordered by due time")


def due_entries(partition: int, now_ms: int) -> Iterator[tuple[str, int, str, str]]:
    """(key, due, user, timer id) of every index entry of `partition` due by `now_ms`, in order.

    Reads the partition's RocksDB directly (Faust's store has no range scan): keys sort by due
    time, so the scan stops at the first key not yet due.
    """
    for raw in timer_index.db(partition).keys():  # noqa: SIM118 - a rocksdict, iterated in key order
        if not raw.startswith(b'"'):
            # Faust's own `__faust\0offset__` key sorts after every JSON string: no entry follows.
            return
        key = orjson.loads(raw)
        if key_due(key) > now_ms:
            return
        due, user, timer_id = parse_timer_key(key)
        yield key, due, user, timer_id


def add(partition: int, key: str, user: str) -> None:
    timer_index.stage(partition, key, user)


def forget(partition: int, key: str) -> None:
    """Remove an index entry, if there."""
    timer_index.stage(partition, key, None)


def count_entries(partitions: set[int]) -> int:
    """Index entries in these partitions (for the pending-timers gauge; O(entries))."""
    total = 0
    for partition in partitions:
        keys = timer_index.db(partition).keys()
        total += sum(1 for raw in keys if raw.startswith(b'"'))  # not Faust's offset key
    return total
