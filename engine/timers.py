"""Timers: rules that fire when something does *not* happen, on event time.

A pending timer lives in the user's state (`state["timers"]`, changelogged with the profile) and
in an ordered index keyed by `timer_key(due, user, id)`, so that a tick finds the timers due now by
a range scan, at a cost of O(timers due), never O(users). Every timer fires at its due time, not
at the tick's: what it decides, and the trigger's id, do not depend on when the tick came.

Kinds:
- `absence`: armed by a rule's `when` event, cancelled by its `unless` event (matched on the
  `unless.match` properties, so every cart has its own), fires `within` after arming;
- `inactive`: re-armed by each activity, fires once `inactive_for` after the last one;
- `score`: pending while the engagement score is above `score_below`, due at the moment its
  decay takes it below; an event that raises the score moves it, one that lowers it below fires
  it at once.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NotRequired, TypedDict

import orjson

from engine.profile import UserState

#: Separates the parts of an index key; ids never hold control characters.
SEPARATOR = "\x1f"
#: The arming event's properties are kept for the content of the trigger up to this size.
MAX_KEPT_PROPERTIES = 2048

Kind = Literal["absence", "inactive", "score"]


class Timer(TypedDict):
    rule: str
    kind: Kind
    due: int  # epoch ms, event time
    armed: int  # event time of the record that armed it
    cause: str  # that record's id
    cause_event: str  # its entry name
    match: dict[str, Any]  # absence: the matched property values
    props: dict[str, Any]  # the arming event's properties (empty when too large)
    indexed: NotRequired[int]  # the due time of its index entry (<= due; see `put`)


DUE_DIGITS = 15


def timer_key(due_ms: int, user_key: str, timer_id: str) -> str:
    """The index key: due time first (fixed width), so keys sort by due time."""
    return f"{max(due_ms, 0):0{DUE_DIGITS}d}{SEPARATOR}{user_key}{SEPARATOR}{timer_id}"


def key_due(key: str) -> int:
    return int(key[:DUE_DIGITS])


def parse_timer_key(key: str) -> tuple[int, str, str]:
    due, user, timer_id = key.split(SEPARATOR, 2)
    return int(due), user, timer_id


def absence_id(rule_id: str, match: dict[str, Any]) -> str:
    return f"absence:{rule_id}:{orjson.dumps(match, option=orjson.OPT_SORT_KEYS).decode()}"


def inactive_id(rule_id: str) -> str:
    return f"inactive:{rule_id}"


def score_id(rule_id: str) -> str:
    return f"score:{rule_id}"


def kept_properties(props: dict[str, Any]) -> dict[str, Any]:
    """The properties a timer keeps for its trigger's content (bounded: state stays small)."""
    return props if len(orjson.dumps(props)) <= MAX_KEPT_PROPERTIES else {}


def crossing_ms(value: float, as_of: int, threshold: float, half_life_ms: int) -> int | None:
    """The first millisecond at which a score above `threshold` has decayed below it.

    None when it is not above the threshold: a score exactly at it is not "above" (else one event
    of weight 20 would "fall below 20" a millisecond later).
    """
    if threshold <= 0 or value <= threshold:
        return None
    # The offset alone, then added to as_of as integers: floats near 1e12 lose the last ms.
    return as_of + math.floor(half_life_ms * math.log2(value / threshold)) + 1


class TimerChanges:
    """Index updates a record caused: keys to add and keys to remove."""

    def __init__(self) -> None:
        self.set: list[tuple[int, str]] = []  # (due, timer id)
        self.unset: list[tuple[int, str]] = []

    def extend(self, other: TimerChanges) -> None:
        self.set += other.set
        self.unset += other.unset


def order(cause: list[Any]) -> tuple[int, str]:
    """Which of two records is later, by event time then by id, from `[time, id, ...]`: two
    events of one person in the same millisecond, sent under two ids, may be applied in either
    order live, and the replay applies them in its file's; either way the same one wins."""
    return cause[0], cause[1]


def armed_order(timer: Timer) -> tuple[int, str]:
    """`order` of the record that armed `timer`."""
    return timer["armed"], timer["cause"]


def indexed_at(timer: Timer) -> int:
    return timer.get("indexed", timer["due"])


def put(state: UserState, timer_id: str, timer: Timer, changes: TimerChanges) -> None:
    """Arm (or move) a timer.

    A timer moved *later* keeps its index entry: the tick that reaches the old entry re-indexes
    the timer at its real due time (`reindex`). An active user's inactivity or score timer moves on
    every event; re-indexing it each time would cost two table writes per event instead of one
    per period.
    """
    timers: dict[str, Timer] = state.setdefault("timers", {})  # type: ignore[typeddict-item]
    old = timers.get(timer_id)
    if old is not None:
        if timer["due"] >= indexed_at(old):
            timer["indexed"] = indexed_at(old)
            timers[timer_id] = timer
            return
        changes.unset.append((indexed_at(old), timer_id))
    timer["indexed"] = timer["due"]
    timers[timer_id] = timer
    changes.set.append((timer["due"], timer_id))


def drop(state: UserState, timer_id: str, changes: TimerChanges) -> Timer | None:
    """Cancel (or consume) a timer; returns it, or None when there was none."""
    timers: dict[str, Timer] = state.get("timers", {})  # type: ignore[assignment]
    timer = timers.pop(timer_id, None)
    if timer is not None:
        changes.unset.append((indexed_at(timer), timer_id))
    return timer


def reindex(state: UserState, now_ms: int, changes: TimerChanges) -> None:
    """Move the index entries reached by `now_ms` of timers that are due later (see `put`)."""
    timers: dict[str, Timer] = state.get("timers", {})  # type: ignore[assignment]
    for timer_id, timer in timers.items():
        if indexed_at(timer) <= now_ms < timer["due"]:
            timer["indexed"] = timer["due"]
            changes.set.append((timer["due"], timer_id))


def reached(state: UserState, now_ms: int) -> bool:
    """Whether `now_ms` reaches any of the user's timers: one due, or an index entry to move.

    When it is false, `due_timers` is empty and `reindex` does nothing: every record asks before
    either, and most find nothing.
    """
    timers: dict[str, Timer] = state.get("timers", {})  # type: ignore[assignment]
    return any(t["due"] <= now_ms or t.get("indexed", t["due"]) <= now_ms for t in timers.values())


def due_timers(state: UserState, now_ms: int) -> list[tuple[str, Timer]]:
    """The user's timers due at or before `now_ms`, in the order they fire."""
    timers: dict[str, Timer] = state.get("timers", {})  # type: ignore[assignment]
    due = [(t["due"], timer_id, t) for timer_id, t in timers.items() if t["due"] <= now_ms]
    return [(timer_id, t) for _, timer_id, t in sorted(due, key=lambda item: item[:2])]


#: Cancelling events an absence rule remembers per user (within its `within`), newest kept.
MAX_CANCELS = 20


def note_cancel(
    state: UserState, rule_id: str, match: dict[str, Any], at: int, within: int
) -> None:
    """Remember that an absence rule's `unless` event came at `at` (event time), for `within`.

    Records of one person under two ids (a visitor's anonymousId, then a userId) travel through
    different partitions, so the user can get a checkout before the visitor's cart timer it
    cancels, which comes later with the visitor's history. Remembered, it still cancels it.
    """
    remember_cancels(state, rule_id, [[at, _match_text(match)]], within)


def remember_cancels(state: UserState, rule_id: str, entries: list[Any], within: int) -> None:
    """Add `unless` events as `note_cancel` keeps them ([time, match text]; a merged visitor's, as
    they are), keeping the latest `within` of them, MAX_CANCELS at most."""
    cancels = state.setdefault("cancels", {})
    seen: list[list[Any]] = cancels.setdefault(rule_id, [])
    seen.extend(entries)
    latest = max(entry[0] for entry in seen)
    seen[:] = sorted(entry for entry in seen if entry[0] >= latest - within)[-MAX_CANCELS:]


def cancelled_earlier(state: UserState, timer: Timer) -> bool:
    """Whether a remembered `unless` event, from the arming to the due time, cancels `timer`."""
    seen = state.get("cancels", {}).get(timer["rule"], ())
    text = _match_text(timer["match"])
    return any(timer["armed"] <= at < timer["due"] and match == text for at, match in seen)


def _match_text(match: dict[str, Any]) -> str:
    return orjson.dumps(match, option=orjson.OPT_SORT_KEYS).decode()
