"""Profiles agent: apply records to users' state, decide with the rules, fire due timers.

Reads `kairos.users` (keyed by user; a message is one record or an envelope of many, see
agents/envelopes.py). A batch is grouped by user; each user's state is read once, every record of
the batch goes through `engine.rules.process` in order, the triggers are sent, and the changed
states are written back together once they are delivered (tables/profiles.py). Each state keeps the
position of the last record applied to it, so records Faust replays are applied once.

Ticks are records on the same topic, one per partition every `KAIROS_TIMER_TICK` seconds, sent by
the worker that owns the partition. Handling them here, inside stream iteration, is what lets a
fired timer write its user's state and the timer index (Faust refuses table writes from
`@app.timer`); the index gives the timers due, so a tick costs O(timers due), not O(users).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable
from typing import Any, cast

import orjson
from faust.types import EventT, StreamT

from agents import merging
from agents.batching import batches
from agents.dead_letters import dead_letter
from agents.envelopes import Envelopes, unpack
from app.faust_app import app, rulebook, settings, triggers_topic, users_topic
from app.metrics import (
    BATCH_SECONDS,
    EVENTS_DUPLICATE,
    EVENTS_PROCESSED,
    PROCESSING_SECONDS,
    PROFILE_MERGES,
    TEMPLATE_FALLBACKS,
    TIMER_LATENESS,
    TIMER_TICK_SECONDS,
    TIMERS_CANCELLED,
    TIMERS_FIRED,
    TIMERS_PENDING,
    TRIGGERS_PUBLISHED,
    TRIGGERS_SUPPRESSED,
)
from app.topics import USERS
from engine.profile import UserState, new_state
from engine.records import UserRecord
from engine.rules import RENDER_FAILED, Outcome, fire_due, process
from engine.timers import timer_key
from tables.profiles import profiles
from tables.timers import add, count_entries, due_entries, forget, timer_index

log = logging.getLogger(__name__)

TICK = "tick"
USERS_TOPIC = users_topic.get_topic_name()


def _label(record: UserRecord) -> str:
    if record["kind"] == "event":
        return str(record["event"].get("type", "event"))
    if record["kind"] == "traits":
        return record.get("origin", "traits")
    return record["kind"]


@app.agent(users_topic, name="update_profiles")
async def update_profiles(stream: StreamT[Any]) -> None:
    async for batch in batches(stream):
        started = time.perf_counter()
        by_user: dict[str, list[Item]] = defaultdict(list)
        ticks: dict[int, tuple[EventT[Any], int]] = {}
        for event in batch:
            try:
                records = unpack(event.message.value)
            except ValueError as exc:
                await dead_letter(event, USERS, "processing_error", f"undecodable: {exc!r}")
                continue
            for index, record in enumerate(records):
                if isinstance(record, dict) and record.get("kind") == TICK:
                    ticks[event.message.partition] = (event, int(record["now"]))
                elif isinstance(record, dict) and isinstance(record.get("key"), str):
                    by_user[record["key"]].append((event, index, cast(UserRecord, record)))
                else:
                    reason = "undecodable: not a record"
                    original = orjson.dumps(record)
                    await dead_letter(event, USERS, "processing_error", reason, original)
        sent: list[Awaitable[Any]] = []
        forwards = Envelopes(users_topic, settings.partitions)
        for key, items in by_user.items():
            await _apply(key, items, sent, forwards)
        for tick_event, now_ms in ticks.values():
            try:
                await _tick(tick_event, now_ms, sent)
            except Exception as exc:  # a failing tick must not stop the partition's records
                log.error("timer tick failed: %s", type(exc).__name__)
                log.debug("timer tick failed", exc_info=True)
        # Triggers, forwarded records (a merged profile's state, calls redirected to their user)
        # and timer index entries are written before the states that remember them: a crash in
        # between re-sends them (same ids) rather than losing them.
        sent += await forwards.send()
        sent += await timer_index.flush()
        if sent:
            await asyncio.gather(*sent)
        await profiles.flush()
        BATCH_SECONDS.labels(stage="profiles").observe(time.perf_counter() - started)


#: A record of a batch, with the message it came in and its index in that message.
Item = tuple[EventT[Any], int, UserRecord]


def _position(event: EventT[Any], index: int) -> list[int]:
    return [event.message.offset, index]


async def _apply(
    key: str, items: list[Item], sent: list[Awaitable[Any]], forwards: Envelopes
) -> None:
    partition = items[0][0].message.partition
    state: UserState = profiles.read(partition, key) or new_state(key)
    changed = False
    for event, index, record in items:
        position = _position(event, index)
        if position <= state.get("applied", [-1, -1]):
            # Faust replays what it had not committed when a worker stopped or a partition
            # moved: this record is already in the state.
            EVENTS_DUPLICATE.inc()
            continue
        changed = True
        for ready in merging.arrive(state, record):
            state = await _apply_one(key, partition, state, event, ready, sent, forwards)
        state["applied"] = position
    if changed:
        profiles.stage(partition, key, state)


async def _apply_one(
    key: str,
    partition: int,
    state: UserState,
    event: EventT[Any],
    record: UserRecord,
    sent: list[Awaitable[Any]],
    forwards: Envelopes,
) -> UserState:
    """Apply one record with the rules: publish, index timers, forward; the new state."""
    try:
        outcome = process(state, record, rulebook)
    except Exception as exc:  # one bad record must not stop its partition
        # The exception's text may quote user data: its type only above DEBUG.
        log.error("profile update failed: %s", type(exc).__name__)
        log.debug("profile update failed", exc_info=True)
        reason = f"profile: {exc!r}"
        await dead_letter(event, USERS, "processing_error", reason, orjson.dumps(record))
        return state
    applied = outcome.applied
    state = applied.state
    sent += await _publish(outcome)
    _index(partition, key, outcome)
    if record["kind"] == "merge" and not any(f["kind"] == "absorb" for f in applied.forward):
        # The user waits for this merge: with nothing to hand over, say so.
        forwards.add(merging.release_record(record["into"], record["id"]))
    if applied.duplicate:
        EVENTS_DUPLICATE.inc()
        return state
    for forward in applied.forward:
        forwards.add(forward)
    if "merged_into" in state and record["kind"] in ("event", "traits"):
        return state  # forwarded to the user it was merged into, and counted there
    EVENTS_PROCESSED.labels(type=_label(record)).inc()
    if record["kind"] == "absorb":
        PROFILE_MERGES.inc()
    ingested = cast(dict[str, Any], record).get("ingested")
    if ingested is not None:
        PROCESSING_SECONDS.observe(max(0.0, time.time() - ingested / 1000))
    return state


async def _tick(event: EventT[Any], now_ms: int, sent: list[Awaitable[Any]]) -> None:
    """Fire every timer of this partition due by `now_ms`."""
    started = time.perf_counter()
    partition = event.message.partition
    due_by_user: dict[str, list[str]] = defaultdict(list)
    for key, _, user, _ in due_entries(partition, now_ms):
        due_by_user[user].append(key)
    for user, keys in due_by_user.items():
        state: UserState | None = profiles.read(partition, user)
        if merging.waiting(state):
            continue  # fired once its records are applied (a record fires what is due first)
        for key in keys:  # fired now, or left behind by a timer since moved or cancelled
            forget(partition, key)
        if state is None:
            continue
        outcome = fire_due(state, now_ms, rulebook)
        if not (outcome.fired or outcome.timers.set or outcome.timers.unset):
            continue
        # Also when nothing fired: a timer an event moved later had kept its old index entry,
        # just forgotten above, and is indexed again at its due time (engine.timers.put).
        sent += await _publish(outcome)
        _index(partition, user, outcome)
        profiles.stage(partition, user, outcome.state)
    TIMER_TICK_SECONDS.observe(time.perf_counter() - started)


def _index(partition: int, user: str, outcome: Outcome) -> None:
    """Bring the timer index in line with the user's timers (before the state is written)."""
    for due, timer_id in outcome.timers.unset:
        forget(partition, timer_key(due, user, timer_id))
    for due, timer_id in outcome.timers.set:
        add(partition, timer_key(due, user, timer_id), user)
    if outcome.cancelled:
        TIMERS_CANCELLED.inc(outcome.cancelled)
    wall_ms = time.time() * 1000
    for _, timer in outcome.fired:
        TIMERS_FIRED.labels(kind=timer["kind"]).inc()
        TIMER_LATENESS.observe(max(0.0, (wall_ms - timer["due"]) / 1000))


async def _publish(outcome: Outcome) -> list[Awaitable[Any]]:
    """Send the outcome's triggers; returns their delivery futures."""
    sent = []
    for trigger in outcome.triggers:
        data = trigger["data"]
        value = orjson.dumps(trigger)
        sent.append(await triggers_topic.send(key=trigger["subject"].encode(), value=value))
        TRIGGERS_PUBLISHED.labels(rule=data["rule_id"], channel=data["channel"]).inc()
        if data["explanation"]["content_source"] != "content":
            TEMPLATE_FALLBACKS.labels(rule=data["rule_id"]).inc()
            log.warning("rule %s: content failed to render; sent its fallback", data["rule_id"])
    for held in outcome.suppressed:
        TRIGGERS_SUPPRESSED.labels(rule=held.rule_id, reason=held.reason).inc()
        if held.reason == RENDER_FAILED:
            log.warning("rule %s: content failed to render and has no fallback", held.rule_id)
    return sent


def _owned_partitions() -> set[int]:
    if app.assignor is None:
        return set()
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == USERS_TOPIC}


@app.timer(interval=settings.timer_tick)  # type: ignore[untyped-decorator]
async def send_ticks() -> None:
    """A tick to each partition of `kairos.users` this worker owns (see the module's docstring)."""
    if app.rebalancing:
        return
    tick = orjson.dumps({"kind": TICK, "now": int(time.time() * 1000)})
    for partition in _owned_partitions():
        await users_topic.send(value=tick, partition=partition)


@app.timer(interval=60.0)  # type: ignore[untyped-decorator]
async def count_pending_timers() -> None:
    TIMERS_PENDING.set(count_entries(_owned_partitions()))
