"""Timers on a live worker: they fire once, on time, are cancelled in time, and survive restarts."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.broker import EmbeddedBroker
from engine.clock import iso, parse_iso_ms
from tests.broker.conftest import deployment
from tests.broker.harness import Kairos


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def of_type(triggers: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [t for t in triggers if t["type"] == f"kairos.trigger.{kind}"]


def settle(seconds: float) -> None:
    time.sleep(seconds)


def test_an_abandoned_cart_fires_once_and_a_cart_checked_out_in_time_never(kairos: Kairos) -> None:
    left, bought = unique("left"), unique("bought")
    kairos.collect(
        "/v1/track", {"userId": left, "event": "Fast Cart Added", "properties": {"cart_id": "c1"}}
    )
    kairos.collect(
        "/v1/track", {"userId": bought, "event": "Fast Cart Added", "properties": {"cart_id": "c9"}}
    )
    kairos.collect(
        "/v1/track", {"userId": bought, "event": "Fast Checkout", "properties": {"cart_id": "c9"}}
    )

    triggers = kairos.wait_triggers(
        {left, bought}, lambda ts: bool(of_type(ts, "fast_cart_reminder"))
    )
    settle(4)  # past the deadline of both carts, and a few more ticks
    triggers = kairos.wait_triggers({left, bought}, lambda ts: False, timeout=0)
    reminders = of_type(triggers, "fast_cart_reminder")
    assert [r["subject"] for r in reminders] == [left]
    [reminder] = reminders
    timer = reminder["data"]["explanation"]["timer"]
    assert reminder["time"] == timer["due_at"]
    assert parse_iso_ms(timer["due_at"]) - parse_iso_ms(timer["armed_at"]) == 3000
    assert reminder["data"]["content"] == {"cart": "c1"}


def test_inactivity_fires_once_and_rearms_when_the_user_comes_back(kairos: Kairos) -> None:
    user = unique("quiet")
    kairos.collect("/v1/track", {"userId": user, "event": "Fast Ping"})
    kairos.wait_triggers({user}, lambda ts: len(of_type(ts, "fast_nudge")) == 1)
    settle(4)
    assert (
        len(of_type(kairos.wait_triggers({user}, lambda ts: False, timeout=0), "fast_nudge")) == 1
    )

    kairos.collect("/v1/track", {"userId": user, "event": "Fast Ping"})
    nudges = of_type(
        kairos.wait_triggers({user}, lambda ts: len(of_type(ts, "fast_nudge")) == 2), "fast_nudge"
    )
    assert len(nudges) == 2
    assert nudges[0]["id"] != nudges[1]["id"]


def test_a_timer_moved_by_a_later_event_fires_at_its_new_time(kairos: Kairos) -> None:
    """A moved timer keeps its old index entry; the tick reaching that entry must index it again
    at its new due time, though nothing fires then (this was lost: the nudge never came)."""
    user = unique("moved")
    kairos.collect("/v1/track", {"userId": user, "event": "Fast Ping"})
    settle(1.5)  # several ticks: the first ping's timer is indexed, then moved by the second
    second_sent = time.time() * 1000
    kairos.collect("/v1/track", {"userId": user, "event": "Fast Ping"})
    [nudge] = of_type(
        kairos.wait_triggers({user}, lambda ts: bool(of_type(ts, "fast_nudge")), timeout=15),
        "fast_nudge",
    )
    timer = nudge["data"]["explanation"]["timer"]
    assert parse_iso_ms(timer["due_at"]) - parse_iso_ms(timer["armed_at"]) == 3000
    assert parse_iso_ms(timer["armed_at"]) >= second_sent  # armed by the second ping


def test_timers_fire_within_a_second_of_their_due_time(kairos: Kairos) -> None:
    user = unique("prompt")
    kairos.collect(
        "/v1/track", {"userId": user, "event": "Fast Cart Added", "properties": {"cart_id": "p"}}
    )
    kairos.wait_triggers({user}, lambda ts: bool(of_type(ts, "fast_cart_reminder")))
    seen_at = time.time() * 1000
    [reminder] = of_type(
        kairos.wait_triggers({user}, lambda ts: False, timeout=0), "fast_cart_reminder"
    )
    lateness = seen_at - parse_iso_ms(reminder["time"])
    assert lateness < 2000  # fired within a second, seen by a polling reader within another
    assert kairos.metric("kairos_timer_lateness_seconds_count") > 0


@pytest.fixture
def lone(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kairos]:
    running = deployment(broker, tmp_path_factory.mktemp("lone"), unique("lone"), workers=1)
    yield running
    running.stop()


def test_a_timer_pending_when_its_worker_stops_fires_exactly_once_on_the_next(lone: Kairos) -> None:
    user = unique("restart")
    event = {"userId": user, "event": "Fast Cart Added", "properties": {"cart_id": "r1"}}
    assert lone.collect("/v1/track", event).status_code == 200
    lone.wait_profile(user)
    lone.workers[0].stop()  # the timer is due in 3 s; this worker will not fire it

    successor = lone.add_worker()  # an empty state directory: it recovers from the changelogs
    successor.wait_ready()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        triggers = lone.wait_triggers({user}, lambda ts: False, timeout=0)
        if of_type(triggers, "fast_cart_reminder"):
            break
        time.sleep(0.5)
    settle(3)  # more ticks: a second firing would show now
    reminders = of_type(
        lone.wait_triggers({user}, lambda ts: False, timeout=0), "fast_cart_reminder"
    )
    assert len(reminders) == 1


def test_replay_fires_the_same_timers_with_the_same_ids(kairos: Kairos, tmp_path: Path) -> None:
    run = unique("treplay")
    now = int(time.time() * 1000)
    events = [
        {
            "type": "track",
            "userId": f"{run}-a",
            "event": "Fast Cart Added",
            "properties": {"cart_id": "x"},
        },
        {
            "type": "track",
            "userId": f"{run}-b",
            "event": "Fast Cart Added",
            "properties": {"cart_id": "y"},
        },
        {
            "type": "track",
            "userId": f"{run}-b",
            "event": "Fast Checkout",
            "properties": {"cart_id": "y"},
        },
        {"type": "track", "userId": f"{run}-c", "event": "Fast Ping"},
    ]
    for i, event in enumerate(events):
        event.update(messageId=f"{run}-{i}", timestamp=iso(now + i))
        assert kairos.collect("/v1/track", event).status_code == 200
    users = {f"{run}-a", f"{run}-b", f"{run}-c"}
    live = kairos.wait_triggers(users, lambda ts: len(ts) >= 2, timeout=20)
    settle(4)
    live = kairos.wait_triggers(users, lambda ts: False, timeout=0)

    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "replay",
        str(events_file),
        "--json",
        "--until",
        "+10s",
        "--rules",
        str(kairos.rules_dir),
    ]
    done = subprocess.run(command, capture_output=True, check=True)
    offline = [orjson.loads(line) for line in done.stdout.splitlines() if b'"specversion"' in line]

    assert sorted(t["id"] for t in live) == sorted(t["id"] for t in offline)
    assert {t["type"] for t in offline} == {
        "kairos.trigger.fast_cart_reminder",
        "kairos.trigger.fast_nudge",
    }


def test_a_successor_with_no_local_state_restores_every_profile_from_the_changelog(
    lone: Kairos,
) -> None:
    """Profiles are written back many users per changelog record; a restore reads them all."""
    run = unique("restore")
    users = [f"{run}-{i}" for i in range(40)]
    batch = [
        {"type": "track", "userId": users[i % len(users)], "event": f"Step {i % 3}"}
        for i in range(400)
    ]
    assert lone.collect("/v1/batch", {"batch": batch}).status_code == 200
    before = {user: lone.wait_profile(user, lambda p: p["events_total"] == 10) for user in users}
    lone.workers[0].stop()

    successor = lone.add_worker()  # an empty state directory: it recovers from the changelogs
    successor.wait_ready()

    def lasting(profile: dict[str, Any]) -> dict[str, Any]:  # counts of windows a test outlives
        counts = {name: windows["30d"] for name, windows in profile["counts"].items()}
        return {**profile, "counts": counts, "engagement_score": None}

    after = {user: lone.wait_profile(user, url=successor.url) for user in users}
    assert {u: lasting(p) for u, p in after.items()} == {u: lasting(p) for u, p in before.items()}
