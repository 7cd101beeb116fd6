"""Specifications of schemas.segment: what Kairos accepts as a Segment event, and how it refuses."""

import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import json_values

from schemas.segment import (
    EVENT_TYPES,
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    SHORT_PATHS,
    PayloadError,
    SegmentEvent,
    parse_batch,
    parse_event,
    parse_time,
    to_record,
)

MINIMAL: dict[str, dict[str, Any]] = {
    "track": {"type": "track", "userId": "u1", "event": "Signed Up"},
    "identify": {"type": "identify", "userId": "u1"},
    "page": {"type": "page", "anonymousId": "a1"},
    "screen": {"type": "screen", "anonymousId": "a1"},
    "group": {"type": "group", "userId": "u1", "groupId": "g1"},
    "alias": {"type": "alias", "userId": "u1", "previousId": "a1"},
}


def rejection(obj: object, **kwargs: Any) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        parse_event(obj, **kwargs)
    return info.value


def batch_rejection(obj: object) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        parse_batch(obj)
    return info.value


def nested(depth: int) -> dict[str, Any]:
    """An object `depth` levels deep, counting itself as level 1."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"child": value}
    return value


# --- constants -----------------------------------------------------------------------------


def test_size_limits_are_segments_32kb_per_event_and_500kb_per_batch() -> None:
    assert MAX_EVENT_BYTES == 32 * 1024
    assert MAX_BATCH_BYTES == 500 * 1024


def test_short_paths_map_to_the_six_event_types() -> None:
    assert set(SHORT_PATHS.values()) == set(EVENT_TYPES)
    assert len(EVENT_TYPES) == 6


# --- each type accepted ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_each_event_type_is_accepted_with_a_minimal_payload(kind: str) -> None:
    event = parse_event(MINIMAL[kind])
    assert isinstance(event, SegmentEvent)
    assert event.type == kind


def test_message_id_is_optional_so_the_caller_can_generate_one() -> None:
    assert parse_event(MINIMAL["track"]).message_id is None
    assert parse_event({**MINIMAL["track"], "messageId": "m-1"}).message_id == "m-1"


def test_page_and_screen_keep_name_category_and_properties() -> None:
    event = parse_event(
        {**MINIMAL["page"], "name": "Home", "category": "Docs", "properties": {"path": "/"}}
    )
    assert (event.name, event.category, event.properties) == ("Home", "Docs", {"path": "/"})


def test_identify_and_group_keep_traits() -> None:
    assert parse_event({**MINIMAL["identify"], "traits": {"plan": "pro"}}).traits == {"plan": "pro"}
    assert parse_event({**MINIMAL["group"], "traits": {"size": 3}}).traits == {"size": 3}


# --- identity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["track", "identify", "page", "screen", "group"])
def test_event_without_user_id_or_anonymous_id_is_rejected_naming_user_id(kind: str) -> None:
    payload = {k: v for k, v in MINIMAL[kind].items() if k not in ("userId", "anonymousId")}
    err = rejection(payload)
    assert err.field == "userId"
    assert err.reason == "userId or anonymousId is required"


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_blank_identity_counts_as_missing(blank: str) -> None:
    err = rejection({"type": "identify", "userId": blank, "anonymousId": blank})
    assert err.field == "userId"
    assert parse_event({"type": "identify", "userId": blank, "anonymousId": "a"}).user_id is None


def test_anonymous_id_alone_is_enough_identity() -> None:
    assert parse_event({"type": "identify", "anonymousId": "a1"}).anonymous_id == "a1"


def test_identity_is_not_normalized_here() -> None:
    event = parse_event({"type": "identify", "userId": "  Ada@Example.COM "})
    assert event.user_id == "  Ada@Example.COM "


def test_numeric_ids_are_stringified() -> None:
    event = parse_event(
        {
            "type": "group",
            "userId": 42,
            "anonymousId": 7.5,
            "groupId": 1e3,
            "messageId": 123456789012345678,
        }
    )
    assert event.user_id == "42"
    assert event.anonymous_id == "7.5"
    assert event.group_id == "1000"
    assert event.message_id == "123456789012345678"
    alias = parse_event({"type": "alias", "userId": 1, "previousId": 2})
    assert (alias.user_id, alias.previous_id) == ("1", "2")


@pytest.mark.parametrize("bad", [True, [1], {"id": 1}])
def test_non_string_non_number_ids_are_rejected_naming_the_field(bad: object) -> None:
    err = rejection({"type": "identify", "userId": "u", "anonymousId": bad})
    assert err.field == "anonymousId"
    assert err.reason == "must be a string or number"


# --- alias and group requirements --------------------------------------------------------------


def test_alias_without_previous_id_is_rejected_naming_previous_id() -> None:
    err = rejection({"type": "alias", "userId": "u1"})
    assert err.field == "previousId"


def test_alias_without_user_id_is_rejected_even_with_anonymous_id() -> None:
    err = rejection({"type": "alias", "anonymousId": "a1", "previousId": "p1"})
    assert err.field == "userId"


def test_group_without_group_id_is_rejected_naming_group_id() -> None:
    err = rejection({"type": "group", "userId": "u1"})
    assert err.field == "groupId"


# --- track event name --------------------------------------------------------------------------


def test_track_without_event_name_is_rejected_naming_the_field() -> None:
    err = rejection({"type": "track", "userId": "u1"})
    assert err.field == "event"
    assert str(err) == "event: is required for track"


@pytest.mark.parametrize("bad", ["", "  ", 5, ["Signed Up"]])
def test_track_event_name_must_be_a_non_empty_string(bad: object) -> None:
    err = rejection({**MINIMAL["track"], "event": bad})
    assert (err.field, err.reason) == ("event", "must be a non-empty string")


def test_track_event_name_is_limited_to_200_characters() -> None:
    assert parse_event({**MINIMAL["track"], "event": "e" * 200}).event == "e" * 200
    err = rejection({**MINIMAL["track"], "event": "e" * 201})
    assert err.field == "event"
    assert "200" in err.reason


# --- type and default_type ---------------------------------------------------------------------


def test_missing_type_is_rejected_naming_type() -> None:
    err = rejection({"userId": "u1", "event": "x"})
    assert str(err) == "type: is required"


def test_unknown_type_is_rejected_listing_the_valid_ones() -> None:
    err = rejection({"type": "Track", "userId": "u1", "event": "x"})
    assert err.field == "type"
    assert "track, identify, page, screen, group, alias" in err.reason


def test_default_type_fills_a_missing_type_on_single_event_endpoints() -> None:
    event = parse_event({"userId": "u1", "event": "x"}, default_type="track")
    assert event.type == "track"


def test_type_differing_from_default_type_is_rejected_naming_type() -> None:
    err = rejection({"type": "identify", "userId": "u1"}, default_type="track")
    assert err.field == "type"
    assert "'track'" in err.reason
    assert rejection(
        {"type": "identify", "userId": "u1"}, where="x", default_type="page"
    ).field == ("x.type")


def test_default_type_does_not_mutate_the_callers_dict() -> None:
    payload = {"userId": "u1", "event": "x"}
    parse_event(payload, default_type="track")
    assert "type" not in payload


# --- wrong types -------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["properties", "traits", "context", "integrations"])
@pytest.mark.parametrize("bad", [[], "x", 1, True])
def test_object_fields_of_another_type_are_rejected_as_not_an_object(
    field: str, bad: object
) -> None:
    err = rejection({**MINIMAL["track"], field: bad})
    assert str(err) == f"{field}: must be an object"


@pytest.mark.parametrize("field", ["timestamp", "originalTimestamp", "sentAt", "receivedAt"])
@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01T00:00:00Z", 1700000000, "", {}])
def test_bad_timestamps_are_rejected_as_not_iso_8601(field: str, bad: object) -> None:
    err = rejection({**MINIMAL["track"], field: bad})
    assert str(err) == f"{field}: not an ISO 8601 date-time"


@pytest.mark.parametrize("field", ["name", "category"])
def test_page_name_and_category_must_be_strings(field: str) -> None:
    err = rejection({**MINIMAL["page"], field: 3})
    assert str(err) == f"{field}: must be a string"


def test_errors_are_one_line_and_free_of_pydantic_text() -> None:
    err = rejection({**MINIMAL["track"], "properties": "x", "timestamp": "nope"})
    assert "\n" not in str(err)
    assert "pydantic" not in str(err).lower()
    assert err.field == "timestamp"  # the first error, in field order


def test_payload_error_survives_pickling() -> None:
    err = PayloadError("batch[2].event", "is required for track")
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.field, clone.reason, str(clone)) == (err.field, err.reason, str(err))
    assert str(PayloadError("", "must be a JSON object")) == "must be a JSON object"
    assert isinstance(err, ValueError)


# --- nesting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["properties", "traits", "context"])
def test_objects_nested_deeper_than_32_levels_are_rejected(field: str) -> None:
    assert parse_event({**MINIMAL["track"], field: nested(32)})
    err = rejection({**MINIMAL["track"], field: nested(33)})
    assert str(err) == f"{field}: nested too deeply"


def test_nesting_through_lists_counts_too() -> None:
    value: Any = 1
    for _ in range(40):
        value = [value]
    err = rejection({**MINIMAL["track"], "properties": {"x": value}})
    assert err.reason == "nested too deeply"


def test_a_json_bomb_is_rejected_without_recursion_error() -> None:
    err = rejection({**MINIMAL["track"], "properties": nested(5000)})
    assert err.field == "properties"


# --- non-dict inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, [], [MINIMAL["track"]], "track", 3, True])
def test_non_object_event_gives_a_payload_error(bad: object) -> None:
    err = rejection(bad)
    assert err.reason == "must be a JSON object"


@pytest.mark.parametrize("bad", [None, [], [MINIMAL["track"]], "batch", 3])
def test_non_object_batch_body_gives_a_payload_error(bad: object) -> None:
    assert batch_rejection(bad).field == ""


# --- batches -----------------------------------------------------------------------------------


def test_batch_parses_every_event_in_order() -> None:
    events = parse_batch({"batch": [MINIMAL[kind] for kind in EVENT_TYPES], "writeKey": "k"})
    assert [event.type for event in events] == list(EVENT_TYPES)


def test_batch_error_names_the_index_and_field() -> None:
    err = batch_rejection({"batch": [MINIMAL["track"], {"type": "track", "userId": "u"}]})
    assert err.field == "batch[1].event"
    assert str(err) == "batch[1].event: is required for track"


def test_batch_event_without_type_is_rejected_naming_its_type() -> None:
    err = batch_rejection({"batch": [MINIMAL["track"], MINIMAL["page"], {"userId": "u"}]})
    assert str(err) == "batch[2].type: is required"


def test_batch_item_that_is_not_an_object_is_rejected_naming_its_index() -> None:
    err = batch_rejection({"batch": [MINIMAL["track"], "oops"]})
    assert str(err) == "batch[1]: must be a JSON object"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "is required"),
        ({"batch": []}, "must not be empty"),
        ({"batch": MINIMAL["track"]}, "must be a list of events"),
        ({"batch": None}, "must be a list of events"),
    ],
)
def test_batch_key_must_hold_a_non_empty_list(body: dict[str, Any], reason: str) -> None:
    err = batch_rejection(body)
    assert (err.field, err.reason) == ("batch", reason)


def test_batch_level_context_and_integrations_are_defaults_for_each_event() -> None:
    body: dict[str, Any] = {
        "batch": [
            {**MINIMAL["track"], "context": {"ip": "9.9.9.9", "locale": "fr"}},
            MINIMAL["identify"],
        ],
        "context": {"ip": "1.1.1.1", "library": {"name": "analytics-python"}},
        "integrations": {"All": False},
    }
    first, second = parse_batch(body)
    assert first.context == {
        "ip": "9.9.9.9",
        "locale": "fr",
        "library": {"name": "analytics-python"},
    }
    assert second.context == body["context"]
    assert first.integrations == second.integrations == {"All": False}
    assert "library" not in body["batch"][0]["context"]  # the request body is left untouched


def test_batch_merge_is_shallow_so_event_keys_replace_whole_values() -> None:
    body = {
        "batch": [{**MINIMAL["track"], "context": {"library": {"version": "2"}}}],
        "context": {"library": {"name": "x", "version": "1"}},
    }
    assert parse_batch(body)[0].context == {"library": {"version": "2"}}


def test_batch_level_sent_at_fills_events_without_one() -> None:
    body = {
        "batch": [MINIMAL["track"], {**MINIMAL["page"], "sentAt": "2026-01-01T00:00:00Z"}],
        "sentAt": "2026-11-25T01:02:03Z",
    }
    first, second = parse_batch(body)
    assert first.sent_at == datetime(2026, 11, 25, 1, 2, 3, tzinfo=UTC)
    assert second.sent_at == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("context", [], "must be an object"),
        ("integrations", "all", "must be an object"),
        ("context", nested(33), "nested too deeply"),
        ("sentAt", "soon", "not an ISO 8601 date-time"),
    ],
)
def test_malformed_batch_level_defaults_are_rejected_naming_the_key(
    key: str, value: object, reason: str
) -> None:
    err = batch_rejection({"batch": [MINIMAL["track"]], key: value})
    assert (err.field, err.reason) == (key, reason)


def test_event_context_of_wrong_type_is_reported_under_its_batch_path() -> None:
    err = batch_rejection({"batch": [{**MINIMAL["track"], "context": 1}], "context": {"a": 1}})
    assert str(err) == "batch[0].context: must be an object"


# --- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T01:02:03Z", datetime(2026, 11, 25, 1, 2, 3, tzinfo=UTC)),
        ("2026-11-25T01:02:03.456Z", datetime(2026, 11, 25, 1, 2, 3, 456000, tzinfo=UTC)),
        ("2026-11-25T03:02:03+02:00", datetime(2026, 11, 25, 1, 2, 3, tzinfo=UTC)),
        ("2026-11-24T20:02:03-05:00", datetime(2026, 11, 25, 1, 2, 3, tzinfo=UTC)),
        ("2026-11-25T01:02:03", datetime(2026, 11, 25, 1, 2, 3, tzinfo=UTC)),
        ("2026-11-25T01:02:03.123456789Z", datetime(2026, 11, 25, 1, 2, 3, 123456, tzinfo=UTC)),
    ],
)
def test_parse_time_reads_z_offsets_and_naive_as_utc(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_parse_time_converts_aware_datetimes_to_utc() -> None:
    local = datetime(2026, 11, 25, 3, 2, 3, tzinfo=timezone(timedelta(hours=2)))
    assert parse_time(local).tzinfo is UTC
    assert parse_time(local) == local


@pytest.mark.parametrize(
    "bad",
    ["", "not a date", "2026-02-30T00:00:00Z", "0001-01-01T00:00:00+01:00", 0, None, "9" * 100],
)
def test_parse_time_raises_value_error_on_anything_else(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_time(bad)


def test_event_timestamps_become_aware_utc_datetimes() -> None:
    event = parse_event({**MINIMAL["track"], "timestamp": "2026-11-25T03:02:03.5+02:00"})
    assert event.timestamp == datetime(2026, 11, 25, 1, 2, 3, 500000, tzinfo=UTC)


# --- to_record ---------------------------------------------------------------------------------


def test_to_record_uses_camel_case_and_drops_none_fields() -> None:
    record = to_record(
        parse_event({"type": "alias", "userId": 1, "previousId": "p", "messageId": "m"})
    )
    assert record == {"type": "alias", "userId": "1", "previousId": "p", "messageId": "m"}


def test_to_record_writes_utc_times_with_millis_and_z() -> None:
    event = parse_event(
        {
            **MINIMAL["track"],
            "timestamp": "2026-11-25T03:02:03.456789+02:00",
            "originalTimestamp": "2026-11-25T01:02:03",
            "sentAt": "2026-11-25T01:02:03.999999Z",
            "receivedAt": "2026-11-25T01:02:04Z",
        }
    )
    record = to_record(event)
    assert record["timestamp"] == "2026-11-25T01:02:03.456Z"
    assert record["originalTimestamp"] == "2026-11-25T01:02:03.000Z"
    assert record["sentAt"] == "2026-11-25T01:02:03.999Z"
    assert record["receivedAt"] == "2026-11-25T01:02:04.000Z"


def test_to_record_keeps_unknown_fields_and_nulls_inside_objects() -> None:
    event = parse_event(
        {
            **MINIMAL["identify"],
            "traits": {"email": None},
            "channel": "server",
            "version": 2,
            "_metadata": {"bundled": ["Mixpanel"]},
        }
    )
    record = to_record(event)
    assert record["channel"] == "server"
    assert record["version"] == 2
    assert record["_metadata"] == {"bundled": ["Mixpanel"]}
    assert record["traits"] == {"email": None}


def test_to_record_is_json_ready_and_parses_back_to_the_same_event() -> None:
    event = parse_event(
        {
            **MINIMAL["track"],
            "timestamp": "2026-11-25T01:02:03.456Z",
            "properties": {"revenue": 9.99, "items": [{"sku": "a"}]},
            "context": {"ip": "1.2.3.4"},
            "extra": True,
        }
    )
    wire = orjson.loads(orjson.dumps(to_record(event)))
    assert parse_event(wire) == event


# --- robustness ----------------------------------------------------------------------------------

any_json = json_values()
field_names = st.sampled_from(
    [
        "type",
        "messageId",
        "userId",
        "anonymousId",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "receivedAt",
        "context",
        "integrations",
        "properties",
        "traits",
        "event",
        "name",
        "category",
        "groupId",
        "previousId",
        "batch",
    ]
)
offsets = st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
iso_times = st.datetimes(timezones=st.none() | st.builds(timezone, offsets)).map(datetime.isoformat)
# Valid events with some fields overwritten: arbitrary values reach every validator, and
# enough of them survive to exercise to_record too.
event_like = st.builds(
    lambda base, changes: {**base, **changes},
    st.sampled_from(list(MINIMAL.values())),
    st.dictionaries(
        field_names | st.text(max_size=8),
        any_json | iso_times | st.sampled_from(EVENT_TYPES) | st.text(min_size=1, max_size=5),
        max_size=3,
    ),
)


def parse_all_ways(value: Any) -> None:
    """Parse `value` as a batch and as a single event, to_record whatever is accepted."""
    attempts: list[Callable[[], list[SegmentEvent]]] = [
        lambda: parse_batch(value),
        lambda: [parse_event(value)],
        lambda: [parse_event(value, where="batch[0]", default_type="track")],
    ]
    for attempt in attempts:
        try:
            events = attempt()
        except PayloadError as err:
            assert "\n" not in str(err)
            continue
        for event in events:
            orjson.dumps(to_record(event))


@settings(max_examples=300, deadline=None)
@given(value=any_json | event_like | st.lists(event_like, max_size=3).map(lambda b: {"batch": b}))
def test_arbitrary_json_is_either_parsed_or_refused_with_a_payload_error(value: Any) -> None:
    parse_all_ways(value)


@pytest.mark.parametrize("year", [1, 9, 999])
def test_to_record_writes_years_before_1000_with_four_digits(year: int) -> None:
    # strftime's %Y writes year 1 as "1"; the record's times are read back by fromisoformat.
    event = parse_event({**MINIMAL["track"], "timestamp": f"{year:04d}-01-02T03:04:05Z"})
    written = to_record(event)["timestamp"]
    assert written == f"{year:04d}-01-02T03:04:05.000Z"
    assert datetime.fromisoformat(written) == datetime(year, 1, 2, 3, 4, 5, tzinfo=UTC)
