"""Behavioural counts over trailing windows, kept as tumbling buckets inside a user's state.

A counter holds, for each tier, a map of bucket index → events in that bucket. A trailing window
of length W is answered from the finest tier that still remembers W, by summing every bucket that
overlaps [now - W, now]. So a count never misses an event inside the window and may include events
up to one bucket older than it (at most a minute for windows up to 2 hours, an hour up to 3 days,
a day up to 90 days). Buckets older than their tier's retention are dropped when the counter is
written, so a counter's size is bounded whatever the traffic.

Why buckets in the user record rather than Faust windowed tables: a windowed table writes one key
(and one changelog record) per user, event name and window on every event; one record per user
lets an agent write each user once per batch, and counts filtered by event properties cost one
more counter in the same record.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.clock import DAY_MS, HOUR_MS, MINUTE_MS

#: A counter: tier name → {bucket index (as text, to stay JSON) → count}.
Counter = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Tier:
    name: str
    bucket_ms: int
    retention_ms: int


TIERS: tuple[Tier, ...] = (
    Tier("m", MINUTE_MS, 2 * HOUR_MS),
    Tier("h", HOUR_MS, 3 * DAY_MS),
    Tier("d", DAY_MS, 90 * DAY_MS),
)
#: The tiers as (name, bucket ms, retention ms), for `add`, which every event calls.
_TIER_FIELDS = tuple((tier.name, tier.bucket_ms, tier.retention_ms) for tier in TIERS)
#: The longest trailing window a count can answer exactly.
MAX_WINDOW_MS = TIERS[-1].retention_ms


class WindowTooLong(ValueError):
    """A trailing window longer than counters remember."""


def tier_for(window_ms: int) -> Tier:
    """The finest tier that remembers a trailing window of `window_ms`."""
    for tier in TIERS:
        if window_ms <= tier.retention_ms:
            return tier
    raise WindowTooLong(
        f"windows are limited to {MAX_WINDOW_MS // DAY_MS} days, got {window_ms // DAY_MS} days"
    )


def add(counter: Counter, at_ms: int, horizon_ms: int, amount: int = 1) -> Counter:
    """Count `amount` events at `at_ms`, then forget buckets too old for each tier.

    `horizon_ms` is the latest event time the user has reached; retention is measured from it
    (not from the wall clock), so replaying the same events gives the same counter.
    """
    for name, bucket_ms, retention_ms in _TIER_FIELDS:
        buckets = counter.get(name)
        if buckets is None:  # (not setdefault: that builds a dict on every call)
            buckets = counter[name] = {}
        oldest = (horizon_ms - retention_ms) // bucket_ms
        index = at_ms // bucket_ms
        if index >= oldest:
            slot = str(index)
            buckets[slot] = buckets.get(slot, 0) + amount
        _prune(buckets, oldest)
    return counter


def merge(into: Counter, other: Counter, horizon_ms: int) -> Counter:
    """Add every bucket of `other` to `into` (merging two profiles), then prune."""
    for tier in TIERS:
        buckets = into.setdefault(tier.name, {})
        for slot, amount in other.get(tier.name, {}).items():
            buckets[slot] = buckets.get(slot, 0) + amount
        _prune(buckets, (horizon_ms - tier.retention_ms) // tier.bucket_ms)
    return into


def count(counter: Counter | None, window_ms: int, now_ms: int) -> int:
    """Events in the trailing window (now - window_ms, now], rounded out to whole buckets."""
    return count_in(tier_for(window_ms), counter, window_ms, now_ms)


def count_in(tier: Tier, counter: Counter | None, window_ms: int, now_ms: int) -> int:
    """`count`, with the tier of the window already chosen (`tier_for`)."""
    if not counter:
        return 0
    first = (now_ms - window_ms) // tier.bucket_ms
    last = now_ms // tier.bucket_ms
    return sum(n for slot, n in counter.get(tier.name, {}).items() if first <= int(slot) <= last)


def _prune(buckets: dict[str, int], oldest_index: int) -> None:
    # Most calls find nothing to forget: the oldest bucket, found in one pass in C, says so.
    if buckets and min(map(int, buckets)) < oldest_index:
        for slot in [slot for slot in buckets if int(slot) < oldest_index]:
            del buckets[slot]
