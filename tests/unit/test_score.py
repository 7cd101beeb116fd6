"""Specifications of engine.score: an exponentially decayed sum of weights, decayed on read."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import score
from engine.clock import DAY_MS, HOUR_MS
from engine.profile import ProfileConfig, ScoreSetup, UserState, apply_record, profile_view
from engine.records import EventRecord
from schemas.rules import EngagementScore

T0 = 1_714_557_600_000  # 2024-05-01T10:00:00.000Z
WEEK = 7 * DAY_MS
USER = "u1"


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


# --- value_at -----------------------------------------------------------------------------------


def test_no_score_reads_as_zero() -> None:
    assert score.value_at(None, T0, WEEK) == 0.0
    assert score.value_at([], T0, WEEK) == 0.0


def test_after_exactly_one_half_life_the_value_halves() -> None:
    assert score.value_at([80.0, T0], T0 + WEEK, WEEK) == pytest.approx(40.0, rel=1e-12)


def test_after_two_half_lives_the_value_is_a_quarter() -> None:
    assert score.value_at([80.0, T0], T0 + 2 * WEEK, WEEK) == pytest.approx(20.0, rel=1e-12)


def test_decay_is_continuous_between_half_lives() -> None:
    half_way = score.value_at([80.0, T0], T0 + WEEK // 2, WEEK)
    assert half_way == pytest.approx(80.0 / math.sqrt(2), rel=1e-12)


def test_reading_at_or_before_as_of_gives_the_stored_value() -> None:
    assert score.value_at([80.0, T0], T0, WEEK) == 80.0
    assert score.value_at([80.0, T0], T0 - DAY_MS, WEEK) == 80.0


def test_decay_on_read_does_not_change_the_stored_value() -> None:
    stored = [80.0, float(T0)]
    score.value_at(stored, T0 + 3 * WEEK, WEEK)
    assert stored == [80.0, float(T0)]


def test_a_negative_score_decays_toward_zero_too() -> None:
    assert score.value_at([-40.0, T0], T0 + WEEK, WEEK) == pytest.approx(-20.0, rel=1e-12)


# --- add ----------------------------------------------------------------------------------------


def test_the_first_event_sets_the_score_at_its_time() -> None:
    assert score.add(None, 5.0, T0, WEEK) == [5.0, float(T0)]


def test_adding_at_a_later_time_decays_first_then_adds() -> None:
    later = score.add([80.0, float(T0)], 10.0, T0 + WEEK, WEEK)
    assert later[0] == pytest.approx(50.0, rel=1e-12)
    assert later[1] == T0 + WEEK


def test_adding_at_the_same_time_just_adds() -> None:
    assert score.add([80.0, float(T0)], 10.0, T0, WEEK) == [90.0, float(T0)]


def test_a_late_event_adds_its_weight_decayed_to_as_of_and_keeps_as_of() -> None:
    late = score.add([80.0, float(T0)], 10.0, T0 - WEEK, WEEK)
    assert late[0] == pytest.approx(85.0, rel=1e-12)
    assert late[1] == T0


def test_add_does_not_modify_the_score_it_is_given() -> None:
    stored = [80.0, float(T0)]
    score.add(stored, 10.0, T0 + WEEK, WEEK)
    score.add(stored, 10.0, T0 - WEEK, WEEK)
    assert stored == [80.0, float(T0)]


def test_negative_weights_lower_the_score_and_may_take_it_below_zero() -> None:
    lowered = score.add([20.0, float(T0)], -30.0, T0 + WEEK, WEEK)
    assert lowered[0] == pytest.approx(-20.0, rel=1e-12)
    late = score.add([20.0, float(T0)], -8.0, T0 - WEEK, WEEK)
    assert late[0] == pytest.approx(16.0, rel=1e-12)


def fold(events: list[tuple[int, float]], half_life: int) -> list[float]:
    stored: list[float] | None = None
    for at, weight in events:
        stored = score.add(stored, weight, at, half_life)
    assert stored is not None
    return stored


EVENTS = st.lists(
    st.tuples(
        st.integers(min_value=T0 - 30 * DAY_MS, max_value=T0 + 30 * DAY_MS),
        st.floats(min_value=0.01, max_value=100, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(events=EVENTS, order=st.randoms(use_true_random=False))
def test_the_final_score_does_not_depend_on_arrival_order(events: Any, order: Any) -> None:
    shuffled = list(events)
    order.shuffle(shuffled)
    half_life = 3 * DAY_MS
    in_order = fold(sorted(events), half_life)
    any_order = fold(shuffled, half_life)
    latest = max(at for at, _ in events)
    assert in_order[1] == any_order[1] == latest
    read_at = latest + DAY_MS
    assert close(
        score.value_at(in_order, read_at, half_life), score.value_at(any_order, read_at, half_life)
    )
    exact = sum(w * 0.5 ** ((read_at - at) / half_life) for at, w in events)
    assert close(score.value_at(any_order, read_at, half_life), exact)


# --- through a profile --------------------------------------------------------------------------

SCORING = """
half_life: 7d
weights:
  - {event: Page Viewed, weight: 1}
  - {event: Product Viewed, weight: 2}
  - {event: Order Completed, weight: 20}
  - {event: Order Completed, weight: 10, where: [{property: total, op: gte, value: 100}]}
  - {event: Subscription Cancelled, weight: -30}
"""


def config() -> ProfileConfig:
    spec = EngagementScore.model_validate(yaml.safe_load(SCORING))
    return ProfileConfig(score=ScoreSetup(WEEK, tuple(spec.weights)))


def track(rid: str, ts: int, name: str, **props: Any) -> EventRecord:
    event = {"type": "track", "event": name, "properties": props, "userId": USER, "messageId": rid}
    return {"kind": "event", "key": USER, "id": rid, "ts": ts, "ingested": ts, "event": event}


def page(rid: str, ts: int) -> EventRecord:
    event = {"type": "page", "name": "Home", "userId": USER, "messageId": rid}
    return {"kind": "event", "key": USER, "id": rid, "ts": ts, "ingested": ts, "event": event}


def run(*records: EventRecord) -> UserState:
    state: UserState | None = None
    for record in records:
        state = apply_record(state, record, config()).state
    assert state is not None
    return state


def test_a_profile_adds_the_weight_of_each_event_by_name() -> None:
    state = run(page("p1", T0), track("e1", T0, "Product Viewed"), page("p2", T0))
    assert state["score"] == [4.0, float(T0)]


def test_an_event_without_a_weight_leaves_the_score_alone() -> None:
    state = run(track("e1", T0, "Signed Up"))
    assert "score" not in state
    state = run(page("p1", T0), track("e1", T0 + WEEK, "Signed Up"))
    assert state["score"] == [1.0, float(T0)]


def test_weights_with_a_where_filter_apply_only_to_matching_events_and_add_up() -> None:
    small = run(track("o1", T0, "Order Completed", total=40))
    assert small["score"] == [20.0, float(T0)]
    large = run(track("o1", T0, "Order Completed", total=150))
    assert large["score"] == [30.0, float(T0)]


def test_a_negative_weight_lowers_the_profile_score() -> None:
    state = run(
        track("o1", T0, "Order Completed", total=40), track("c1", T0, "Subscription Cancelled")
    )
    assert state["score"] == [-10.0, float(T0)]


def test_a_duplicate_event_is_weighted_once() -> None:
    state = run(page("p1", T0), page("p1", T0))
    assert state["score"] == [1.0, float(T0)]


def test_the_profile_view_shows_the_score_decayed_to_now() -> None:
    state = run(track("o1", T0, "Order Completed", total=40))
    view = profile_view(state, T0 + WEEK, WEEK)
    assert view["engagement_score"] == 10.0
    assert profile_view(state, T0 + 2 * WEEK, WEEK)["engagement_score"] == 5.0
    assert profile_view(state, T0 + HOUR_MS, WEEK)["engagement_score"] == round(
        20 * 0.5 ** (HOUR_MS / WEEK), 3
    )
    assert state["score"] == [20.0, float(T0)]  # reading did not change it


def test_the_profile_view_has_no_score_without_a_score_setup() -> None:
    state = run(page("p1", T0))
    assert profile_view(state, T0)["engagement_score"] is None
    assert profile_view(run(track("e1", T0, "Signed Up")), T0, WEEK)["engagement_score"] == 0.0
