"""Profiles agent: apply events, CRM records, profile updates and merges to users' state.

Reads `kairos.users` (keyed by user). A batch is grouped by user; each user's state is read once,
every record of the batch applied in order by the pure core, and the state written back once.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any, cast

import orjson
from faust.types import EventT, StreamT

from agents.batching import batches, focus
from agents.dead_letters import dead_letter
from app.faust_app import app, rulebook, triggers_topic, users_topic
from app.metrics import (
    BATCH_SECONDS,
    EVENTS_DUPLICATE,
    EVENTS_PROCESSED,
    PROCESSING_SECONDS,
    PROFILE_MERGES,
    TEMPLATE_FALLBACKS,
    TRIGGERS_PUBLISHED,
    TRIGGERS_SUPPRESSED,
)
from app.topics import USERS
from engine.profile import UserState
from engine.records import UserRecord
from engine.rules import RENDER_FAILED, Outcome, process
from tables.profiles import profiles

log = logging.getLogger(__name__)


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
        by_user: dict[str, list[tuple[EventT[Any], UserRecord]]] = defaultdict(list)
        for event in batch:
            try:
                record: UserRecord = orjson.loads(event.message.value or b"")
                by_user[record["key"]].append((event, record))
            except (ValueError, KeyError, TypeError) as exc:
                await dead_letter(event, USERS, "processing_error", f"undecodable: {exc!r}")
        now = time.time()
        for key, items in by_user.items():
            focus(items[-1][0])
            state: UserState | None = profiles.get(key)
            changed = False
            for event, record in items:
                try:
                    outcome = process(state, record, rulebook)
                except Exception as exc:  # one bad record must not stop its partition
                    log.exception("profile update failed")
                    await dead_letter(event, USERS, "processing_error", f"profile: {exc!r}")
                    continue
                applied = outcome.applied
                state = applied.state
                # Triggers go out before the state that remembers them is written: a crash in
                # between re-sends them with the same ids rather than losing them.
                await _publish(outcome)
                if applied.duplicate:
                    EVENTS_DUPLICATE.inc()
                    continue
                changed = True
                EVENTS_PROCESSED.labels(type=_label(record)).inc()
                if record["kind"] == "absorb":
                    PROFILE_MERGES.inc()
                ingested = cast(dict[str, Any], record).get("ingested")
                if ingested is not None:
                    PROCESSING_SECONDS.observe(max(0.0, now - ingested / 1000))
                for forward in applied.forward:
                    await users_topic.send(key=forward["key"], value=orjson.dumps(forward))
            if changed and state is not None:
                profiles[key] = state
        BATCH_SECONDS.labels(stage="profiles").observe(time.perf_counter() - started)


async def _publish(outcome: Outcome) -> None:
    for trigger in outcome.triggers:
        data = trigger["data"]
        await triggers_topic.send(key=trigger["subject"].encode(), value=orjson.dumps(trigger))
        TRIGGERS_PUBLISHED.labels(rule=data["rule_id"], channel=data["channel"]).inc()
        if data["explanation"]["content_source"] != "content":
            TEMPLATE_FALLBACKS.labels(rule=data["rule_id"]).inc()
            log.warning("rule %s: content failed to render; sent its fallback", data["rule_id"])
    for held in outcome.suppressed:
        TRIGGERS_SUPPRESSED.labels(rule=held.rule_id, reason=held.reason).inc()
        if held.reason == RENDER_FAILED:
            log.warning("rule %s: content failed to render and has no fallback", held.rule_id)
