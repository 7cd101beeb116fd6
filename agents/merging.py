"""Holding a user's records while an anonymous profile's state is on its way to them.

When an anonymousId is first linked to a user, the identity agent sends the link's record to the
user, then an `await` for the merge, and a merge to the anonymous profile, which hands its state
over in an `absorb` record (or, with nothing to hand over, a `release`). That hand-over takes a
hop of its own, so the user's next records would arrive before it. The replay applies the
anonymous history at once, right after the linking record; so does the live pipeline, by parking
the user's records in its state from the `await` until the hand-over arrives, then applying them
in order. This also makes a visitor's event delivered twice (a crash, a client's retry) count
once: it is applied after the anonymous profile's record ids, and dropped as one of them.

The hand-over can also arrive *before* its `await`: a worker killed while sending the identity
agent's records may have delivered the merge but not the user's records, which are sent again
after the anonymous profile has already handed over. Applied on arrival, the absorb would come
before the linking record, not after it as in the replay (and a timer the linking record re-arms
would name the wrong cause). Such a hand-over is held until its `await`.

Plain functions over the user's state (a dict) so that they are tested without a broker.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

from engine.profile import UserState

log = logging.getLogger(__name__)

#: Records a user holds at most while waiting: past it, a lost hand-over costs order, not data.
MAX_PARKED = 2000
#: Merges a user remembers as over (handed over, or given up on), so that a hand-over or an
#: `await` sent again is not taken for one that came early.
MAX_HANDED = 64


def await_record(user_key: str, merge_id: str) -> dict[str, Any]:
    """Tells the user to hold its records until the merge `merge_id` is handed over."""
    return {"kind": "await", "key": user_key, "id": f"await:{merge_id}", "merge": merge_id}


def release_record(user_key: str, merge_id: str) -> dict[str, Any]:
    """Sent instead of an absorb when the anonymous profile has nothing (more) to hand over."""
    return {"kind": "release", "key": user_key, "id": f"release:{merge_id}", "merge": merge_id}


def waiting(state: UserState | None) -> bool:
    return bool(state and state.get("awaiting"))


def released_by(record: Mapping[str, Any]) -> str | None:
    """The merge a record completes: an absorb's id, or a release's merge."""
    if record.get("kind") == "absorb":
        return str(record["id"])
    if record.get("kind") == "release":
        return str(record["merge"])
    return None


def arrive(state: UserState, record: Mapping[str, Any]) -> list[Any]:
    """Take in a record that reached the user; the records to apply now, in order (maybe none).

    - An `await`: the user holds what follows until the merge is handed over; at once when the
      hand-over came first (held, it is applied now: right after the linking record, as in the
      replay); not at all when the merge is over (an `await` sent again).
    - A hand-over (absorb or release) of a merge awaited: the absorb, then the records held for
      it. One of a merge not yet awaited is held until its `await`; one of a merge over is
      applied (an absorb sent again is dropped by its id; a late one is merged).
    - Anything else: held while the user waits, else applied.
    A release applies nothing itself and is never returned; nor is an `await`.
    """
    ready: list[Any] = []
    queue: deque[Mapping[str, Any]] = deque([record])
    while queue:
        item = queue.popleft()
        kind = item.get("kind")
        done = released_by(item)
        if done is None and waiting(state):
            parked = state.setdefault("parked", [])
            parked.append(item)
            if len(parked) >= MAX_PARKED:
                log.warning("a merge never arrived: applying the records held for it")
                queue.extendleft(reversed(_give_up(state)))
        elif kind == "await":
            merge = str(item["merge"])
            early = state.get("early", {}).pop(merge, None)
            if early is not None:
                _expect(state, merge)
                queue.appendleft(early)
            elif merge not in state.get("handed", []):
                _expect(state, merge)
        elif done is not None and done in state.get("awaiting", []):
            if kind == "absorb":
                ready.append(item)
            queue.extendleft(reversed(_over(state, done)))
        elif done is not None and done not in state.get("handed", []):
            state.setdefault("early", {})[done] = item
        elif kind != "release":
            ready.append(item)
    if not state.get("early"):
        state.pop("early", None)
    return ready


def _expect(state: UserState, merge_id: str) -> None:
    awaiting = state.setdefault("awaiting", [])
    if merge_id not in awaiting:
        awaiting.append(merge_id)


def _over(state: UserState, merge_id: str) -> list[Any]:
    """The merge is handed over: remember it; the records held, once no merge is awaited."""
    awaiting = state.get("awaiting", [])
    if merge_id in awaiting:
        awaiting.remove(merge_id)
    _remember(state, [merge_id])
    if awaiting:
        return []
    state.pop("awaiting", None)
    return list(state.pop("parked", []))


def _give_up(state: UserState) -> list[Any]:
    """Stop waiting for every merge (their hand-overs, if they come, are merged late)."""
    _remember(state, state.pop("awaiting", []))
    return list(state.pop("parked", []))


def _remember(state: UserState, merges: list[str]) -> None:
    handed = state.setdefault("handed", [])
    handed += [m for m in merges if m not in handed]
    del handed[: max(0, len(handed) - MAX_HANDED)]
