"""schemas.segment.event_dict: its fast path writes exactly what the model writes, or steps aside.

The model (`to_record(parse_event(...))`) is the definition; the fast path is an optimization of
it for well-formed events. For any input the fast path accepts, both must give the same bytes
(keys in the same order); every input it declines goes through the model.
"""

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import json_values
from workloads import mixed_items

from schemas.segment import (
    _FIELD_CHECKS,
    EVENT_TYPES,
    MAX_EVENT_NAME_CHARS,
    PayloadError,
    SegmentEvent,
    _fast_dict,
    event_dict,
    parse_event,
    to_record,
)

#: The model's wire names (its aliases), in its order.
FIELDS = [field.alias or name for name, field in SegmentEvent.model_fields.items()]
#: Keys beyond the model's wire names: its attribute names, and extras of any kind.
OTHER_KEYS = ["message_id", "user_id", "received_at", "writeKey", "version", "Type", ""]

json_value = json_values(
    strings=st.text(max_size=8), keys=st.text(max_size=4), items=3, max_leaves=10
)
times = st.sampled_from(
    [
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05.123456+02:00",
        "2026-01-02 03:04:05",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59.999999-05:00",
        "  2026-01-02T03:04:05.5Z ",
        "not a time",
        "",
        "2026-13-01T00:00:00Z",
    ]
)
ids = st.one_of(
    st.sampled_from(["u1", "  ", "", " U-2 ", "a\x00b"]),
    st.text(max_size=6),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    json_value,
)
names = st.one_of(
    st.sampled_from(["Order Completed", " ", "", "x" * MAX_EVENT_NAME_CHARS, "x" * 201]),
    json_value,
)
VALUES: dict[str, Any] = {
    "type": st.one_of(st.sampled_from([*EVENT_TYPES, "Track", "tick"]), json_value),
    "timestamp": st.one_of(times, times, st.none(), json_value),
    "context": st.one_of(
        st.dictionaries(st.text(max_size=4), json_value, max_size=3), st.none(), json_value
    ),
    "event": names,
    "name": st.one_of(st.text(max_size=5), json_value),
}


def value_of(key: str) -> Any:
    if key in ("messageId", "userId", "anonymousId", "groupId", "previousId"):
        return ids
    if key in ("originalTimestamp", "sentAt", "receivedAt"):
        return VALUES["timestamp"]
    if key in ("integrations", "properties", "traits"):
        return VALUES["context"]
    if key == "category":
        return VALUES["name"]
    return VALUES.get(key, json_value)


BASES: list[dict[str, Any]] = [
    {"type": "track", "userId": "u1", "event": "Signed Up"},
    {"type": "identify", "anonymousId": "a1"},
    {"type": "page", "anonymousId": "a1", "name": "Home"},
    {"type": "screen", "userId": 12},
    {"type": "group", "userId": "u1", "groupId": "g1"},
    {"type": "alias", "userId": "u1", "previousId": "a1"},
    {"userId": "u1", "event": "No Type"},
]


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed events, each with a few fields set to values good, odd or wrong."""
    obj = dict(draw(st.sampled_from(BASES)))
    keys = draw(st.lists(st.sampled_from(FIELDS + OTHER_KEYS), unique=True, max_size=5))
    for key in keys:
        obj[key] = draw(value_of(key))
    for key in draw(st.lists(st.text(max_size=6), max_size=2)):
        obj[key] = draw(json_value)
    if draw(st.booleans()):
        obj.pop(draw(st.sampled_from(sorted(obj))))
    return obj


def by_model(obj: object, default_type: str | None) -> bytes | str:
    try:
        return orjson.dumps(to_record(parse_event(obj, default_type=default_type)))
    except PayloadError as exc:
        return str(exc)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events(), st.sampled_from([None, "track", "identify"]))
def test_the_fast_path_writes_what_the_model_writes(
    obj: dict[str, Any], default: str | None
) -> None:
    fast = _fast_dict(dict(obj), default)
    if fast is not None:
        assert orjson.dumps(fast) == by_model(obj, default)
    result: bytes | str
    try:
        result = orjson.dumps(event_dict(obj, default_type=default))
    except PayloadError as exc:
        result = str(exc)
    assert result == by_model(obj, default)


def test_well_formed_workload_events_take_the_fast_path() -> None:
    """Without this the optimization could silently stop applying, and every test still pass."""
    for obj in mixed_items(3000, 50, 5):
        if "type" not in obj:
            continue  # the workload's CRM and profile records
        fast = _fast_dict(obj, None)
        assert fast is not None, obj
        assert orjson.dumps(fast) == orjson.dumps(to_record(parse_event(obj)))


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "track", "userId": "u1", "event": "E", "properties": {"a": None, "b": [None]}},
        {"type": "identify", "anonymousId": 42, "traits": {"plan": "pro"}, "writeKey": "k"},
        {"type": "page", "userId": "u", "timestamp": "2026-01-02T03:04:05.999999+14:00"},
        {"type": "alias", "userId": "u", "previousId": " a "},
        {"type": "group", "userId": "u", "groupId": 7, "extra": {"deep": {"er": 1}}},
    ],
)
def test_well_formed_events_of_every_kind_take_the_fast_path(obj: dict[str, Any]) -> None:
    fast = _fast_dict(obj, None)
    assert fast is not None
    assert orjson.dumps(fast) == by_model(obj, None)


def test_the_fast_path_knows_every_field_of_the_model_in_its_order() -> None:
    """A field added to the model and not to the fast path would be taken for an extra."""
    assert list(_FIELD_CHECKS) == FIELDS
