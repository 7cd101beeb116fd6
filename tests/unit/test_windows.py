"""Specifications of engine.windows: tiered tumbling buckets answering trailing-window counts."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clock import DAY_MS, HOUR_MS, MINUTE_MS
from engine.windows import (
    MAX_WINDOW_MS,
    TIERS,
    Counter,
    WindowTooLong,
    add,
    count,
    merge,
    tier_for,
)

DAY0 = 19_844 * DAY_MS  # 2024-05-01T00:00:00Z, aligned to every tier
#: "Now" sits mid-bucket in every tier: 10:30:30 on DAY0.
NOW = DAY0 + 10 * HOUR_MS + 30 * MINUTE_MS + 30_000
SECOND = 1_000


def counter_of(*times: int, horizon: int | None = None) -> Counter:
    """A counter built as a profile builds it: each event added at the latest time reached so far.

    `horizon`, when given, is a time the user had already reached before these events.
    """
    counter: Counter = {}
    reached = horizon
    for at in times:
        reached = at if reached is None else max(reached, at)
        add(counter, at, reached)
    return counter


# --- tiers --------------------------------------------------------------------------------------


def test_tiers_are_minutes_for_2_hours_hours_for_3_days_and_days_for_90_days() -> None:
    assert [(t.name, t.bucket_ms, t.retention_ms) for t in TIERS] == [
        ("m", MINUTE_MS, 2 * HOUR_MS),
        ("h", HOUR_MS, 3 * DAY_MS),
        ("d", DAY_MS, 90 * DAY_MS),
    ]
    assert MAX_WINDOW_MS == 90 * DAY_MS


@pytest.mark.parametrize(
    ("window", "tier"),
    [
        (MINUTE_MS, "m"),
        (HOUR_MS, "m"),
        (2 * HOUR_MS, "m"),
        (2 * HOUR_MS + 1, "h"),
        (24 * HOUR_MS, "h"),
        (3 * DAY_MS, "h"),
        (3 * DAY_MS + 1, "d"),
        (7 * DAY_MS, "d"),
        (90 * DAY_MS, "d"),
    ],
)
def test_a_window_is_answered_by_the_finest_tier_that_remembers_it(window: int, tier: str) -> None:
    assert tier_for(window).name == tier


def test_windows_longer_than_90_days_are_too_long() -> None:
    with pytest.raises(WindowTooLong, match="90 days"):
        tier_for(90 * DAY_MS + 1)
    with pytest.raises(WindowTooLong):
        count(counter_of(NOW), 91 * DAY_MS, NOW)


def test_window_too_long_is_a_value_error() -> None:
    assert issubclass(WindowTooLong, ValueError)


# --- add ----------------------------------------------------------------------------------------


def test_an_event_is_counted_in_the_bucket_of_every_tier() -> None:
    counter = add({}, NOW, NOW)
    assert counter == {
        "m": {str(NOW // MINUTE_MS): 1},
        "h": {str(NOW // HOUR_MS): 1},
        "d": {str(NOW // DAY_MS): 1},
    }


def test_events_of_one_bucket_add_up_and_amount_is_honoured() -> None:
    counter: Counter = {}
    add(counter, NOW, NOW)
    add(counter, NOW - SECOND, NOW, amount=3)
    assert counter["m"] == {str(NOW // MINUTE_MS): 4}


def test_add_updates_the_counter_in_place_and_returns_it() -> None:
    counter: Counter = {}
    assert add(counter, NOW, NOW) is counter


def test_buckets_older_than_a_tiers_retention_are_pruned_as_the_horizon_moves() -> None:
    counter = add({}, NOW, NOW)
    later = NOW + 3 * HOUR_MS
    add(counter, later, later)
    # The minute tier remembers 2 hours: the first event's minute is gone...
    assert counter["m"] == {str(later // MINUTE_MS): 1}
    # ...while the hour and day tiers still hold it.
    assert counter["h"] == {str(NOW // HOUR_MS): 1, str(later // HOUR_MS): 1}
    assert counter["d"] == {str(NOW // DAY_MS): 2}


def test_pruning_is_per_tier_as_the_horizon_moves_by_days() -> None:
    counter = add({}, NOW, NOW)
    later = NOW + 4 * DAY_MS
    add(counter, later, later)
    assert str(NOW // HOUR_MS) not in counter["h"]
    assert counter["d"] == {str(NOW // DAY_MS): 1, str(later // DAY_MS): 1}
    much_later = NOW + 91 * DAY_MS
    add(counter, much_later, much_later)
    assert counter["d"] == {str(later // DAY_MS): 1, str(much_later // DAY_MS): 1}


def test_a_late_event_is_kept_only_in_tiers_that_still_remember_its_time() -> None:
    counter = add({}, NOW - 3 * HOUR_MS, NOW)
    assert counter["m"] == {}
    assert counter["h"] == {str((NOW - 3 * HOUR_MS) // HOUR_MS): 1}
    assert counter["d"] == {str(NOW // DAY_MS): 1}


def test_an_event_older_than_every_retention_is_ignored() -> None:
    counter = add({}, NOW - 91 * DAY_MS, NOW)
    assert counter == {"m": {}, "h": {}, "d": {}}
    assert count(counter, 30 * DAY_MS, NOW) == 0


def test_retention_is_measured_from_the_horizon_not_the_event() -> None:
    # An event three days old is dropped from the hour tier if the horizon is ahead by > 3 days.
    counter = add({}, NOW, NOW + 3 * DAY_MS + HOUR_MS)
    assert counter["m"] == {}
    assert counter["h"] == {}
    assert counter["d"] == {str(NOW // DAY_MS): 1}


# --- count --------------------------------------------------------------------------------------


def test_an_empty_or_missing_counter_counts_zero() -> None:
    assert count(None, HOUR_MS, NOW) == 0
    assert count({}, HOUR_MS, NOW) == 0


def tiered() -> Counter:
    """A counter whose tiers disagree, to see which one answers."""
    return {
        "m": {str(NOW // MINUTE_MS): 1},
        "h": {str(NOW // HOUR_MS): 10},
        "d": {str(NOW // DAY_MS): 100},
    }


def test_a_1_hour_count_is_answered_by_the_minute_tier() -> None:
    assert count(tiered(), HOUR_MS, NOW) == 1


def test_a_24_hour_count_is_answered_by_the_hour_tier() -> None:
    assert count(tiered(), 24 * HOUR_MS, NOW) == 10


def test_a_7_day_count_is_answered_by_the_day_tier() -> None:
    assert count(tiered(), 7 * DAY_MS, NOW) == 100


def test_count_over_1_hour_counts_events_of_the_last_hour_only() -> None:
    counter = counter_of(NOW - 2 * HOUR_MS + MINUTE_MS, NOW - 30 * MINUTE_MS, NOW, horizon=NOW)
    assert count(counter, HOUR_MS, NOW) == 2
    assert count(counter, 2 * HOUR_MS, NOW) == 3


def test_count_over_1_hour_includes_events_of_the_oldest_overlapping_minute() -> None:
    # The window starts at 09:30:30; an event at 09:30:10 shares its minute bucket.
    counter = counter_of(NOW - HOUR_MS - 20 * SECOND, horizon=NOW)
    assert count(counter, HOUR_MS, NOW) == 1


def test_count_over_1_hour_excludes_events_of_the_minute_before_the_window() -> None:
    counter = counter_of(NOW - HOUR_MS - 31 * SECOND, horizon=NOW)
    assert count(counter, HOUR_MS, NOW) == 0


def test_count_over_1_hour_excludes_events_two_minutes_older_than_the_window() -> None:
    counter = counter_of(NOW - HOUR_MS - 2 * MINUTE_MS, horizon=NOW)
    assert count(counter, HOUR_MS, NOW) == 0


def test_count_over_24_hours_includes_events_of_the_oldest_overlapping_hour() -> None:
    # The window starts at 10:30:30 the day before; 10:05 that day shares its hour bucket.
    counter = counter_of(NOW - DAY_MS - 25 * MINUTE_MS, horizon=NOW)
    assert count(counter, DAY_MS, NOW) == 1


def test_count_over_24_hours_excludes_events_two_hours_older_than_the_window() -> None:
    counter = counter_of(NOW - DAY_MS - 2 * HOUR_MS, horizon=NOW)
    assert count(counter, DAY_MS, NOW) == 0


def test_count_over_7_days_includes_events_of_the_oldest_overlapping_day() -> None:
    # The window starts at 10:30:30 seven days ago; 01:30:30 that day shares its day bucket.
    counter = counter_of(NOW - 7 * DAY_MS - 9 * HOUR_MS, horizon=NOW)
    assert count(counter, 7 * DAY_MS, NOW) == 1


def test_count_over_7_days_excludes_events_two_days_older_than_the_window() -> None:
    counter = counter_of(NOW - 9 * DAY_MS, horizon=NOW)
    assert count(counter, 7 * DAY_MS, NOW) == 0


@pytest.mark.parametrize(
    ("window", "bucket"), [(HOUR_MS, MINUTE_MS), (DAY_MS, HOUR_MS), (7 * DAY_MS, DAY_MS)]
)
def test_events_a_bucket_or_more_after_now_are_not_counted(window: int, bucket: int) -> None:
    future = NOW + bucket
    counter = counter_of(NOW, future)
    assert count(counter, window, NOW) == 1


def test_count_reads_the_counter_without_changing_it() -> None:
    counter = counter_of(NOW - 5 * DAY_MS, NOW)
    before = copy.deepcopy(counter)
    count(counter, 7 * DAY_MS, NOW + 30 * DAY_MS)
    assert counter == before


def test_a_count_long_after_the_last_event_sees_nothing_of_it() -> None:
    counter = counter_of(NOW)
    assert count(counter, HOUR_MS, NOW + 3 * HOUR_MS) == 0
    assert count(counter, DAY_MS, NOW + 2 * DAY_MS) == 0
    assert count(counter, 7 * DAY_MS, NOW + 8 * DAY_MS) == 0
    assert count(counter, 30 * DAY_MS, NOW + 8 * DAY_MS) == 1


# --- merge --------------------------------------------------------------------------------------


def test_merge_sums_the_buckets_of_both_counters() -> None:
    into = counter_of(NOW - 10 * MINUTE_MS, NOW)
    other = counter_of(NOW, NOW - 3 * DAY_MS)
    merged = merge(into, other, NOW)
    assert merged is into
    assert merged["m"][str(NOW // MINUTE_MS)] == 2
    assert merged["d"][str(NOW // DAY_MS)] == 3
    assert count(merged, HOUR_MS, NOW) == 3
    assert count(merged, 7 * DAY_MS, NOW) == 4


def test_merge_into_an_empty_counter_copies_the_other() -> None:
    other = counter_of(NOW - HOUR_MS, NOW)
    assert merge({}, other, NOW) == other


def test_merge_prunes_buckets_beyond_the_new_horizon() -> None:
    old = counter_of(NOW - 5 * HOUR_MS)
    merged = merge({}, old, NOW)
    assert merged["m"] == {}
    assert merged["h"] == {str((NOW - 5 * HOUR_MS) // HOUR_MS): 1}


def test_merge_does_not_change_the_other_counter() -> None:
    other = counter_of(NOW)
    before = copy.deepcopy(other)
    merge(counter_of(NOW - MINUTE_MS), other, NOW)
    assert other == before


# --- properties ---------------------------------------------------------------------------------

WINDOWS = st.sampled_from([HOUR_MS, 24 * HOUR_MS, 7 * DAY_MS])


@settings(max_examples=200, deadline=None)
@given(window=WINDOWS, data=st.data())
def test_a_count_never_misses_an_event_of_the_window_and_never_invents_one(
    window: int, data: st.DataObject
) -> None:
    # Events anywhere in the last two windows, in any arrival order; "now" is the latest event
    # or later, as when a profile is read.
    offsets = data.draw(st.lists(st.integers(0, 2 * window), min_size=1, max_size=40))
    now = NOW + data.draw(st.integers(0, window // 10))
    times = [NOW - offset for offset in offsets]
    counter = counter_of(*times)
    inside = sum(1 for at in times if now - window < at <= now)
    assert inside <= count(counter, window, now) <= len(times)


@settings(max_examples=200, deadline=None)
@given(window=WINDOWS, data=st.data())
def test_every_event_within_the_window_is_counted(window: int, data: st.DataObject) -> None:
    offsets = data.draw(st.lists(st.integers(0, window - 1), min_size=1, max_size=40))
    times = [NOW - offset for offset in offsets]
    assert count(counter_of(*times), window, NOW) == len(times)


@settings(max_examples=200, deadline=None)
@given(window=WINDOWS, data=st.data())
def test_counts_are_additive_when_events_are_split_between_counters_and_merged(
    window: int, data: st.DataObject
) -> None:
    offsets = data.draw(st.lists(st.integers(0, 2 * window), min_size=0, max_size=40))
    sides = data.draw(st.lists(st.booleans(), min_size=len(offsets), max_size=len(offsets)))
    times = [NOW - offset for offset in offsets]
    left = [at for at, side in zip(times, sides, strict=True) if side]
    right = [at for at, side in zip(times, sides, strict=True) if not side]
    a, b, whole = counter_of(*left), counter_of(*right), counter_of(*times)
    expected = count(a, window, NOW) + count(b, window, NOW)
    merged = merge(copy.deepcopy(a), b, max(times, default=NOW))
    assert count(merged, window, NOW) == expected
    assert count(whole, window, NOW) == expected
