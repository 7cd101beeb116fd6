"""The records that flow between Kairos's stages, as plain dicts.

They are built once from validated input (schemas/ checks the edges) and then read on the hot path
without re-validation; schemas/internal.py documents the same shapes as pydantic models.
Every record carries `id`, the identity that makes applying it idempotent.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal, NotRequired, TypedDict


class EventRecord(TypedDict):
    kind: Literal["event"]
    key: str  # profile key: the userId, or anon:<anonymousId>
    id: str  # the Segment messageId
    ts: int  # event time, epoch ms
    ingested: int  # when Kairos received it, epoch ms
    event: dict[str, Any]  # the Segment event, ids normalized


class TraitsRecord(TypedDict):
    kind: Literal["traits"]
    key: str
    id: str
    ts: int
    ingested: int
    source: str  # where the traits come from, as the producer names it (a CRM's name, ...)
    set: dict[str, Any]
    unset: list[str]
    origin: NotRequired[Literal["crm", "profile"]]  # the input topic it came from


class MergeRecord(TypedDict):
    """Sent to an anonymous profile once its anonymousId is linked to a user."""

    kind: Literal["merge"]
    key: str  # anon:<anonymousId>
    id: str
    into: str  # the user key


class AbsorbRecord(TypedDict):
    """Carries an anonymous profile's whole state to the user it was linked to."""

    kind: Literal["absorb"]
    key: str  # the user key
    id: str
    source_key: str  # anon:<anonymousId>
    state: dict[str, Any]
    ingested: NotRequired[int]


UserRecord = EventRecord | TraitsRecord | MergeRecord | AbsorbRecord


def digest(record_id: str) -> str:
    """A short, stable fingerprint of a record id, kept per user to drop duplicates."""
    return hashlib.blake2b(record_id.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def merge_id(anonymous_key: str, user_key: str) -> str:
    """Deterministic id of the merge of one anonymous profile into one user."""
    return f"merge:{anonymous_key}>{user_key}"


def merge_record(anonymous_key: str, user_key: str) -> MergeRecord:
    """The record telling an anonymous profile to hand itself over to a user."""
    return {
        "kind": "merge",
        "key": anonymous_key,
        "id": merge_id(anonymous_key, user_key),
        "into": user_key,
    }
