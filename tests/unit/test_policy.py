"""Specifications of engine.policy: cooldowns, the per-event budget and channel caps."""

from __future__ import annotations

import yaml

from engine.clock import DAY_MS, HOUR_MS, MINUTE_MS
from engine.policy import (
    CHANNEL_CAP,
    COOLDOWN,
    LOWER_PRIORITY,
    Caps,
    EventBudget,
    record,
    refusal,
)
from engine.profile import UserState, new_state
from schemas.rules import ContactPolicy

T0 = 1_714_557_600_000  # 2024-05-01T10:00:00.000Z

POLICY = """
per_event: 1
caps:
  - {channel: email, max: 2, within: 1d}
  - {channel: push, max: 3, within: 1h}
  - {channel: push, max: 5, within: 7d}
"""


def caps(text: str = POLICY) -> Caps:
    return Caps.of(ContactPolicy.model_validate(yaml.safe_load(text)))


def budget(text: str = POLICY) -> EventBudget:
    return EventBudget(caps(text))


def state() -> UserState:
    return new_state("u1")


def send(s: UserState, rule: str, channel: str, at: int, text: str = POLICY) -> str | None:
    """One event's attempt to publish one trigger: refused, or recorded."""
    b = budget(text)
    reason = refusal(s, rule, None, channel, at, b)
    if reason is None:
        record(s, rule, channel, at, b)
    return reason


# --- caps ---------------------------------------------------------------------------------------


def test_caps_are_grouped_by_channel_with_the_longest_window_noted() -> None:
    c = caps()
    assert c.per_event == 1
    assert c.windows == {"email": [(2, DAY_MS)], "push": [(3, HOUR_MS), (5, 7 * DAY_MS)]}
    assert c.longest_ms == 7 * DAY_MS


def test_a_default_policy_allows_one_trigger_per_channel_per_event_and_has_no_caps() -> None:
    c = Caps.of(ContactPolicy())
    assert (c.per_event, c.windows, c.longest_ms) == (1, {}, 0)


# --- cooldown -----------------------------------------------------------------------------------


def test_a_rule_in_its_cooldown_is_refused_and_allowed_once_it_ends() -> None:
    s = state()
    record(s, "r1", "in_app", T0, budget())
    cooldown = DAY_MS
    assert refusal(s, "r1", cooldown, "in_app", T0 + HOUR_MS, budget()) == COOLDOWN
    assert refusal(s, "r1", cooldown, "in_app", T0 + DAY_MS - 1, budget()) == COOLDOWN
    assert refusal(s, "r1", cooldown, "in_app", T0 + DAY_MS, budget()) is None


def test_a_cooldown_applies_to_its_own_rule_only() -> None:
    s = state()
    record(s, "r1", "in_app", T0, budget())
    assert refusal(s, "r2", DAY_MS, "in_app", T0 + 1, budget()) is None


def test_a_rule_without_cooldown_may_trigger_on_every_event() -> None:
    s = state()
    record(s, "r1", "in_app", T0, budget())
    assert refusal(s, "r1", None, "in_app", T0, budget()) is None


def test_a_rule_that_never_fired_is_not_in_cooldown() -> None:
    assert refusal(state(), "r1", DAY_MS, "in_app", T0, budget()) is None


def test_a_late_event_inside_the_cooldown_before_the_last_trigger_is_refused() -> None:
    s = state()
    record(s, "r1", "in_app", T0, budget())
    assert refusal(s, "r1", DAY_MS, "in_app", T0 - HOUR_MS, budget()) == COOLDOWN


# --- per_event ----------------------------------------------------------------------------------


def test_a_second_trigger_on_the_same_channel_in_one_event_is_lower_priority() -> None:
    s, b = state(), budget()
    assert refusal(s, "high", None, "email", T0, b) is None
    record(s, "high", "email", T0, b)
    assert refusal(s, "low", None, "email", T0, b) == LOWER_PRIORITY


def test_the_per_event_budget_is_per_channel() -> None:
    s, b = state(), budget()
    record(s, "high", "email", T0, b)
    assert refusal(s, "other", None, "push", T0, b) is None


def test_a_new_event_has_a_fresh_budget() -> None:
    s = state()
    record(s, "high", "in_app", T0, budget())
    assert refusal(s, "low", None, "in_app", T0, budget()) is None


def test_per_event_may_allow_several_triggers_per_channel() -> None:
    text = "per_event: 2"
    s, b = state(), budget(text)
    for rule in ("a", "b"):
        assert refusal(s, rule, None, "in_app", T0, b) is None
        record(s, rule, "in_app", T0, b)
    assert refusal(s, "c", None, "in_app", T0, b) == LOWER_PRIORITY
    assert b.used == {"in_app": 2}


def test_the_cooldown_is_reported_before_the_budget() -> None:
    s, b = state(), budget()
    record(s, "r1", "email", T0, b)
    assert refusal(s, "r1", DAY_MS, "email", T0, b) == COOLDOWN


# --- channel caps -------------------------------------------------------------------------------


def test_a_channel_cap_refuses_sends_beyond_max_within_its_window() -> None:
    s = state()
    assert send(s, "a", "email", T0) is None
    assert send(s, "b", "email", T0 + HOUR_MS) is None
    assert send(s, "c", "email", T0 + 2 * HOUR_MS) == CHANNEL_CAP


def test_sends_older_than_the_window_no_longer_count() -> None:
    s = state()
    send(s, "a", "email", T0)
    send(s, "b", "email", T0 + HOUR_MS)
    assert send(s, "c", "email", T0 + DAY_MS - 1) == CHANNEL_CAP
    assert send(s, "c", "email", T0 + DAY_MS) is None  # the send at T0 left the window
    assert send(s, "d", "email", T0 + DAY_MS + 1) == CHANNEL_CAP


def test_every_cap_of_a_channel_applies() -> None:
    s = state()
    for i in range(3):
        assert send(s, f"r{i}", "push", T0 + i * MINUTE_MS) is None
    assert send(s, "r3", "push", T0 + 10 * MINUTE_MS) == CHANNEL_CAP  # 3 per hour
    assert send(s, "r3", "push", T0 + 2 * HOUR_MS) is None
    assert send(s, "r4", "push", T0 + 3 * HOUR_MS) is None
    assert send(s, "r5", "push", T0 + 4 * HOUR_MS) == CHANNEL_CAP  # 5 per week


def test_a_cap_counts_sends_of_every_rule_and_only_its_channel() -> None:
    s = state()
    send(s, "a", "email", T0)
    send(s, "b", "push", T0 + 1)
    assert send(s, "c", "email", T0 + 2) is None
    assert send(s, "d", "email", T0 + 3) == CHANNEL_CAP


def test_a_zero_cap_refuses_every_send_on_its_channel() -> None:
    text = "caps: [{channel: sms, max: 0, within: 1d}]"
    assert send(state(), "a", "sms", T0, text) == CHANNEL_CAP


def test_a_channel_without_caps_is_not_tracked_in_sent() -> None:
    s = state()
    for i in range(5):
        assert send(s, f"r{i}", "in_app", T0 + i) is None
    assert "in_app" not in s.get("sent", {})


def test_the_sent_list_is_sorted_and_pruned_to_the_longest_window() -> None:
    s = state()
    send(s, "a", "email", T0)
    send(s, "b", "email", T0 + 3 * DAY_MS)
    send(s, "c", "email", T0 + 8 * DAY_MS)
    # The longest window of any channel is 7d: the send at T0 is forgotten, the one 5 days
    # before the last send is kept.
    assert s["sent"]["email"] == [T0 + 3 * DAY_MS, T0 + 8 * DAY_MS]


def test_a_late_send_is_kept_in_time_order() -> None:
    s = state()
    send(s, "a", "push", T0)
    send(s, "b", "push", T0 - HOUR_MS * 2)
    assert s["sent"]["push"] == [T0 - 2 * HOUR_MS, T0]


# --- record -------------------------------------------------------------------------------------


def test_record_keeps_the_latest_fire_time_of_a_rule() -> None:
    s = state()
    record(s, "r1", "in_app", T0, budget())
    record(s, "r1", "in_app", T0 - HOUR_MS, budget())  # a late event
    assert s["fired"]["r1"] == T0
    record(s, "r1", "in_app", T0 + HOUR_MS, budget())
    assert s["fired"]["r1"] == T0 + HOUR_MS


def test_record_uses_up_the_event_budget_of_the_channel() -> None:
    s, b = state(), budget()
    record(s, "r1", "email", T0, b)
    record(s, "r2", "push", T0, b)
    assert b.used == {"email": 1, "push": 1}
    assert s["fired"] == {"r1": T0, "r2": T0}
