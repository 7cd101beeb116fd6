"""Specifications of timers: rules that fire when something does not happen, on event time.

Engine level: engine.timers (index keys, crossing time) and the timed rules of engine.rules
(absence `when`/`unless`/`within`, `inactive_for`, `score_below`), on records built as dicts.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from engine import score
from engine.clock import DAY_MS, HOUR_MS, MINUTE_MS, iso
from engine.profile import UserState
from engine.records import AbsorbRecord, EventRecord, MergeRecord, UserRecord, merge_id
from engine.rules import Outcome, RuleBook, RuleSetError, compile_rulebook, fire_due, process
from engine.timers import (
    SEPARATOR,
    absence_id,
    crossing_ms,
    inactive_id,
    key_due,
    parse_timer_key,
    score_id,
    timer_key,
)
from schemas.rules import RuleFile
from schemas.triggers import Trigger

T0 = 1_714_557_600_000  # 2024-05-01T10:00:00.000Z
WEEK_MS = 7 * DAY_MS
USER = "u1"

CART = """
rules:
  - id: cart_abandoned
    when:
      event: Product Added
    unless:
      event: Order Completed
      match: [cart_id]
    within: 30m
    then:
      type: cart_reminder
      channel: email
      content:
        subject: "Still thinking about {{ event.properties.name | default: 'your cart' }}?"
        cart_id: "{{ event.properties.cart_id | default: '' }}"
"""

PAID_CHECKOUT = """
rules:
  - id: unpaid_cart
    when:
      event: Product Added
      where: [{property: currency, value: EUR}]
    unless:
      event: Order Completed
      where: [{property: status, value: paid}]
      match: [cart_id]
    within: 1h
    then: {type: cart_reminder, channel: email}
"""

INACTIVE = """
rules:
  - id: inactive_24h
    when:
      inactive_for: 24h
    then: {type: comeback_nudge, channel: push}
"""

INACTIVE_SHOES = """
rules:
  - id: no_shoes
    when:
      inactive_for: 2d
      event: Product Viewed
      where: [{property: category, value: shoes}]
    then: {type: shoes_nudge, channel: push}
"""

SCORING = """
engagement_score:
  half_life: 7d
  weights:
    - {event: Product Added, weight: 5}
    - {event: Order Completed, weight: 20}
    - {event: Subscription Cancelled, weight: -30}
"""

REENGAGE = """
rules:
  - id: reengage_low_score
    when:
      score_below: 20
    then: {type: reengagement, channel: email}
"""


# --- builders -----------------------------------------------------------------------------------


def book(*texts: str) -> RuleBook:
    return compile_rulebook([RuleFile.model_validate(yaml.safe_load(text)) for text in texts])


def call(rid: str, ts: int, kind: str, key: str = USER, **fields: Any) -> EventRecord:
    event: dict[str, Any] = {"type": kind, "messageId": rid, **fields}
    if key.startswith("anon:"):
        event["anonymousId"] = key.removeprefix("anon:")
    else:
        event["userId"] = key
    return {"kind": "event", "key": key, "id": rid, "ts": ts, "ingested": ts, "event": event}


def track(rid: str, ts: int, name: str, /, key: str = USER, **props: Any) -> EventRecord:
    return call(rid, ts, "track", key, event=name, properties=props)


def page(rid: str, ts: int, path: str = "/", key: str = USER) -> EventRecord:
    return call(rid, ts, "page", key, properties={"path": path})


def identify(rid: str, ts: int, **traits: Any) -> EventRecord:
    return call(rid, ts, "identify", traits=traits)


class User:
    """One user's state threaded through `process` and `fire_due`."""

    def __init__(self, rules: RuleBook, state: UserState | None = None) -> None:
        self.book = rules
        self.state = state

    def feed(self, record: UserRecord) -> Outcome:
        outcome = process(self.state, record, self.book)
        self.state = outcome.state
        return outcome

    def tick(self, now_ms: int) -> Outcome:
        assert self.state is not None
        return fire_due(self.state, now_ms, self.book)

    @property
    def timers(self) -> dict[str, Any]:
        return dict((self.state or {}).get("timers", {}))


def cart_timer(cart: str, rule: str = "cart_abandoned") -> str:
    return absence_id(rule, {"cart_id": cart})


def valid(outcome: Outcome) -> list[dict[str, Any]]:
    for trigger in outcome.triggers:
        Trigger.model_validate(trigger)
    return outcome.triggers


# --- index keys ---------------------------------------------------------------------------------

DUES = st.integers(min_value=0, max_value=10**15 - 1)
# Ids never hold control characters (engine.identity rejects them; JSON escapes them in ids).
IDS = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from("|:"),
    max_size=20,
)
TRIPLES = st.lists(st.tuples(DUES, IDS, IDS), max_size=30)
#: How the index table may store a key: as is, or JSON-encoded (orjson, or ASCII-escaped JSON).
ENCODINGS: list[Callable[[str], Any]] = [
    lambda key: key,
    orjson.dumps,
    lambda key: json.dumps(key).encode(),
]


@pytest.mark.parametrize("encode", ENCODINGS, ids=["str", "orjson", "json"])
@given(items=TRIPLES)
def test_index_keys_sort_by_due_time_first(
    encode: Callable[[str], Any], items: list[tuple[int, str, str]]
) -> None:
    ordered = sorted(items, key=lambda item: encode(timer_key(*item)))
    dues = [due for due, _, _ in ordered]
    assert dues == sorted(dues)


@given(items=TRIPLES, now=DUES)
def test_a_scan_in_key_order_stopping_at_the_first_key_not_due_finds_every_due_timer(
    items: list[tuple[int, str, str]], now: int
) -> None:
    found = []
    for key in sorted(timer_key(*item) for item in items):
        if key_due(key) > now:
            break
        found.append(parse_timer_key(key))
    assert sorted(found) == sorted(item for item in items if item[0] <= now)


@given(DUES, IDS, IDS)
def test_parse_timer_key_inverts_timer_key(due: int, user: str, timer_id: str) -> None:
    key = timer_key(due, user, timer_id)
    assert parse_timer_key(key) == (due, user, timer_id)
    assert key_due(key) == due


def test_parse_timer_key_reads_ids_with_pipes_colons_and_unicode() -> None:
    timer_id = absence_id("cart_abandoned", {"cart_id": "c|1:✓"})
    key = timer_key(T0, "anon:ada|ü", timer_id)
    assert parse_timer_key(key) == (T0, "anon:ada|ü", timer_id)


def test_absence_ids_escape_control_characters_of_matched_values() -> None:
    timer_id = absence_id("r", {"cart_id": f"c{SEPARATOR}1"})
    assert SEPARATOR not in timer_id
    assert parse_timer_key(timer_key(T0, USER, timer_id)) == (T0, USER, timer_id)


def test_absence_ids_do_not_depend_on_the_order_of_matched_properties() -> None:
    assert absence_id("r", {"a": 1, "b": 2}) == absence_id("r", {"b": 2, "a": 1})
    assert absence_id("r", {"a": 1}) != absence_id("r", {"a": 2})
    assert absence_id("r", {"a": 1}) != absence_id("s", {"a": 1})


def test_timer_ids_name_their_kind_and_rule() -> None:
    assert inactive_id("r") == "inactive:r"
    assert score_id("r") == "score:r"


# --- crossing time ------------------------------------------------------------------------------


def test_a_score_twice_the_threshold_crosses_it_one_half_life_later() -> None:
    assert crossing_ms(40, T0, 20, WEEK_MS) == T0 + WEEK_MS + 1


@pytest.mark.parametrize(
    ("value", "threshold"), [(20, 20), (19.99, 20), (0, 20), (-5, 20), (40, 0), (40, -1)]
)
def test_no_crossing_unless_the_score_is_above_a_positive_threshold(
    value: float, threshold: float
) -> None:
    assert crossing_ms(value, T0, threshold, WEEK_MS) is None


@given(
    st.floats(min_value=0.01, max_value=1e6),
    st.floats(min_value=1.0001, max_value=1e4),
    st.integers(min_value=1000, max_value=365 * DAY_MS),
    st.integers(min_value=0, max_value=4 * 10**12),
)
def test_the_crossing_is_when_the_score_is_below_the_threshold_never_earlier(
    threshold: float, ratio: float, half_life: int, as_of: int
) -> None:
    value = threshold * ratio
    at = crossing_ms(value, as_of, threshold, half_life)
    assert at is not None and at > as_of
    stored = [value, float(as_of)]
    assert score.value_at(stored, at, half_life) < threshold
    # At most a millisecond late (the exact first millisecond: see the next test).
    assert score.value_at(stored, at - 2, half_life) >= threshold


def test_the_crossing_is_the_first_millisecond_below_the_threshold() -> None:
    # The exact crossing is 1_099_511_627_776.9999 (found by hypothesis): the first ms below is
    # ..._777, but the sum rounds to ..._777.0 and crossing_ms says ..._778.
    value, as_of, threshold, half_life = 3191.6443255946347, 1_099_511_417_592, 1.0, 18_057
    at = crossing_ms(value, as_of, threshold, half_life)
    assert at is not None
    stored = [value, float(as_of)]
    assert score.value_at(stored, at, half_life) < threshold
    assert score.value_at(stored, at - 1, half_life) >= threshold


# --- absence: when / unless / within ------------------------------------------------------------


def test_the_when_event_arms_a_timer_due_within_later() -> None:
    user = User(book(CART))
    outcome = user.feed(track("m1", T0, "Product Added", cart_id="c1"))
    assert outcome.timers.set == [(T0 + 30 * MINUTE_MS, cart_timer("c1"))]
    assert outcome.timers.unset == []
    timer = user.timers[cart_timer("c1")]
    assert timer["kind"] == "absence"
    assert timer["due"] == T0 + 30 * MINUTE_MS
    assert (timer["armed"], timer["cause"], timer["cause_event"]) == (T0, "m1", "Product Added")
    assert timer["match"] == {"cart_id": "c1"}


def test_timed_rules_publish_nothing_when_their_timer_is_armed() -> None:
    user = User(book(CART, INACTIVE, SCORING, REENGAGE))
    outcome = user.feed(track("m1", T0, "Order Completed", cart_id="c0"))
    outcome = user.feed(track("m2", T0, "Product Added", cart_id="c1"))
    assert outcome.triggers == [] and outcome.suppressed == []
    assert set(user.timers) == {
        cart_timer("c1"),
        inactive_id("inactive_24h"),
        score_id("reengage_low_score"),
    }


def test_the_unless_event_for_the_same_cart_cancels_the_timer() -> None:
    user = User(book(CART))
    user.feed(track("m1", T0, "Product Added", cart_id="c1"))
    outcome = user.feed(track("m2", T0 + 10 * MINUTE_MS, "Order Completed", cart_id="c1"))
    assert outcome.cancelled == 1
    assert outcome.timers.unset == [(T0 + 30 * MINUTE_MS, cart_timer("c1"))]
    assert outcome.triggers == []
    assert user.timers == {}
    assert user.tick(T0 + DAY_MS).triggers == []


def test_the_unless_event_for_another_cart_does_not_cancel() -> None:
    user = User(book(CART))
    user.feed(track("m1", T0, "Product Added", cart_id="c1"))
    outcome = user.feed(track("m2", T0 + 10 * MINUTE_MS, "Order Completed", cart_id="c2"))
    assert outcome.cancelled == 0
    assert outcome.timers.unset == []
    assert list(user.timers) == [cart_timer("c1")]


def test_a_second_when_for_the_same_cart_moves_the_deadline() -> None:
    user = User(book(CART))
    user.feed(track("m1", T0, "Product Added", cart_id="c1"))
    outcome = user.feed(track("m2", T0 + 10 * MINUTE_MS, "Product Added", cart_id="c1"))
    timer_id = cart_timer("c1")
    # Moved later: the index entry stays at the old deadline (no table write for the move)...
    assert outcome.timers.unset == [] and outcome.timers.set == []
    assert user.timers[timer_id]["due"] == T0 + 40 * MINUTE_MS
    assert user.timers[timer_id]["cause"] == "m2"
    # ...and the tick that reaches it re-indexes the timer at its real deadline, firing nothing.
    at_old_deadline = user.tick(T0 + 30 * MINUTE_MS)
    assert at_old_deadline.triggers == []
    assert at_old_deadline.timers.set == [(T0 + 40 * MINUTE_MS, timer_id)]
    assert len(user.tick(T0 + 40 * MINUTE_MS).triggers) == 1


def test_each_cart_has_its_own_timer() -> None:
    user = User(book(CART))
    user.feed(track("m1", T0, "Product Added", cart_id="c1"))
    outcome = user.feed(track("m2", T0 + MINUTE_MS, "Product Added", cart_id="c2"))
    assert outcome.timers.set == [(T0 + 31 * MINUTE_MS, cart_timer("c2"))]
    assert set(user.timers) == {cart_timer("c1"), cart_timer("c2")}
    user.feed(track("m3", T0 + 2 * MINUTE_MS, "Order Completed", cart_id="c1"))
    assert list(user.timers) == [cart_timer("c2")]


def test_the_when_where_filters_which_events_arm_the_timer() -> None:
    user = User(book(PAID_CHECKOUT))
    outcome = user.feed(track("m1", T0, "Product Added", cart_id="c1", currency="USD"))
    assert outcome.timers.set == [] and user.timers == {}
    outcome = user.feed(track("m2", T0, "Product Added", cart_id="c1", currency="EUR"))
    assert outcome.timers.set == [(T0 + HOUR_MS, cart_timer("c1", "unpaid_cart"))]


def test_the_unless_where_filters_which_events_cancel_the_timer() -> None:
    user = User(book(PAID_CHECKOUT))
    user.feed(track("m1", T0, "Product Added", cart_id="c1", currency="EUR"))
    pending = user.feed(track("m2", T0 + 1, "Order Completed", cart_id="c1", status="failed"))
    assert pending.cancelled == 0 and len(user.timers) == 1
    paid = user.feed(track("m3", T0 + 2, "Order Completed", cart_id="c1", status="paid"))
    assert paid.cancelled == 1 and user.timers == {}


def test_an_absence_timer_fires_at_its_due_time_with_its_explanation() -> None:
    user = User(book(CART))
    user.feed(track("m1", T0, "Product Added", cart_id="c1", name="Lamp"))
    due = T0 + 30 * MINUTE_MS
    assert user.tick(due - 1).triggers == []
    outcome = user.tick(due)
    [trigger] = valid(outcome)
    assert [timer_id for timer_id, _ in outcome.fired] == [cart_timer("c1")]
    assert outcome.timers.unset == [(due, cart_timer("c1"))]
    assert trigger["time"] == iso(due)
    assert trigger["subject"] == USER
    assert trigger["type"] == "kairos.trigger.cart_reminder"
    data = trigger["data"]
    assert data["content"] == {"subject": "Still thinking about Lamp?", "cart_id": "c1"}
    assert data["explanation"]["timer"] == {
        "kind": "absence",
        "armed_at": iso(T0),
        "due_at": iso(due),
        "armed_by": {"id": "m1", "event": "Product Added"},
    }
    assert data["explanation"]["conditions"][0].startswith(
        "no Order Completed with cart_id = 'c1' within 30m of Product Added"
    )
    assert user.timers == {}


def test_a_tick_fires_a_timer_at_its_due_time_whenever_the_tick_comes() -> None:
    early, late = User(book(CART)), User(book(CART))
    for user in (early, late):
        user.feed(track("m1", T0, "Product Added", cart_id="c1"))
    [on_time] = early.tick(T0 + 30 * MINUTE_MS).triggers
    [delayed] = late.tick(T0 + 5 * HOUR_MS).triggers
    assert on_time == delayed
    assert delayed["time"] == iso(T0 + 30 * MINUTE_MS)


def test_timer_trigger_ids_are_deterministic_and_differ_by_arming_event() -> None:
    def reminder_id(message_id: str, at: int) -> str:
        user = User(book(CART))
        user.feed(track(message_id, at, "Product Added", cart_id="c1"))
        [trigger] = user.tick(at + DAY_MS).triggers
        return str(trigger["id"])

    assert reminder_id("m1", T0) == reminder_id("m1", T0)
    assert reminder_id("m1", T0) != reminder_id("m2", T0)
    assert reminder_id("m1", T0) != reminder_id("m1", T0 + MINUTE_MS)


def test_timers_of_a_removed_rule_are_consumed_without_firing() -> None:
    user = User(book(CART))
    user.feed(track("m1", T0, "Product Added", cart_id="c1"))
    user.book = book(INACTIVE)
    outcome = user.tick(T0 + HOUR_MS)
    assert outcome.triggers == [] and outcome.fired == []
    assert cart_timer("c1") not in user.timers


# --- inactivity ---------------------------------------------------------------------------------


def test_each_activity_moves_the_single_inactivity_timer() -> None:
    user = User(book(INACTIVE))
    timer_id = inactive_id("inactive_24h")
    first = user.feed(page("m1", T0))
    assert first.timers.set == [(T0 + DAY_MS, timer_id)]
    second = user.feed(track("m2", T0 + HOUR_MS, "Product Viewed", product_id="A"))
    assert second.timers.unset == [] and second.timers.set == []  # index entry kept (lazy)
    assert user.timers[timer_id]["due"] == T0 + HOUR_MS + DAY_MS
    assert list(user.timers) == [timer_id]
    assert user.tick(T0 + DAY_MS).timers.set == [(T0 + HOUR_MS + DAY_MS, timer_id)]


def test_a_non_behavioural_call_is_not_activity() -> None:
    user = User(book(INACTIVE))
    user.feed(page("m1", T0))
    outcome = user.feed(identify("m2", T0 + HOUR_MS, plan="pro"))
    assert outcome.timers.set == [] and outcome.timers.unset == []
    assert user.timers[inactive_id("inactive_24h")]["due"] == T0 + DAY_MS


def test_only_events_matching_the_inactivity_entry_are_activity() -> None:
    user = User(book(INACTIVE_SHOES))
    timer_id = inactive_id("no_shoes")
    user.feed(track("m1", T0, "Product Viewed", category="shoes"))
    assert user.timers[timer_id]["due"] == T0 + 2 * DAY_MS
    for i, record in enumerate(
        [
            track("m2", T0 + HOUR_MS, "Product Viewed", category="hats"),
            track("m3", T0 + HOUR_MS, "Product Added", category="shoes"),
            page("m4", T0 + HOUR_MS, "/shoes"),
        ]
    ):
        outcome = user.feed(record)
        assert outcome.timers.set == [] and outcome.timers.unset == [], i
    assert user.timers[timer_id]["due"] == T0 + 2 * DAY_MS
    user.feed(track("m5", T0 + DAY_MS, "Product Viewed", category="shoes"))
    assert user.timers[timer_id]["due"] == T0 + 3 * DAY_MS


def test_inactivity_fires_once_then_waits_for_the_next_activity() -> None:
    user = User(book(INACTIVE))
    user.feed(page("m1", T0))
    user.feed(page("m2", T0 + HOUR_MS))
    due = T0 + HOUR_MS + DAY_MS
    assert user.tick(due - 1).triggers == []
    outcome = user.tick(due)
    [trigger] = valid(outcome)
    assert trigger["time"] == iso(due)
    assert trigger["data"]["explanation"]["timer"]["kind"] == "inactive"
    assert trigger["data"]["explanation"]["timer"]["armed_by"] == {
        "id": "m2",
        "event": "Page Viewed",
    }
    assert user.timers == {}
    assert user.tick(due + DAY_MS).triggers == []
    assert user.tick(due + 30 * DAY_MS).triggers == []
    rearmed = user.feed(page("m3", due + 10 * DAY_MS))
    assert rearmed.timers.set == [(due + 11 * DAY_MS, inactive_id("inactive_24h"))]
    assert len(user.tick(due + 11 * DAY_MS).triggers) == 1


# --- score_below --------------------------------------------------------------------------------


def test_a_score_above_the_threshold_leaves_a_timer_at_its_crossing_time() -> None:
    user = User(book(SCORING, REENGAGE))
    user.feed(track("m1", T0, "Order Completed"))
    outcome = user.feed(track("m2", T0, "Order Completed"))  # 40
    timer_id = score_id("reengage_low_score")
    assert user.timers[timer_id]["due"] == T0 + WEEK_MS + 1
    assert outcome.timers.set[-1] == (T0 + WEEK_MS + 1, timer_id)


def test_the_score_timer_fires_when_decay_takes_the_score_below() -> None:
    user = User(book(SCORING, REENGAGE))
    user.feed(track("m1", T0, "Order Completed"))
    user.feed(track("m2", T0, "Order Completed"))
    due = T0 + WEEK_MS + 1
    assert user.tick(due - 1).triggers == []
    outcome = user.tick(due)
    [trigger] = valid(outcome)
    assert trigger["time"] == iso(due)
    explanation = trigger["data"]["explanation"]
    assert explanation["timer"]["kind"] == "score"
    assert explanation["timer"]["armed_by"] == {"id": "m2", "event": "Order Completed"}
    assert explanation["engagement_score"] == pytest.approx(20, abs=0.001)
    assert score.value_at(user.state["score"], due, WEEK_MS) < 20  # type: ignore[index]
    assert explanation["conditions"][0].startswith("engagement score fell below 20 at")
    assert user.timers == {}


def test_an_event_raising_the_score_moves_its_timer_later() -> None:
    user = User(book(SCORING, REENGAGE))
    user.feed(track("m1", T0, "Order Completed"))
    user.feed(track("m2", T0, "Order Completed"))
    timer_id = score_id("reengage_low_score")
    outcome = user.feed(track("m3", T0 + DAY_MS, "Product Added"))
    value = score.value_at(user.state["score"], T0 + DAY_MS, WEEK_MS)  # type: ignore[index]
    later = crossing_ms(value, T0 + DAY_MS, 20, WEEK_MS)
    assert later is not None and later > T0 + WEEK_MS + 1
    assert outcome.timers.unset == [] and outcome.timers.set == []  # moved later: lazy
    assert user.timers[timer_id]["due"] == later
    at_old_crossing = user.tick(T0 + WEEK_MS + 1)
    assert at_old_crossing.triggers == []
    assert at_old_crossing.timers.set == [(later, timer_id)]


@pytest.mark.parametrize("late", [DAY_MS, 0], ids=["older event", "same millisecond"])
def test_an_earlier_event_applied_last_does_not_rename_the_timers(late: int) -> None:
    """Live, a person's events under two ids may be applied out of order; the replay applies
    them in time order (in the file's order within a millisecond). The timers they leave are
    named the same either way: after the later event, by time and then by id, and due when the
    score both events made decays below the threshold. (A score timer named after an event
    applied earlier keeps no properties of it: they are not in the state.)"""
    timers = []
    for order in (["m1", "m2"], ["m2", "m1"]):
        user = User(book(SCORING, REENGAGE, INACTIVE))
        for rid in order:
            ts = T0 + late if rid == "m2" else T0
            user.feed(track(rid, ts, "Order Completed"))
        timers.append(user.timers)
    assert timers[0] == timers[1]
    for timer_id in (score_id("reengage_low_score"), inactive_id("inactive_24h")):
        assert timers[0][timer_id]["cause"] == "m2"


def test_an_event_taking_the_score_below_fires_at_once_and_removes_the_timer() -> None:
    user = User(book(SCORING, REENGAGE))
    user.feed(track("m1", T0, "Order Completed"))
    user.feed(track("m2", T0, "Order Completed"))
    now = T0 + 2 * MINUTE_MS
    outcome = user.feed(track("m3", now, "Subscription Cancelled"))
    [trigger] = valid(outcome)
    assert trigger["time"] == iso(now)
    explanation = trigger["data"]["explanation"]
    assert explanation["cause"] == {"id": "m3", "event": "Subscription Cancelled"}
    assert explanation["timer"]["armed_by"] == {"id": "m3", "event": "Subscription Cancelled"}
    assert explanation["conditions"][0].startswith("engagement score fell from")
    assert outcome.timers.unset == [(T0 + WEEK_MS + 1, score_id("reengage_low_score"))]
    assert user.timers == {}
    assert user.tick(T0 + 30 * DAY_MS).triggers == []


def test_a_score_that_never_exceeds_the_threshold_arms_nothing() -> None:
    user = User(book(SCORING, REENGAGE))
    for i in range(3):
        outcome = user.feed(track(f"m{i}", T0 + i * DAY_MS, "Product Added"))
        assert outcome.timers.set == [] and outcome.triggers == []
    assert user.timers == {}


def test_score_below_without_an_engagement_score_is_an_error() -> None:
    with pytest.raises(RuleSetError, match="engagement_score"):
        book(REENGAGE)


# --- catch-up: what was due before a record fires first -----------------------------------------


def test_a_timer_due_before_the_record_fires_first_even_if_the_record_would_cancel_it() -> None:
    user = User(book(CART))
    user.feed(track("m1", T0, "Product Added", cart_id="c1"))
    outcome = user.feed(track("m2", T0 + 40 * MINUTE_MS, "Order Completed", cart_id="c1"))
    [trigger] = valid(outcome)
    assert trigger["time"] == iso(T0 + 30 * MINUTE_MS)
    assert trigger["data"]["explanation"]["cause"]["id"].endswith(":m1")
    assert [timer_id for timer_id, _ in outcome.fired] == [cart_timer("c1")]
    assert outcome.cancelled == 0
    assert user.timers == {}


def test_a_record_at_the_due_time_fires_the_timer_first() -> None:
    user = User(book(CART))
    user.feed(track("m1", T0, "Product Added", cart_id="c1"))
    outcome = user.feed(track("m2", T0 + 30 * MINUTE_MS, "Order Completed", cart_id="c1"))
    assert len(outcome.triggers) == 1 and outcome.cancelled == 0


def test_a_record_before_the_due_time_cancels_instead() -> None:
    user = User(book(CART))
    user.feed(track("m1", T0, "Product Added", cart_id="c1"))
    outcome = user.feed(track("m2", T0 + 30 * MINUTE_MS - 1, "Order Completed", cart_id="c1"))
    assert outcome.triggers == [] and outcome.fired == []
    assert outcome.cancelled == 1


def test_catch_up_gives_the_trigger_a_tick_would_have_given() -> None:
    by_tick, by_record = User(book(CART)), User(book(CART))
    for user in (by_tick, by_record):
        user.feed(track("m1", T0, "Product Added", cart_id="c1"))
    [ticked] = by_tick.tick(T0 + 30 * MINUTE_MS).triggers
    [caught_up] = by_record.feed(page("m2", T0 + 3 * HOUR_MS)).triggers
    assert ticked == caught_up


def test_catch_up_fires_a_users_due_timers_in_due_order() -> None:
    user = User(book(CART))
    user.feed(track("m1", T0 + MINUTE_MS, "Product Added", cart_id="late"))
    user.feed(track("m2", T0, "Product Added", cart_id="early"))
    outcome = user.feed(page("m3", T0 + HOUR_MS))
    assert [timer_id for timer_id, _ in outcome.fired] == [cart_timer("early"), cart_timer("late")]
    assert [t["time"] for t in outcome.triggers] == [
        iso(T0 + 30 * MINUTE_MS),
        iso(T0 + 31 * MINUTE_MS),
    ]


# --- conditions and policy at fire time ---------------------------------------------------------

FREE_CART = """
rules:
  - id: free_cart
    when: {event: Product Added}
    unless: {event: Order Completed, match: [cart_id]}
    within: 30m
    if: {trait: plan, value: free}
    then: {type: cart_reminder, channel: email}
"""

COOLDOWN_CART = """
rules:
  - id: cart_abandoned
    when: {event: Product Added}
    unless: {event: Order Completed, match: [cart_id]}
    within: 30m
    then: {type: cart_reminder, channel: email, cooldown: 1h}
"""


def test_a_timed_rules_if_is_evaluated_when_its_timer_fires() -> None:
    user = User(book(FREE_CART))
    user.feed(identify("m0", T0, plan="free"))
    user.feed(track("m1", T0, "Product Added", cart_id="c1"))
    user.feed(identify("m2", T0 + 10 * MINUTE_MS, plan="pro"))
    outcome = user.tick(T0 + HOUR_MS)
    assert outcome.triggers == [] and outcome.suppressed == []
    assert [timer_id for timer_id, _ in outcome.fired] == [cart_timer("c1", "free_cart")]
    assert user.timers == {}
    assert user.tick(T0 + DAY_MS).fired == []


def test_a_timed_rules_if_that_holds_at_fire_time_fires() -> None:
    user = User(book(FREE_CART))
    user.feed(track("m1", T0, "Product Added", cart_id="c1"))
    user.feed(identify("m2", T0 + 10 * MINUTE_MS, plan="free"))
    [trigger] = valid(user.tick(T0 + HOUR_MS))
    assert any("plan" in line for line in trigger["data"]["explanation"]["conditions"])


def test_cooldowns_apply_to_timer_fired_triggers() -> None:
    user = User(book(COOLDOWN_CART))
    user.feed(track("m1", T0, "Product Added", cart_id="c1"))
    user.feed(track("m2", T0 + MINUTE_MS, "Product Added", cart_id="c2"))
    first = user.tick(T0 + HOUR_MS)
    assert [t["time"] for t in first.triggers] == [iso(T0 + 30 * MINUTE_MS)]
    assert [(s.reason, s.time) for s in first.suppressed] == [
        ("cooldown", iso(T0 + 31 * MINUTE_MS))
    ]
    assert len(first.fired) == 2
    user.feed(track("m3", T0 + 2 * HOUR_MS, "Product Added", cart_id="c3"))
    [again] = user.tick(T0 + 3 * HOUR_MS).triggers  # the cooldown of 1h is over
    assert again["time"] == iso(T0 + 2 * HOUR_MS + 30 * MINUTE_MS)


# --- merges: an anonymous visitor's timers follow the visitor -----------------------------------

ANON = "anon:a1"


def anonymous_cart() -> User:
    visitor = User(book(CART))
    visitor.feed(track("m1", T0, "Product Added", key=ANON, cart_id="c1"))
    assert list(visitor.timers) == [cart_timer("c1")]
    return visitor


def merge_record() -> MergeRecord:
    return {"kind": "merge", "key": ANON, "id": merge_id(ANON, USER), "into": USER}


def test_a_merge_drops_the_timers_from_the_anonymous_profile() -> None:
    visitor = anonymous_cart()
    outcome = visitor.feed(merge_record())
    assert outcome.timers.unset == [(T0 + 30 * MINUTE_MS, cart_timer("c1"))]
    assert visitor.timers == {}
    assert visitor.state is not None and visitor.state["merged_into"] == USER


def test_the_absorb_record_of_a_merge_carries_the_pending_timers() -> None:
    outcome = anonymous_cart().feed(merge_record())
    [absorb] = outcome.applied.forward
    assert absorb["kind"] == "absorb"
    assert list(absorb["state"].get("timers", {})) == [cart_timer("c1")]


def test_an_anonymous_cart_timer_moves_to_the_user_on_merge_and_fires_for_the_user() -> None:
    visitor = anonymous_cart()
    user = User(visitor.book)
    user.feed(identify("m2", T0 + MINUTE_MS, plan="free"))
    outcome = visitor.feed(merge_record())
    for forwarded in outcome.applied.forward:
        absorbed = user.feed(forwarded)
        assert absorbed.timers.set == [(T0 + 30 * MINUTE_MS, cart_timer("c1"))]
    [trigger] = user.tick(T0 + 30 * MINUTE_MS).triggers
    assert trigger["subject"] == USER


def absorb_of(visitor: User) -> AbsorbRecord:
    assert visitor.state is not None
    return {
        "kind": "absorb",
        "key": USER,
        "id": merge_id(ANON, USER),
        "source_key": ANON,
        "state": copy.deepcopy(dict(visitor.state)),
    }


def test_an_absorbed_timer_is_put_on_the_user_and_fires_for_the_user() -> None:
    user = User(book(CART))
    user.feed(identify("m2", T0 + MINUTE_MS, plan="free"))
    outcome = user.feed(absorb_of(anonymous_cart()))
    assert outcome.timers.set == [(T0 + 30 * MINUTE_MS, cart_timer("c1"))]
    [trigger] = valid(user.tick(T0 + 30 * MINUTE_MS))
    assert trigger["subject"] == USER
    assert trigger["data"]["explanation"]["timer"]["armed_by"] == {
        "id": "m1",
        "event": "Product Added",
    }


def test_an_absorbed_inactivity_timer_does_not_advance_the_users_later_one() -> None:
    visitor = User(book(INACTIVE))
    visitor.feed(page("m1", T0, key=ANON))
    user = User(visitor.book)
    user.feed(page("m2", T0 + 10 * HOUR_MS))
    user.feed(absorb_of(visitor))
    assert user.timers[inactive_id("inactive_24h")]["due"] == T0 + 34 * HOUR_MS
    assert user.tick(T0 + 24 * HOUR_MS).triggers == []


def test_an_absorbed_score_timer_does_not_fire_while_the_merged_score_is_above() -> None:
    visitor = User(book(SCORING, REENGAGE))
    visitor.feed(track("m1", T0, "Order Completed", key=ANON))
    visitor.feed(track("m2", T0, "Product Added", key=ANON))  # 25
    visitor_due = visitor.timers[score_id("reengage_low_score")]["due"]
    user = User(visitor.book)
    user.feed(track("m3", T0, "Order Completed"))
    user.feed(track("m4", T0, "Order Completed"))  # 40
    user.feed(absorb_of(visitor))  # 65 together
    merged = score.value_at(user.state["score"], visitor_due, WEEK_MS)  # type: ignore[index]
    assert merged > 20
    assert user.tick(visitor_due).triggers == []


def test_a_timer_moved_earlier_is_reindexed_at_once() -> None:
    user = User(book(SCORING, REENGAGE))
    user.feed(track("m1", T0, "Order Completed"))
    user.feed(track("m2", T0, "Order Completed"))  # score 40: crossing in one half-life
    timer_id = score_id("reengage_low_score")
    indexed = user.timers[timer_id]["due"]
    for i in range(3):  # +5 each: 55, the crossing moves later (lazily: no index change)
        assert user.feed(track(f"a{i}", T0 + MINUTE_MS, "Product Added")).timers.unset == []
    # A cancellation (-30) leaves 25: still above 20, but crossing sooner than the index entry.
    earlier = user.feed(track("m4", T0 + 2 * MINUTE_MS, "Subscription Cancelled"))
    new_due = user.timers[timer_id]["due"]
    assert new_due < indexed
    assert earlier.timers.unset == [(indexed, timer_id)]
    assert earlier.timers.set == [(new_due, timer_id)]
