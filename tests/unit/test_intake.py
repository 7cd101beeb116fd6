"""Specifications of app.intake: from wire input to records, and how bad input is rejected."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.intake import (
    Rejected,
    content_id,
    crm_record,
    decode_json,
    event_record,
    event_records,
    profile_update_record,
)
from schemas.segment import MAX_EVENT_BYTES

T0 = 1_714_557_600_000  # 2024-05-01T10:00:00.000Z
RECEIVED = T0 + 5_000
RECEIVED_ISO = "2024-05-01T10:00:05.000Z"


def signed_up(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "track",
        "event": "Signed Up",
        "userId": "u1",
        "messageId": "m1",
        "timestamp": "2024-05-01T10:00:00.123Z",
    }
    event.update(fields)
    return {name: value for name, value in event.items() if value is not None}


def rejected(obj: object, **kwargs: Any) -> Rejected:
    with pytest.raises(Rejected) as info:
        event_record(obj, RECEIVED, **kwargs)
    return info.value


def dumps(obj: object) -> bytes:
    return orjson.dumps(obj)


# --- event_record -------------------------------------------------------------------------------


def test_a_valid_track_becomes_an_event_record() -> None:
    record = event_record(signed_up(), RECEIVED)
    assert record == {
        "kind": "event",
        "key": "u1",
        "id": "m1",
        "ts": T0 + 123,
        "ingested": RECEIVED,
        "event": {
            "type": "track",
            "event": "Signed Up",
            "userId": "u1",
            "messageId": "m1",
            "timestamp": "2024-05-01T10:00:00.123Z",
            "receivedAt": RECEIVED_ISO,
        },
    }


def test_the_record_key_is_the_identity_key() -> None:
    assert event_record(signed_up(anonymousId="a1"), RECEIVED)["key"] == "a1"
    alias = {"type": "alias", "userId": "u1", "previousId": "a1", "messageId": "m"}
    assert event_record(alias, RECEIVED)["key"] == "a1"


def test_user_ids_are_normalized_and_email_ids_lower_cased() -> None:
    record = event_record(signed_up(userId="  Ada@Example.COM "), RECEIVED)
    assert record["event"]["userId"] == "ada@example.com"
    assert record["key"] == "ada@example.com"


def test_anonymous_and_previous_ids_are_normalized_too() -> None:
    alias = {"type": "alias", "userId": " U1 ", "previousId": " A1 ", "anonymousId": " x "}
    event = event_record(alias, RECEIVED)["event"]
    assert (event["userId"], event["previousId"], event["anonymousId"]) == ("U1", "A1", "x")


def test_numeric_ids_become_strings() -> None:
    record = event_record(signed_up(userId=42), RECEIVED)
    assert record["key"] == "42"
    assert record["event"]["userId"] == "42"


def test_a_blank_anonymous_id_is_dropped_and_the_user_id_keys_the_record() -> None:
    record = event_record(signed_up(anonymousId="   "), RECEIVED)
    assert "anonymousId" not in record["event"]
    assert record["key"] == "u1"


def test_a_receive_time_given_in_the_event_is_kept() -> None:
    record = event_record(signed_up(timestamp=None, receivedAt="2024-05-01T09:00:00Z"), RECEIVED)
    assert record["event"]["receivedAt"] == "2024-05-01T09:00:00.000Z"
    assert record["ts"] == T0 - 3_600_000
    assert record["ingested"] == RECEIVED


def test_an_event_without_any_time_happened_when_it_was_received() -> None:
    assert event_record(signed_up(timestamp=None), RECEIVED)["ts"] == RECEIVED


def test_the_event_time_is_corrected_for_the_device_clock() -> None:
    # The device clock is a day ahead; the event was sent 2 seconds after it happened.
    skewed = signed_up(
        timestamp=None,
        originalTimestamp="2024-05-02T10:00:03.000Z",
        sentAt="2024-05-02T10:00:05.000Z",
    )
    assert event_record(skewed, RECEIVED)["ts"] == RECEIVED - 2_000


def test_an_event_without_message_id_gets_a_deterministic_content_id() -> None:
    first = event_record(signed_up(messageId=None), RECEIVED)
    again = event_record(signed_up(messageId=None), RECEIVED + 60_000)
    other = event_record(signed_up(messageId=None, event="Logged In"), RECEIVED)
    assert first["id"].startswith("kairos-")
    assert first["id"] == again["id"] == first["event"]["messageId"]
    assert other["id"] != first["id"]


def test_a_blank_message_id_counts_as_missing() -> None:
    record = event_record(signed_up(messageId="  "), RECEIVED)
    assert record["id"] == content_id(signed_up(messageId="  "))


def test_content_ids_do_not_depend_on_key_order() -> None:
    assert content_id({"a": 1, "b": 2}) == content_id({"b": 2, "a": 1})
    assert content_id({"a": 1}) != content_id({"a": 2})


def test_an_event_of_exactly_32_kb_is_accepted_and_one_byte_more_is_too_large() -> None:
    padded = signed_up(properties={"pad": ""})
    padding = MAX_EVENT_BYTES - len(dumps(padded))
    padded["properties"]["pad"] = "x" * padding
    assert len(dumps(padded)) == MAX_EVENT_BYTES
    assert event_record(padded, RECEIVED)["id"] == "m1"
    padded["properties"]["pad"] += "x"
    error = rejected(padded)
    assert error.code == "too_large"
    assert "32 KB" in error.reason


def test_an_oversize_event_in_a_batch_is_located() -> None:
    error = rejected(signed_up(properties={"pad": "x" * 40_000}), where="batch[3]")
    assert error.code == "too_large"
    assert error.reason.startswith("batch[3]: ")


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"type": "track", "userId": "u1"}, "event"),
        ({"type": "nope", "userId": "u1"}, "type"),
        ({"type": "track", "event": "X"}, "userId"),
        (signed_up(timestamp="yesterday"), "timestamp"),
        (signed_up(properties=[1, 2]), "properties"),
        ({"type": "alias", "userId": "u1"}, "previousId"),
    ],
)
def test_an_invalid_event_is_rejected_naming_the_field(obj: dict[str, Any], field: str) -> None:
    error = rejected(obj)
    assert error.code == "invalid_event"
    assert error.reason.startswith(f"{field}: ")
    assert str(error) == error.reason


def test_a_value_that_is_not_an_object_is_an_invalid_event() -> None:
    error = rejected([1, 2])
    assert error.code == "invalid_event"
    assert "JSON object" in error.reason


def test_the_endpoint_type_fills_a_missing_type() -> None:
    obj = {"event": "Signed Up", "userId": "u1", "messageId": "m1"}
    assert event_record(obj, RECEIVED, default_type="track")["event"]["type"] == "track"
    error = rejected({**obj, "type": "page"}, default_type="track")
    assert error.code == "invalid_event"
    assert error.reason.startswith("type: ")


@pytest.mark.parametrize("field", ["userId", "anonymousId"])
def test_an_id_with_control_characters_is_an_invalid_identifier(field: str) -> None:
    error = rejected(signed_up(**{field: "ab\x00cd"}))
    assert error.code == "invalid_identifier"
    assert error.reason.startswith(f"{field}: ")


def test_an_invalid_identifier_in_a_batch_is_located() -> None:
    error = rejected(signed_up(userId="x" * 300), where="batch[0]")
    assert error.code == "invalid_identifier"
    assert error.reason.startswith("batch[0].userId: ")


def test_event_record_does_not_change_its_input() -> None:
    obj = signed_up(userId=" Ada@Example.COM ", messageId=None)
    before = orjson.dumps(obj)
    event_record(obj, RECEIVED)
    assert orjson.dumps(obj) == before


# --- event_records ------------------------------------------------------------------------------


def test_a_single_event_gives_one_record() -> None:
    [record] = event_records(dumps(signed_up()), RECEIVED)
    assert not isinstance(record, Rejected)
    assert record == event_record(signed_up(), RECEIVED)


def test_a_batch_envelope_gives_one_record_per_event_and_rejects_only_the_bad_one() -> None:
    batch = [
        signed_up(messageId="m1"),
        {"type": "track", "userId": "u2"},
        signed_up(messageId="m3"),
    ]
    results = event_records(dumps({"batch": batch, "writeKey": "w"}), RECEIVED)
    assert len(results) == 3
    first, bad, third = results
    assert not isinstance(first, Rejected) and first["id"] == "m1"
    assert not isinstance(third, Rejected) and third["id"] == "m3"
    assert isinstance(bad, Rejected)
    assert bad.code == "invalid_event"
    assert bad.reason.startswith("batch[1].event: ")


def test_an_empty_batch_gives_no_records() -> None:
    assert event_records(dumps({"batch": []}), RECEIVED) == []


def test_an_object_with_a_type_is_an_event_even_with_a_batch_field() -> None:
    [record] = event_records(dumps(signed_up(batch=[1])), RECEIVED)
    assert not isinstance(record, Rejected)
    assert record["id"] == "m1"


def test_invalid_json_gives_one_invalid_json_rejection() -> None:
    [result] = event_records(b'{"type": "track",', RECEIVED)
    assert isinstance(result, Rejected)
    assert result.code == "invalid_json"


def test_a_batch_that_is_not_a_list_is_rejected() -> None:
    [result] = event_records(dumps({"batch": {"type": "track"}}), RECEIVED)
    assert isinstance(result, Rejected)
    assert result.code == "invalid_event"
    assert result.reason.startswith("batch: ")


def test_decode_json_rejects_invalid_json() -> None:
    assert decode_json(b'{"a": 1}') == {"a": 1}
    with pytest.raises(Rejected) as info:
        decode_json(b"\xff")
    assert info.value.code == "invalid_json"


# --- crm_record ---------------------------------------------------------------------------------


def crm(**fields: Any) -> bytes:
    record: dict[str, Any] = {"user_id": "u1", "traits": {"plan": "pro"}}
    record.update(fields)
    return dumps({name: value for name, value in record.items() if value is not None})


def crm_rejected(raw: bytes) -> Rejected:
    with pytest.raises(Rejected) as info:
        crm_record(raw, RECEIVED)
    return info.value


def test_a_crm_record_becomes_a_traits_record_of_its_user() -> None:
    record = crm_record(
        crm(user_id=" Ada@Example.COM ", updated_at="2024-05-01T12:00:00+02:00", record_id="r1"),
        RECEIVED,
    )
    assert record == {
        "kind": "traits",
        "key": "ada@example.com",
        "id": "r1",
        "ts": T0,
        "ingested": RECEIVED,
        "source": "crm",
        "set": {"plan": "pro"},
        "unset": [],
        "origin": "crm",
    }


def test_a_crm_record_without_update_time_takes_the_receive_time() -> None:
    assert crm_record(crm(), RECEIVED)["ts"] == RECEIVED


def test_a_crm_record_names_its_source() -> None:
    assert crm_record(crm(source="hubspot"), RECEIVED)["source"] == "hubspot"


def test_a_crm_record_without_record_id_gets_a_deterministic_content_id() -> None:
    first = crm_record(crm(), RECEIVED)["id"]
    assert first == crm_record(crm(), RECEIVED + 1)["id"]
    assert first.startswith("kairos-")
    assert first != crm_record(crm(traits={"plan": "free"}), RECEIVED)["id"]


def test_a_numeric_crm_user_id_becomes_a_string() -> None:
    assert crm_record(crm(user_id=12), RECEIVED)["key"] == "12"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (dumps({"traits": {}}), "user_id"),
        (crm(user_id="   "), "user_id"),
        (crm(traits=3), "traits"),
        (crm(updated_at="yesterday"), "updated_at"),
        (crm(source=""), "source"),
        (crm(owner="me"), "owner"),
        (dumps([1]), "record"),
    ],
)
def test_a_bad_crm_record_is_rejected_naming_the_field(raw: bytes, field: str) -> None:
    error = crm_rejected(raw)
    assert error.code == "invalid_event"
    assert error.reason.startswith(f"{field}: ")


def test_extra_fields_are_forbidden_in_crm_records() -> None:
    assert "Extra inputs are not permitted" in crm_rejected(crm(owner="me")).reason


def test_a_crm_user_id_with_control_characters_is_an_invalid_identifier() -> None:
    error = crm_rejected(crm(user_id="a\x01b"))
    assert error.code == "invalid_identifier"
    assert error.reason.startswith("user_id: ")


def test_a_crm_record_that_is_not_json_is_rejected() -> None:
    assert crm_rejected(b"not json").code == "invalid_json"


# --- profile_update_record ----------------------------------------------------------------------


def test_a_profile_update_sets_and_unsets_traits() -> None:
    raw = dumps(
        {
            "user_id": "U1",
            "set": {"plan": "team"},
            "unset": ["trial_ends"],
            "timestamp": "2024-05-01T10:00:00Z",
            "update_id": "up1",
        }
    )
    assert profile_update_record(raw, RECEIVED) == {
        "kind": "traits",
        "key": "U1",
        "id": "up1",
        "ts": T0,
        "ingested": RECEIVED,
        "source": "profiles",
        "set": {"plan": "team"},
        "unset": ["trial_ends"],
        "origin": "profile",
    }


def test_a_profile_update_with_only_unset_is_accepted() -> None:
    record = profile_update_record(dumps({"user_id": "u1", "unset": ["plan"]}), RECEIVED)
    assert record["set"] == {}
    assert record["unset"] == ["plan"]
    assert record["ts"] == RECEIVED
    assert record["id"] == content_id({"user_id": "u1", "unset": ["plan"]})


@pytest.mark.parametrize(
    "obj",
    [{"user_id": "u1"}, {"user_id": "u1", "set": {}, "unset": []}],
    ids=["nothing", "empty"],
)
def test_an_empty_profile_update_is_rejected(obj: dict[str, Any]) -> None:
    with pytest.raises(Rejected) as info:
        profile_update_record(dumps(obj), RECEIVED)
    assert info.value.code == "invalid_event"
    assert info.value.reason.startswith("set: ")


@pytest.mark.parametrize(
    ("obj", "field", "code"),
    [
        ({"user_id": "u1", "set": {"a": 1}, "extra": 1}, "extra", "invalid_event"),
        ({"user_id": "u1", "unset": "plan"}, "unset", "invalid_event"),
        ({"set": {"a": 1}}, "user_id", "invalid_event"),
        ({"user_id": "a\nb", "set": {"a": 1}}, "user_id", "invalid_identifier"),
    ],
)
def test_a_bad_profile_update_is_rejected_naming_the_field(
    obj: dict[str, Any], field: str, code: str
) -> None:
    with pytest.raises(Rejected) as info:
        profile_update_record(dumps(obj), RECEIVED)
    assert info.value.code == code
    assert info.value.reason.startswith(f"{field}: ")


# --- hostile input (found by tests/broker/test_fuzz.py) ----------------------------------------

DEEP = "<deep>"


def with_deep(obj: object, levels: int) -> bytes:
    """`obj` as JSON with its "<deep>" string replaced by an array `levels` deep (itself level 1).

    Written by hand: orjson does not write more than 254 levels.
    """
    return dumps(obj).replace(dumps(DEEP), b"[" * levels + b"]" * levels)


def test_an_event_time_in_year_1_is_an_event_time_not_a_crash() -> None:
    record = event_record(signed_up(timestamp="0001-01-01T00:00:00Z"), RECEIVED)
    assert record["event"]["timestamp"] == "0001-01-01T00:00:00.000Z"
    assert record["ts"] == -62_135_596_800_000


@pytest.mark.parametrize("field", ["properties", "context", "unknownField"])
@pytest.mark.parametrize("levels", [33, 300])
def test_an_event_nested_too_deeply_anywhere_is_an_invalid_event(field: str, levels: int) -> None:
    # 300 levels: past what orjson can write back (254), which used to escape as a TypeError.
    value = {"a": DEEP} if field != "unknownField" else DEEP
    depth = levels - 1 if field != "unknownField" else levels
    [result] = event_records(with_deep({"batch": [signed_up(**{field: value})]}, depth), RECEIVED)
    assert isinstance(result, Rejected)
    assert result.code == "invalid_event"
    assert result.reason == f"batch[0].{field}: nested too deeply"


def test_an_unknown_field_32_levels_deep_is_kept() -> None:
    [record] = event_records(with_deep(signed_up(extra=DEEP), 32), RECEIVED)
    assert not isinstance(record, Rejected)
    orjson.dumps(record)


@pytest.mark.parametrize("levels", [33, 300])
def test_crm_traits_and_profile_updates_nested_too_deeply_are_invalid(levels: int) -> None:
    with pytest.raises(Rejected) as info:
        crm_record(with_deep({"user_id": "u1", "traits": {"a": DEEP}}, levels - 1), RECEIVED)
    assert (info.value.code, info.value.reason) == ("invalid_event", "traits: nested too deeply")
    with pytest.raises(Rejected) as info:
        profile_update_record(
            with_deep({"user_id": "u1", "set": {"a": DEEP}}, levels - 1), RECEIVED
        )
    assert (info.value.code, info.value.reason) == ("invalid_event", "set: nested too deeply")


def test_a_trait_write_more_than_a_day_ahead_takes_the_receive_time() -> None:
    # A CRM's "never" (9999-12-31) would otherwise win over every later write of the trait.
    assert crm_record(crm(updated_at="9999-12-31T00:00:00Z"), RECEIVED)["ts"] == RECEIVED
    update = dumps({"user_id": "u1", "set": {"a": 1}, "timestamp": "9999-12-31T00:00:00Z"})
    assert profile_update_record(update, RECEIVED)["ts"] == RECEIVED
    soon = RECEIVED + 3_600_000  # an hour ahead: a clock a little fast, kept
    assert crm_record(crm(updated_at="2024-05-01T11:00:05Z"), RECEIVED)["ts"] == soon


def test_as_written_the_normalized_event_must_be_within_32_kb_too() -> None:
    # The collector writes the normalized event, and the ingest agent checks its size again: an
    # event the collector accepts must pass there, or it is answered 200 and dead-lettered.
    padded = signed_up(properties={"pad": ""}, timestamp="2024-05-01T10:00:00Z")
    padded["properties"]["pad"] = "x" * (MAX_EVENT_BYTES - len(dumps(padded)))
    written = event_record(padded, RECEIVED)["event"]
    assert len(dumps(written)) > MAX_EVENT_BYTES  # a receive time and milliseconds were added
    [again] = event_records(dumps(written), RECEIVED)
    assert isinstance(again, Rejected) and again.code == "too_large"
    error = rejected(padded, as_written=True)
    assert error.code == "too_large"
    assert "once normalized" in error.reason
    smaller = signed_up(properties={"pad": "x" * 30_000})
    written = event_record(smaller, RECEIVED, as_written=True)["event"]
    assert not isinstance(event_records(dumps(written), RECEIVED)[0], Rejected)
