"""A user holds its records from a merge's `await` until the anonymous history arrives, and
holds a hand-over that came before its `await` until the `await` (agents/merging.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from agents import merging
from app.intake import event_record
from app.replay import replay
from app.rule_files import load_rulebook
from engine.clock import MINUTE_MS, iso
from engine.identity import resolve
from engine.profile import UserState, profile_view
from engine.records import merge_record
from engine.rules import process

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rules"
T0 = 1_795_000_000_000


def record(n: int) -> dict[str, Any]:
    return {"kind": "event", "key": "u", "id": f"e{n}"}


def absorb(merge: str) -> dict[str, Any]:
    return {"kind": "absorb", "key": "u", "id": merge, "source_key": "anon:a", "state": {}}


def linked(
    visits: list[tuple[dict[str, Any], int]], login: dict[str, Any], at: int, book: Any
) -> tuple[Any, Any, dict[str, Any]]:
    """What the live pipeline sends for the visitor "a" linked to "u" by `login` at `at`, after
    its `visits`: the anonymous profile's hand-over, the linking record, and its `await`."""
    anonymous = None
    for event, when in visits:
        anonymous = process(anonymous, event_record(event, when), book).state
    linking = event_record(login, at)
    resolution = resolve(linking["event"], None)
    assert resolution.merge_from == "anon:a"
    merge = merge_record(resolution.merge_from, "u")
    [hand_over] = process(anonymous, merge, book).applied.forward
    linking["key"] = "u"
    return hand_over, linking, merging.await_record("u", merge["id"])


def arrive_all(state: UserState, *records: dict[str, Any]) -> list[Any]:
    return [ready for r in records for ready in merging.arrive(state, r)]


def test_records_held_while_waiting_come_back_in_order_after_the_absorb() -> None:
    state: UserState = {"key": "u"}
    assert arrive_all(state, record(0), merging.await_record("u", "m1")) == [record(0)]
    assert merging.waiting(state)
    assert arrive_all(state, record(1), record(2)) == []
    assert merging.arrive(state, absorb("m1")) == [absorb("m1"), record(1), record(2)]
    assert not merging.waiting(state)
    assert "parked" not in state and "awaiting" not in state
    assert merging.arrive(state, record(3)) == [record(3)]


def test_a_release_ends_the_wait_and_applies_nothing_itself() -> None:
    state: UserState = {"key": "u"}
    assert arrive_all(state, merging.await_record("u", "m1"), record(1)) == []
    assert merging.arrive(state, merging.release_record("u", "m1")) == [record(1)]


def test_a_hand_over_before_its_await_is_applied_after_the_linking_record() -> None:
    # A worker killed while sending the identity agent's records: the merge went out, the
    # user's records are sent again after the anonymous profile has handed over.
    state: UserState = {"key": "u"}
    assert merging.arrive(state, absorb("m1")) == []
    assert not merging.waiting(state)
    assert merging.arrive(state, record(0)) == [record(0)]  # the linking record
    assert merging.arrive(state, merging.await_record("u", "m1")) == [absorb("m1")]
    assert not merging.waiting(state) and "early" not in state
    assert merging.arrive(state, record(1)) == [record(1)]


def test_a_release_before_its_await_does_not_leave_the_user_waiting() -> None:
    state: UserState = {"key": "u"}
    assert merging.arrive(state, merging.release_record("u", "m1")) == []
    assert merging.arrive(state, merging.await_record("u", "m1")) == []
    assert not merging.waiting(state)


def test_an_await_or_a_hand_over_sent_again_after_the_merge_is_over() -> None:
    state: UserState = {"key": "u"}
    arrive_all(state, merging.await_record("u", "m1"), absorb("m1"))
    # The absorb again goes to the core, which drops it by its id; the await waits for nothing.
    assert merging.arrive(state, absorb("m1")) == [absorb("m1")]
    assert merging.arrive(state, merging.await_record("u", "m1")) == []
    assert not merging.waiting(state) and "early" not in state
    assert merging.arrive(state, merging.release_record("u", "m1")) == []


def test_a_second_merge_linked_while_waiting_for_the_first_keeps_the_replays_order() -> None:
    # Replay order: link 1, absorb 1, x, link 2, absorb 2. The second absorb overtakes the
    # first here, and the second await is held with the records that precede it.
    state: UserState = {"key": "u"}
    link1, x, link2 = record(1), record(2), record(3)
    got = arrive_all(
        state,
        link1,
        merging.await_record("u", "m1"),
        x,
        link2,
        merging.await_record("u", "m2"),
        absorb("m2"),
        absorb("m1"),
    )
    assert got == [link1, absorb("m1"), x, link2, absorb("m2")]
    assert not merging.waiting(state) and "early" not in state


def test_a_user_holding_too_many_records_stops_waiting_and_merges_a_late_hand_over() -> None:
    state: UserState = {"key": "u"}
    merging.arrive(state, merging.await_record("u", "m1"))
    got = arrive_all(state, *(record(n) for n in range(merging.MAX_PARKED)))
    assert got == [record(n) for n in range(merging.MAX_PARKED)]
    assert not merging.waiting(state)
    assert merging.arrive(state, absorb("m1")) == [absorb("m1")]


def test_remembered_merges_are_bounded() -> None:
    state: UserState = {"key": "u"}
    for n in range(merging.MAX_HANDED + 10):
        arrive_all(state, merging.await_record("u", f"m{n}"), absorb(f"m{n}"))
    assert len(state["handed"]) == merging.MAX_HANDED
    assert state["handed"][-1] == f"m{merging.MAX_HANDED + 9}"


def test_the_live_order_with_a_hand_over_before_its_await_ends_as_the_replay() -> None:
    """The crash test's case: a visitor's score timer, and an identify that re-arms it."""
    book = load_rulebook(EXAMPLES)
    visit = {  # a score of 20 + 2, above reengage_low_score's 20: a score timer is pending
        "type": "track",
        "anonymousId": "a",
        "event": "Order Completed",
        "messageId": "m-visit",
        "properties": {"order_id": "o1", "total": 10},
    }
    view = {**visit, "event": "Product Viewed", "messageId": "m-view", "properties": {}}
    login = {
        "type": "identify",
        "anonymousId": "a",
        "userId": "u",
        "messageId": "m-login",
        "traits": {"email": "u@example.com"},
    }
    lines = []
    for at, event in ((T0, visit), (T0 + MINUTE_MS, view), (T0 + 5 * MINUTE_MS, login)):
        lines.append(orjson.dumps({**event, "timestamp": iso(at)}))
    replayed = replay(lines, book)
    now = T0 + 10 * MINUTE_MS
    expected = profile_view(replayed.states["u"], now, book.score_half_life_ms)

    def score_timer(view: dict[str, Any]) -> dict[str, Any]:
        [timer] = [t for t in view["pending_timers"] if t["kind"] == "score"]
        return timer

    assert score_timer(expected)["armed_by"] == "Product Viewed"

    # Live: the visitor's event, then the merge at the anonymous profile; its absorb reaches the
    # user before the linking identify and the await, which a killed worker sent again.
    visits = [(visit, T0), (view, T0 + MINUTE_MS)]
    arrivals = list(linked(visits, login, T0 + 5 * MINUTE_MS, book))

    def live(hold: bool) -> dict[str, Any]:
        state: UserState = {"key": "u", "events": 0, "traits": {}, "recent": [], "seen": []}
        for arrival in arrivals:
            for ready in merging.arrive(state, arrival) if hold else [arrival]:
                if ready["kind"] != "await":
                    state = process(state, ready, book).state
        return profile_view(state, now, book.score_half_life_ms)

    assert live(hold=True) == expected
    # Applied on arrival, the absorb comes before the identify, which re-arms the timer.
    assert score_timer(live(hold=False))["armed_by"] == "Identify"


def test_a_checkout_that_overtakes_the_visitors_cart_still_cancels_its_timer() -> None:
    """A visitor adds to a cart, identifies, and checks out as the user. The checkout is keyed by
    the userId, the rest by the anonymousId: through other partitions, it can reach the user
    before the link and the visitor's history, which brings the cart timer."""
    book = load_rulebook(EXAMPLES)
    added = {
        "type": "track",
        "anonymousId": "a",
        "event": "Product Added",
        "messageId": "m1",
        "properties": {"cart_id": "k"},
    }
    login = {"type": "identify", "anonymousId": "a", "userId": "u", "messageId": "m2"}
    order = {
        "type": "track",
        "userId": "u",
        "event": "Order Completed",
        "messageId": "m3",
        "properties": {"cart_id": "k"},
    }
    lines = [
        orjson.dumps({**event, "timestamp": iso(T0 + 100 * n)})
        for n, event in enumerate((added, login, order), start=1)
    ]
    now = T0 + MINUTE_MS
    expected = profile_view(replay(lines, book).states["u"], now, book.score_half_life_ms)
    assert {t["rule"] for t in expected["pending_timers"]} == {"inactive_24h", "reengage_low_score"}

    hand_over, linking, wait = linked([(added, T0 + 100)], login, T0 + 200, book)
    checkout = {**event_record(order, T0 + 300), "key": "u"}
    state: UserState = {"key": "u", "events": 0, "traits": {}, "recent": [], "seen": []}
    for arrival in [checkout, linking, wait, hand_over]:
        for ready in merging.arrive(state, arrival):
            if ready["kind"] != "await":
                outcome = process(state, ready, book)
                assert outcome.triggers == []
                state = outcome.state
    # No cart timer (the checkout cancels it), and the score timer both scores together arm.
    assert profile_view(state, now, book.score_half_life_ms) == expected


def test_an_older_event_does_not_move_a_timer_a_later_one_armed() -> None:
    book = load_rulebook(EXAMPLES)
    viewed = {"type": "track", "userId": "u", "event": "Page Viewed", "properties": {}}
    later = process(None, {**event_record({**viewed, "messageId": "b"}, T0 + MINUTE_MS)}, book)
    state = process(later.state, event_record({**viewed, "messageId": "a"}, T0), book).state
    [inactive] = [t for t in state["timers"].values() if t["kind"] == "inactive"]
    assert inactive["armed"] == T0 + MINUTE_MS  # the user was last active then, not at T0
