"""Pydantic models of the Segment HTTP Tracking API spec: the events that cross the wire.

Holds the `SegmentEvent` model, the parsers of single events and batch requests
(`parse_event`, `parse_batch`), the serializer back to Segment's camelCase JSON shape
(`to_record`), the ISO 8601 reader (`parse_time`) and `PayloadError`, the one exception a
malformed payload ever produces. Size limits are only exported here; the HTTP layer checks
them on raw bytes. Identity normalization (trimming, lower-casing) lives in `engine/`.
"""

from collections.abc import Callable, Container, Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

MAX_EVENT_BYTES = 32 * 1024  # Segment: 32 KB per event
MAX_BATCH_BYTES = 500 * 1024  # Segment: 500 KB per batch request

# orjson accepts 1024 levels, far beyond any real payload; this bound keeps a hostile deep
# object (a JSON bomb) away from downstream code that walks properties recursively.
MAX_NESTING = 32
MAX_EVENT_NAME_CHARS = 200

EventType = Literal["track", "identify", "page", "screen", "group", "alias"]
EVENT_TYPES: tuple[EventType, ...] = ("track", "identify", "page", "screen", "group", "alias")
SHORT_PATHS: dict[str, EventType] = {
    "t": "track",
    "i": "identify",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}

_ERROR_TYPE = "segment_payload"


class PayloadError(ValueError):
    """A payload that does not follow the Segment spec; `field` is a path like `batch[2].event`."""

    field: str
    reason: str

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)

    def __reduce__(self) -> tuple[type["PayloadError"], tuple[str, str]]:
        # ValueError's default pickling replays only the message, which __init__ rejects.
        return (type(self), (self.field, self.reason))


def _invalid(reason: str, field: str | None = None) -> PydanticCustomError:
    # The reason travels as context, not as the template, so braces in it are never expanded.
    ctx = {"reason": reason} if field is None else {"reason": reason, "field": field}
    return PydanticCustomError(_ERROR_TYPE, "{reason}", ctx)


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_time(value: object) -> datetime:
    """Read an ISO 8601 date-time (with `Z`, an offset, or naive meaning UTC) as aware UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        # Longer strings are never valid and are not worth handing to the parser.
        if not text or len(text) > 64:
            raise ValueError("not an ISO 8601 date-time")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an ISO 8601 date-time: {_short_repr(text)}") from None
    else:
        raise ValueError("not an ISO 8601 date-time")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # e.g. 0001-01-01T00:00:00+01:00 has no UTC representation.
        raise ValueError("date-time out of range") from None


def _format_time(value: datetime) -> str:
    utc = value.astimezone(UTC)
    # Truncate to milliseconds: rounding could carry into the next second. The year is padded by
    # hand: strftime's %Y writes year 1 as "1", which no ISO 8601 reader accepts back.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def _to_type(value: object) -> object:
    if isinstance(value, str) and value in EVENT_TYPES:
        return value
    raise _invalid(f"must be one of {', '.join(EVENT_TYPES)} (got {_short_repr(value)})")


def _stringify_number(value: int | float) -> str:
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise _invalid("must be a string or a finite number")
        # JSON has one number type: 42.0 and 42 are the same id to the sender.
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


def _to_id(value: object) -> str | None:
    """Ids may be strings or numbers; blank strings count as absent."""
    if value is None:
        return None
    # bool is an int subclass, but `true` is never a meaningful id.
    if isinstance(value, bool):
        raise _invalid("must be a string or number")
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float):
        return _stringify_number(value)
    raise _invalid("must be a string or number")


def _to_time(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise _invalid("not an ISO 8601 date-time") from None


def too_deep(value: dict[str, Any] | list[Any]) -> bool:
    """Whether a JSON object or array (level 1) holds anything deeper than MAX_NESTING levels."""
    # Iterative so that the check itself cannot hit Python's recursion limit.
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            return True
        children: Iterable[Any] = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def _object_problem(value: object) -> str | None:
    if not isinstance(value, dict):
        return "must be an object"
    if too_deep(value):
        return "nested too deeply"
    return None


def _to_object(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    problem = _object_problem(value)
    if problem is not None:
        raise _invalid(problem)
    assert isinstance(value, dict)
    return value


def _to_event_name(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _invalid("must be a non-empty string")
    if len(value) > MAX_EVENT_NAME_CHARS:
        raise _invalid(f"must be at most {MAX_EVENT_NAME_CHARS} characters")
    return value


def _to_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _invalid("must be a string")


def _missing_for_type(kind: str, given: Container[str]) -> tuple[str, str] | None:
    """The field an event of type `kind` lacks and why, or None; `given` holds the wire names of
    the fields it has (not null)."""
    if kind == "alias":
        for field in ("userId", "previousId"):
            if field not in given:
                return field, "is required for alias"
        return None
    if "userId" not in given and "anonymousId" not in given:
        return "userId", "userId or anonymousId is required"
    if kind == "track" and "event" not in given:
        return "event", "is required for track"
    if kind == "group" and "groupId" not in given:
        return "groupId", "is required for group"
    return None


_Id = Annotated[str | None, BeforeValidator(_to_id)]
_Time = Annotated[datetime | None, BeforeValidator(_to_time)]
_Object = Annotated[dict[str, Any] | None, BeforeValidator(_to_object)]
_Text = Annotated[str | None, BeforeValidator(_to_text)]


class SegmentEvent(BaseModel):
    """One Segment event of any of the six types; attributes are snake_case, the wire camelCase.

    Type-specific fields are checked for their JSON type on every event type (Segment
    tolerates them in the wrong place, so they are kept), but only required where the spec
    requires them. Unknown top-level fields are kept as pydantic extras.
    """

    model_config = ConfigDict(extra="allow")

    type: Annotated[EventType, BeforeValidator(_to_type)]
    message_id: _Id = Field(default=None, alias="messageId")
    user_id: _Id = Field(default=None, alias="userId")
    anonymous_id: _Id = Field(default=None, alias="anonymousId")
    timestamp: _Time = None
    original_timestamp: _Time = Field(default=None, alias="originalTimestamp")
    sent_at: _Time = Field(default=None, alias="sentAt")
    received_at: _Time = Field(default=None, alias="receivedAt")
    context: _Object = None
    integrations: _Object = None
    properties: _Object = None
    traits: _Object = None
    event: Annotated[str | None, BeforeValidator(_to_event_name)] = None
    name: _Text = None
    category: _Text = None
    group_id: _Id = Field(default=None, alias="groupId")
    previous_id: _Id = Field(default=None, alias="previousId")

    @model_validator(mode="after")
    def _check_required_for_type(self) -> Self:
        given = {
            field.alias or name
            for name, field in type(self).model_fields.items()
            if getattr(self, name) is not None
        }
        missing = _missing_for_type(self.type, given)
        if missing is not None:
            raise _invalid(missing[1], field=missing[0])
        return self

    @field_serializer(
        "timestamp", "original_timestamp", "sent_at", "received_at", when_used="json-unless-none"
    )
    def _serialize_time(self, value: datetime) -> str:
        return _format_time(value)


def _join(where: str, field: str) -> str:
    if not field:
        return where
    if not where:
        return field
    return f"{where}{field}" if field.startswith("[") else f"{where}.{field}"


def _from_validation_error(exc: ValidationError, where: str) -> PayloadError:
    first = exc.errors(include_url=False, include_input=False)[0]
    path = ""
    for part in first["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    ctx = first.get("ctx") or {}
    if first["type"] == _ERROR_TYPE:
        field = str(ctx.get("field", path))
        reason = str(ctx.get("reason", first["msg"]))
    elif first["type"] == "missing":
        field, reason = path, "is required"
    else:
        # Not reachable through the validators above; still never let pydantic's text through.
        field, reason = path, first["msg"]
    return PayloadError(_join(where, field), reason)


def parse_event(obj: object, *, where: str = "", default_type: str | None = None) -> SegmentEvent:
    """Validate one event object.

    `where` prefixes error paths (`batch[3]` gives `batch[3].event`). `default_type` is the
    type implied by a single-event endpoint such as /v1/track: it fills a missing `type`, and a
    different `type` in the object is an error on `type`.
    """
    if not isinstance(obj, dict):
        raise PayloadError(where, "must be a JSON object")
    if default_type is not None:
        given = obj.get("type")
        if given is None:
            obj = {**obj, "type": default_type}
        elif given != default_type:
            raise PayloadError(
                _join(where, "type"),
                f"must be {default_type!r} on this endpoint (got {_short_repr(given)})",
            )
    try:
        return SegmentEvent.model_validate(obj)
    except ValidationError as exc:
        raise _from_validation_error(exc, where) from None


def _batch_default(obj: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    problem = _object_problem(value)
    if problem is not None:
        raise PayloadError(key, problem)
    assert isinstance(value, dict)
    return value


def parse_batch(obj: object) -> list[SegmentEvent]:
    """Validate a /v1/batch request body: `{"batch": [event, ...], ...}`.

    Batch-level `context` and `integrations` are defaults for every event (the event's own
    keys win, shallowly), and batch-level `sentAt` fills events that lack one, as Segment does
    for clock-skew correction. Other top-level keys (`writeKey`, ...) are accepted and ignored.
    """
    if not isinstance(obj, dict):
        raise PayloadError("", 'must be a JSON object with a "batch" list')
    if "batch" not in obj:
        raise PayloadError("batch", "is required")
    items = obj["batch"]
    if not isinstance(items, list):
        raise PayloadError("batch", "must be a list of events")
    if not items:
        raise PayloadError("batch", "must not be empty")
    defaults: dict[str, Any] = {}
    for key in ("context", "integrations"):
        value = _batch_default(obj, key)
        if value:
            defaults[key] = value
    if obj.get("sentAt") is not None:
        try:
            parse_time(obj["sentAt"])
        except ValueError:
            raise PayloadError("sentAt", "not an ISO 8601 date-time") from None
        defaults["sentAt"] = obj["sentAt"]

    events: list[SegmentEvent] = []
    for index, item in enumerate(items):
        where = f"batch[{index}]"
        if isinstance(item, dict):
            if item.get("type") is None:
                raise PayloadError(f"{where}.type", "is required")
            item = _with_defaults(item, defaults)
        events.append(parse_event(item, where=where))
    return events


def _with_defaults(item: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] | None = None
    for key, default in defaults.items():
        own = item.get(key)
        if own is None:
            value = default
        elif isinstance(own, dict) and isinstance(default, dict):
            value = {**default, **own}
        else:
            # Either the event's own scalar (sentAt) wins, or it is malformed and
            # validation reports it under the event's path.
            continue
        if merged is None:
            merged = dict(item)  # never mutate the caller's payload
        merged[key] = value
    return item if merged is None else merged


def to_record(event: SegmentEvent) -> dict[str, Any]:
    """The event as a JSON-ready dict in Segment's camelCase, without None fields.

    Date-times become UTC ISO 8601 strings with milliseconds and a `Z`; extra fields are kept.
    """
    return event.model_dump(mode="json", by_alias=True, exclude_none=True)


def _time_text(value: object) -> str | None:
    """A time field as `to_record` writes it."""
    moment = _to_time(value)
    return None if moment is None else _format_time(moment)


#: The model's fields by wire name, in its order (the order `to_record` writes them), each with
#: the check its model field runs first (its `BeforeValidator`), giving the value as written.
_FIELD_CHECKS: dict[str, Callable[[object], object]] = {
    "type": _to_type,
    "messageId": _to_id,
    "userId": _to_id,
    "anonymousId": _to_id,
    "timestamp": _time_text,
    "originalTimestamp": _time_text,
    "sentAt": _time_text,
    "receivedAt": _time_text,
    "context": _to_object,
    "integrations": _to_object,
    "properties": _to_object,
    "traits": _to_object,
    "event": _to_event_name,
    "name": _to_text,
    "category": _to_text,
    "groupId": _to_id,
    "previousId": _to_id,
}
#: Keys the fast path leaves to the model: a model attribute's own name given as a key.
_ATTRIBUTE_NAMES = frozenset(SegmentEvent.model_fields) - frozenset(_FIELD_CHECKS)


def event_dict(obj: object, *, where: str = "", default_type: str | None = None) -> dict[str, Any]:
    """`to_record(parse_event(obj, ...))`: the validated event as a JSON-ready dict.

    A well-formed event (the hot path: every event the ingest agent reads) is checked and written
    here, about four times faster than through the model; anything unusual, and every error,
    goes through the model, so that messages and edge cases have one definition
    (tests/unit/test_segment_fast.py checks both give the same bytes).
    """
    fast = _fast_dict(obj, default_type) if type(obj) is dict else None
    if fast is not None:
        return fast
    return to_record(parse_event(obj, where=where, default_type=default_type))


def _fast_dict(obj: dict[str, Any], default_type: str | None) -> dict[str, Any] | None:
    """The event as the model would write it, or None for anything the model should decide."""
    kind = obj.get("type")
    if default_type is not None and kind is None:
        kind = default_type
    if kind not in EVENT_TYPES or (default_type is not None and kind != default_type):
        return None
    fields: dict[str, Any] = {"type": kind}
    extras: dict[str, Any] = {}
    for key, value in obj.items():
        check = _FIELD_CHECKS.get(key)
        if check is None:
            if value is None or key in _ATTRIBUTE_NAMES or type(key) is not str:
                return None
            extras[key] = value
        elif value is not None:
            try:
                checked = check(value)
            except PydanticCustomError:
                return None
            if checked is not None:
                fields[key] = checked
    if _missing_for_type(kind, fields) is not None:
        return None
    written = {key: fields[key] for key in _FIELD_CHECKS if key in fields}
    written.update(extras)
    return written
