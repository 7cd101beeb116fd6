"""Offline replay: the live pipeline's pure core over a JSONL file of Segment events, no broker.

Each line is one Segment-spec event or a `{"batch": [...]}` envelope, as on `kairos.events`. Lines
go through the same intake (validation, ids, event time), identity resolution and
`engine.rules.process` as in a worker, on an event-time clock, so a replay gives the triggers a
live run gives for the same events, with the same ids.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.intake import Rejected, event_record
from engine.clock import parse_iso_ms
from engine.identity import resolve
from engine.profile import UserState
from engine.records import UserRecord, merge_record
from engine.rules import Outcome, RuleBook, Suppression, fire_due, process
from engine.timers import indexed_at


@dataclass
class ReplayResult:
    triggers: list[dict[str, Any]] = field(default_factory=list)
    suppressed: list[Suppression] = field(default_factory=list)
    events: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    states: dict[str, UserState] = field(default_factory=dict)
    timers_fired: int = 0
    timers_pending: int = 0


class Replay:
    """The pipeline's state in memory: identity links and user states."""

    def __init__(self, book: RuleBook) -> None:
        self.book = book
        self.links: dict[str, str] = {}
        self.result = ReplayResult(states={})
        self.clock_ms = 0
        #: Every timer armed so far, by due time: (due, user, timer id). Entries of timers since
        #: cancelled or moved stay until popped, and are recognized then.
        self.timers: list[tuple[int, str, str]] = []

    def feed_line(self, line: bytes, number: int) -> None:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            self.result.rejected.append((number, f"not valid JSON: {exc}"))
            return
        items = (
            obj["batch"] if isinstance(obj, dict) and isinstance(obj.get("batch"), list) else [obj]
        )
        for i, item in enumerate(items):
            where = f"batch[{i}]" if items is not obj and len(items) > 1 else ""
            try:
                record = event_record(item, self._received(item), where=where)
            except Rejected as exc:
                self.result.rejected.append((number, exc.reason))
                continue
            self.result.events += 1
            self.advance(record["ts"])  # the event-time clock: what was due before it fires first
            self.clock_ms = max(self.clock_ms, record["ts"])
            self._resolve(record)

    def _received(self, item: Any) -> int:
        """The receive time a live run would have seen: the event's own, else the clock."""
        if isinstance(item, dict):
            for name in ("receivedAt", "timestamp", "originalTimestamp"):
                value = item.get(name)
                if isinstance(value, str):
                    try:
                        return parse_iso_ms(value)
                    except ValueError:
                        continue
        return self.clock_ms

    def _resolve(self, record: Any) -> None:
        identity = record["key"]
        resolution = resolve(record["event"], self.links.get(identity))
        queue: deque[UserRecord] = deque()
        if resolution.merge_from is not None:
            queue.append(merge_record(resolution.merge_from, resolution.user_key))
        record["key"] = resolution.user_key
        queue.append(record)
        if resolution.link is not None:
            self.links[identity] = resolution.link
        while queue:
            item = queue.popleft()
            outcome = process(self.result.states.get(item["key"]), item, self.book)
            self.result.states[item["key"]] = outcome.state
            self._collect(item["key"], outcome)
            queue.extend(outcome.applied.forward)

    def _collect(self, user: str, outcome: Outcome) -> None:
        self.result.triggers += outcome.triggers
        self.result.suppressed += outcome.suppressed
        self.result.timers_fired += len(outcome.fired)
        for due, timer_id in outcome.timers.set:
            heapq.heappush(self.timers, (due, user, timer_id))

    def advance(self, now_ms: int) -> None:
        """Move the clock to `now_ms`: every timer due by then fires, in due order."""
        while self.timers and self.timers[0][0] <= now_ms:
            due, user, timer_id = heapq.heappop(self.timers)
            state = self.result.states.get(user)
            timer = (state or {}).get("timers", {}).get(timer_id)
            if state is None or timer is None or indexed_at(timer) != due:
                continue  # cancelled, or moved earlier, since
            self._collect(user, fire_due(state, due, self.book))
        self.clock_ms = max(self.clock_ms, now_ms)

    def pending(self) -> int:
        return sum(len(s.get("timers", {})) for s in self.result.states.values())


def replay(
    lines: Iterable[bytes],
    book: RuleBook,
    progress: Callable[[int], None] | None = None,
    until: Callable[[int], int] | None = None,
) -> ReplayResult:
    """Replay every line through the rules; `progress` is told the line count as it goes.

    `until`, given the time of the last event, says how far to move the clock after the last
    line, so that timers pending then fire (by default the clock stops at the last event).
    """
    run = Replay(book)
    for number, line in enumerate(lines, start=1):
        if line.strip():
            run.feed_line(line, number)
        if progress is not None and number % 1000 == 0:
            progress(number)
    if until is not None:
        run.advance(until(run.clock_ms))
    run.result.timers_pending = run.pending()
    return run.result


def trigger_key(trigger: dict[str, Any]) -> tuple[str, str, str]:
    """What a trigger is about, whatever the rule's version: (rule, user, causing record)."""
    data = trigger["data"]
    return data["rule_id"], data["user_id"], data["explanation"]["cause"]["id"]


def diff(before: ReplayResult, after: ReplayResult) -> tuple[list[Any], list[Any]]:
    """Triggers the second rule set adds, and those it removes, compared by `trigger_key`."""
    old = {trigger_key(t): t for t in before.triggers}
    new = {trigger_key(t): t for t in after.triggers}
    added = [new[k] for k in sorted(new.keys() - old.keys())]
    removed = [old[k] for k in sorted(old.keys() - new.keys())]
    return added, removed
