"""The timer index: `engine.timers.timer_key(due, user, timer)` → user key, per partition.

The timers themselves live in their users' state; this table orders them by due time, so that a
tick reads only the keys due now (a range scan of the partition's RocksDB, from the first key).
Written in the user's partition (Faust writes a table to the current event's partition), so it is
co-partitioned with `kairos.users` and moves, with its changelog, when a partition does.
"""

from __future__ import annotations

from collections.abc import Iterator

import faust
import orjson

from app import topics
from app.faust_app import app, settings
from engine.timers import key_due, parse_timer_key

timer_index = app.Table(
    topics.TABLE_TIMERS,
    default=None,
    partitions=settings.partitions,
    # JSON keys and values, like every table: Faust's changelog recovery decodes keys as JSON
    # whatever the table's serializer (raw keys made a restarted worker's recovery fail). A JSON
    # string keeps the fixed-width due time first, so encoded keys still sort by due time.
    schema=faust.Schema(
        key_type=str, value_type=str, key_serializer="json", value_serializer="json"
    ),
    help="Pending timers ordered by due time",
)


def due_entries(partition: int, now_ms: int) -> Iterator[tuple[str, int, str, str]]:
    """(key, due, user, timer id) of every index entry of `partition` due by `now_ms`, in order.

    Reads the partition's RocksDB directly (Faust's store has no range scan): keys sort by due
    time, so the scan stops at the first key not yet due.
    """
    db = timer_index.data._db_for_partition(partition)  # type: ignore[attr-defined]
    for raw in db.keys():  # noqa: SIM118 - a rocksdict, iterated in key order
        key = orjson.loads(raw)
        if key_due(key) > now_ms:
            return
        due, user, timer_id = parse_timer_key(key)
        yield key, due, user, timer_id


def forget(key: str) -> None:
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
