"""Holding a user's records while an anonymous profile's state is on its way to them.

When an anonymousId is first linked to a user, the identity agent sends the link's record to the
user, then an `await` for the merge, and a merge to the anonymous profile, which hands its state
over in an `absorb` record (or, with nothing to hand over, a `release`). That hand-over takes a
hop of its own, so the user's next records would arrive before it. The replay applies the
anonymous history at once, right after the linking record; so does the live pipeline, by parking
the user's records in its state from the `await` until the hand-over arrives, then applying them
in order. This also makes a visitor's event delivered twice (a crash, a client's retry) count
once: it is applied after the anonymous profile's record ids, and dropped as one of them.

Plain functions over the user's state (a dict) so that they are tested without a broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.profile import UserState

#: Records a user holds at most while waiting: past it, a lost hand-over costs order, not data.
MAX_PARKED = 2000


def await_record(user_key: str, merge_id: str) -> dict[str, Any]:
    """Tells the user to hold its records until the merge `merge_id` is handed over."""
    return {"kind": "await", "key": user_key, "id": f"await:{merge_id}", "merge": merge_id}


def release_record(user_key: str, merge_id: str) -> dict[str, Any]:
    """Sent instead of an absorb when the anonymous profile has nothing (more) to hand over."""
    return {"kind": "release", "key": user_key, "id": f"release:{merge_id}", "merge": merge_id}


def expect(state: UserState, merge_id: str) -> None:
    awaiting = state.setdefault("awaiting", [])
    if merge_id not in awaiting:
        awaiting.append(merge_id)


def waiting(state: UserState | None) -> bool:
    return bool(state and state.get("awaiting"))


def released_by(record: Mapping[str, Any]) -> str | None:
    """The merge a record completes: an absorb's id, or a release's merge."""
    if record.get("kind") == "absorb":
        return str(record["id"])
    if record.get("kind") == "release":
        return str(record["merge"])
    return None


def park(state: UserState, record: Mapping[str, Any]) -> bool:
    """Hold a record; True when the user holds too many and should stop waiting."""
    parked = state.setdefault("parked", [])
    parked.append(record)
    return len(parked) >= MAX_PARKED


def release(state: UserState, merge_id: str | None = None) -> list[Any]:
    """Stop waiting for `merge_id` (every merge when None); the records to apply now, in order."""
    awaiting = state.get("awaiting", [])
    if merge_id is None:
        awaiting.clear()
    elif merge_id in awaiting:
        awaiting.remove(merge_id)
    if awaiting:
        return []
    state.pop("awaiting", None)
    return list(state.pop("parked", []))
