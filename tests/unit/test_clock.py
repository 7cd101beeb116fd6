"""Specifications of engine.clock: epoch milliseconds, ISO 8601, event time and durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clock import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    event_time_ms,
    iso,
    parse_duration_ms,
    parse_iso_ms,
    to_ms,
)

MAY_1_10H = 1_714_557_600_000  # 2024-05-01T10:00:00.000Z
#: Epoch milliseconds between 2004-11-04 (2**40 ms) and 2038-01-19 (2**31 s); outside it the float
#: arithmetic once was not exact (the parametrized cases below pin those instants).
PRESENT_ERA = st.integers(min_value=2**40, max_value=2**31 * 1000 - 1)

# --- to_ms / iso / parse_iso_ms -----------------------------------------------------------------


def test_the_epoch_is_zero_milliseconds() -> None:
    assert to_ms(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert iso(0) == "1970-01-01T00:00:00.000Z"


def _aware_iso(ms: int) -> str:
    """`iso` as first written: an aware UTC time, its `+00:00` replaced by `Z`."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + ms * timedelta(milliseconds=1)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


FIRST_MS = to_ms(datetime(1, 1, 1, tzinfo=UTC))
LAST_MS = to_ms(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC))


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=FIRST_MS, max_value=LAST_MS))
def test_iso_writes_what_formatting_an_aware_utc_time_writes(ms: int) -> None:
    assert iso(ms) == _aware_iso(ms)


@pytest.mark.parametrize("ms", [FIRST_MS, FIRST_MS - 1, LAST_MS, LAST_MS + 1, -1, 0, 999, 1000])
def test_iso_on_the_bounds_of_the_calendar(ms: int) -> None:
    try:
        expected = _aware_iso(ms)
    except OverflowError:
        with pytest.raises(OverflowError):
            iso(ms)
    else:
        assert iso(ms) == expected


def test_iso_writes_utc_with_milliseconds_and_a_z() -> None:
    assert iso(MAY_1_10H + 123) == "2024-05-01T10:00:00.123Z"
    assert iso(MAY_1_10H) == "2024-05-01T10:00:00.000Z"


def test_to_ms_treats_a_naive_datetime_as_utc() -> None:
    assert to_ms(datetime(2024, 5, 1, 10)) == MAY_1_10H


def test_to_ms_honours_the_offset_of_an_aware_datetime() -> None:
    paris_summer = timezone(timedelta(hours=2))
    assert to_ms(datetime(2024, 5, 1, 12, tzinfo=paris_summer)) == MAY_1_10H


def test_to_ms_drops_sub_millisecond_precision() -> None:
    assert to_ms(datetime(2024, 5, 1, 10, 0, 0, 999, tzinfo=UTC)) == MAY_1_10H
    assert to_ms(datetime(2024, 5, 1, 10, 0, 0, 1999, tzinfo=UTC)) == MAY_1_10H + 1


def test_parse_iso_ms_reads_a_z_suffix() -> None:
    assert parse_iso_ms("2024-05-01T10:00:00.123Z") == MAY_1_10H + 123


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T12:00:00+02:00",
        "2024-05-01T05:30:00-04:30",
        "2024-05-01T10:00:00+00:00",
        "2024-05-01T10:00:00",  # naive means UTC
        "2024-05-01T10:00:00.000Z",
    ],
)
def test_parse_iso_ms_converts_offsets_to_utc(text: str) -> None:
    assert parse_iso_ms(text) == MAY_1_10H


def test_parse_iso_ms_rejects_text_that_is_not_a_date_time() -> None:
    with pytest.raises(ValueError):
        parse_iso_ms("yesterday")


@settings(max_examples=300, deadline=None)
@given(PRESENT_ERA)
def test_iso_and_parse_iso_ms_round_trip_every_millisecond(ms: int) -> None:
    text = iso(ms)
    assert text.endswith("Z")
    assert parse_iso_ms(text) == ms


@settings(max_examples=300, deadline=None)
@given(PRESENT_ERA)
def test_to_ms_inverts_a_datetime_built_from_milliseconds(ms: int) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert to_ms(moment) == ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2004-11-03T19:31:43.067Z", 1_099_510_303_067),
        ("2039-03-22T09:38:17.193Z", 2_184_399_497_193),
    ],
)
def test_parse_iso_ms_is_exact_to_the_millisecond_outside_the_present_era(
    text: str, ms: int
) -> None:
    assert iso(ms) == text
    assert parse_iso_ms(text) == ms


# --- event_time_ms ------------------------------------------------------------------------------


def test_clock_skew_is_corrected_with_original_timestamp_and_sent_at() -> None:
    # The device clock is an hour ahead: it says the event happened at 11:00:00 and was sent at
    # 11:00:05; the server received it at 10:00:10, so the event happened at 10:00:05.
    received = MAY_1_10H + 10_000
    original = MAY_1_10H + HOUR_MS
    sent = original + 5_000
    assert event_time_ms(None, sent, original, received) == MAY_1_10H + 5_000


def test_skew_correction_wins_over_an_explicit_timestamp() -> None:
    received = MAY_1_10H
    at = event_time_ms(MAY_1_10H - DAY_MS, MAY_1_10H + 2_000, MAY_1_10H, received)
    assert at == MAY_1_10H - 2_000


def test_the_timestamp_is_trusted_without_sent_at() -> None:
    assert event_time_ms(MAY_1_10H, None, MAY_1_10H - 1, MAY_1_10H + 9) == MAY_1_10H


def test_the_timestamp_is_trusted_without_original_timestamp() -> None:
    assert event_time_ms(MAY_1_10H, MAY_1_10H + 7, None, MAY_1_10H + 9) == MAY_1_10H


def test_the_original_timestamp_alone_is_used_when_there_is_no_timestamp() -> None:
    assert event_time_ms(None, None, MAY_1_10H, MAY_1_10H + 9) == MAY_1_10H


def test_the_receive_time_is_used_when_the_event_carries_no_time() -> None:
    assert event_time_ms(None, None, None, MAY_1_10H) == MAY_1_10H


def test_sent_at_alone_does_not_move_the_event_time() -> None:
    assert event_time_ms(None, MAY_1_10H - HOUR_MS, None, MAY_1_10H) == MAY_1_10H


def test_zero_is_a_valid_time_not_an_absent_one() -> None:
    assert event_time_ms(0, None, None, MAY_1_10H) == 0
    assert event_time_ms(None, 0, 0, MAY_1_10H) == MAY_1_10H


# --- parse_duration_ms --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", 30_000),
        ("15m", 15 * MINUTE_MS),
        ("24h", 24 * HOUR_MS),
        ("7d", 7 * DAY_MS),
        ("2w", 14 * DAY_MS),
        ("1h", HOUR_MS),
        ("90d", 90 * DAY_MS),
        (" 7d ", 7 * DAY_MS),
    ],
)
def test_durations_are_read_in_seconds_minutes_hours_days_and_weeks(
    text: str, expected: int
) -> None:
    assert parse_duration_ms(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "7", "d", "h7", "7x", "7D", "1.5h", "-1h", "+1h", "7 d", "7dd", "seven d", "1e3s"],
)
def test_malformed_durations_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="is not like"):
        parse_duration_ms(text)
