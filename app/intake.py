"""From wire input to internal records: validation, identity normalization, event time.

Shared by the HTTP collector, the ingest agents and the offline replay, so that one event gets the
same id, key and time whichever door it came through. Raises `Rejected` with a reason naming the
field for anything that cannot become a record.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from pydantic import ValidationError

from engine.clock import MAX_CLOCK_AHEAD_MS, event_time_ms, iso, parse_iso_ms, to_ms
from engine.identity import InvalidIdentifier, identity_key, normalize_id
from engine.records import EventRecord, TraitsRecord
from schemas.crm import CrmRecord, ProfileUpdate
from schemas.dlq import ReasonCode
from schemas.segment import MAX_EVENT_BYTES, PayloadError, event_dict, too_deep

_ID_FIELDS = ("userId", "anonymousId", "previousId")


class Rejected(ValueError):
    """Input that cannot become a record; `code` classifies it, the message says why."""

    def __init__(self, code: ReasonCode, reason: str) -> None:
        super().__init__(reason)
        self.code: ReasonCode = code
        self.reason = reason


def decode_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejected("invalid_json", f"not valid JSON: {exc}") from exc


def content_id(obj: object) -> str:
    """A deterministic id for input that carries none: the same content gets the same id."""
    canonical = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    return "kairos-" + hashlib.blake2b(canonical, digest_size=16).hexdigest()


def event_record(
    obj: object,
    received_ms: int,
    *,
    where: str = "",
    default_type: str | None = None,
    as_written: bool = False,
) -> EventRecord:
    """Validate one Segment event and turn it into a record keyed by its identity key.

    `as_written`: the size limit holds for the normalized event too. The HTTP collector writes
    the normalized event (with a receive time, an id, times with milliseconds: some bytes more)
    to `kairos.events`, where the ingest agent checks the limit again; without this, an event
    just under 32 KB would be accepted by the collector and then dead-lettered.
    """
    prefix = f"{where}." if where else ""
    label = f"{where}: " if where else ""
    if isinstance(obj, dict):
        # Before anything serializes it: orjson writes at most 254 levels, and unknown fields
        # (kept as extras) are not checked by the schema.
        _check_nesting(obj, prefix)
        size = len(orjson.dumps(obj))
        if size > MAX_EVENT_BYTES:
            raise Rejected("too_large", f"{label}event is {size} bytes, more than the 32 KB limit")
    try:
        event = event_dict(obj, where=where, default_type=default_type)
    except PayloadError as exc:
        raise Rejected("invalid_event", str(exc)) from exc
    for field in _ID_FIELDS:
        if field in event:
            try:
                normalized = normalize_id(event[field])
            except InvalidIdentifier as exc:
                raise Rejected("invalid_identifier", f"{prefix}{field}: {exc}") from exc
            if normalized is None:
                del event[field]
            else:
                event[field] = normalized
    if not event.get("messageId"):
        event["messageId"] = content_id(obj)
    received = _ms(event.get("receivedAt")) or received_ms
    event["receivedAt"] = event.get("receivedAt") or iso(received)
    at = event_time_ms(
        _ms(event.get("timestamp")),
        _ms(event.get("sentAt")),
        _ms(event.get("originalTimestamp")),
        received,
    )
    if as_written:
        size = len(orjson.dumps(event))
        if size > MAX_EVENT_BYTES:
            raise Rejected(
                "too_large",
                f"{label}event is {size} bytes once normalized, more than the 32 KB limit",
            )
    return {
        "kind": "event",
        "key": identity_key(event),
        "id": str(event["messageId"]),
        "ts": at,
        "ingested": received_ms,
        "event": event,
    }


def event_records(raw: bytes, received_ms: int) -> list[EventRecord | Rejected]:
    """Every event in one input record: a single event or a `{"batch": [...]}` envelope.

    A bad event inside an envelope rejects that event only.
    """
    try:
        obj = decode_json(raw)
    except Rejected as exc:
        return [exc]
    if isinstance(obj, dict) and "batch" in obj and "type" not in obj:
        batch = obj["batch"]
        if not isinstance(batch, list):
            return [Rejected("invalid_event", "batch: must be a list of events")]
        return [_try_event(item, received_ms, f"batch[{i}]") for i, item in enumerate(batch)]
    return [_try_event(obj, received_ms, "")]


def _try_event(obj: object, received_ms: int, where: str) -> EventRecord | Rejected:
    try:
        return event_record(obj, received_ms, where=where)
    except Rejected as exc:
        return exc


def crm_record(raw: bytes, received_ms: int) -> TraitsRecord:
    """A `kairos.crm` record (schemas.crm.CrmRecord) as a traits update of its user."""
    obj = decode_json(raw)
    if isinstance(obj, dict):
        _check_nesting(obj, "")
    try:
        crm = CrmRecord.model_validate(obj)
    except ValidationError as exc:
        raise Rejected("invalid_event", _first_error(exc)) from exc
    at = _not_ahead(to_ms(crm.updated_at), received_ms) if crm.updated_at else received_ms
    return {
        "kind": "traits",
        "key": _user_key(crm.user_id),
        "id": crm.record_id or content_id(obj),
        "ts": at,
        "ingested": received_ms,
        "source": crm.source,
        "set": crm.traits,
        "unset": [],
        "origin": "crm",
    }


def profile_update_record(raw: bytes, received_ms: int) -> TraitsRecord:
    """A `kairos.profiles` record (schemas.crm.ProfileUpdate) as a traits update."""
    obj = decode_json(raw)
    if isinstance(obj, dict):
        _check_nesting(obj, "")
    try:
        update = ProfileUpdate.model_validate(obj)
    except ValidationError as exc:
        raise Rejected("invalid_event", _first_error(exc)) from exc
    if not update.set and not update.unset:
        raise Rejected("invalid_event", "set: a profile update needs `set` or `unset`")
    return {
        "kind": "traits",
        "key": _user_key(update.user_id),
        "id": update.update_id or content_id(obj),
        "ts": _not_ahead(to_ms(update.timestamp), received_ms) if update.timestamp else received_ms,
        "ingested": received_ms,
        "source": update.source,
        "set": update.set,
        "unset": update.unset,
        "origin": "profile",
    }


def _check_nesting(obj: dict[str, Any], prefix: str) -> None:
    for field, value in obj.items():
        if isinstance(value, dict | list) and too_deep(value):
            raise Rejected("invalid_event", f"{prefix}{field}: nested too deeply")


def _not_ahead(at: int, received_ms: int) -> int:
    """A trait write's time, or the read time when it is more than a day ahead of it.

    As for event times (engine.clock.event_time_ms): a far-future time (a CRM's 9999-12-31) is a
    broken clock or a sentinel, and would otherwise win over every later write of the trait.
    """
    return received_ms if at > received_ms + MAX_CLOCK_AHEAD_MS else at


def _user_key(user_id: str) -> str:
    try:
        key = normalize_id(user_id)
    except InvalidIdentifier as exc:
        raise Rejected("invalid_identifier", f"user_id: {exc}") from exc
    if key is None:
        raise Rejected("invalid_identifier", "user_id: must not be blank")
    return key


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    path = ".".join(str(part) for part in error["loc"]) or "record"
    return f"{path}: {error['msg']}"


def _ms(value: object) -> int | None:
    return parse_iso_ms(value) if isinstance(value, str) else None
