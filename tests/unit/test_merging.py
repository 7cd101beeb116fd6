"""A user holds its records from a merge's `await` until the anonymous history arrives."""

from __future__ import annotations

from typing import Any

from agents import merging


def record(n: int) -> dict[str, Any]:
    return {"kind": "event", "key": "u", "id": f"e{n}"}


def test_records_held_while_waiting_come_back_in_order_when_the_merge_arrives() -> None:
    state: dict[str, Any] = {"key": "u"}
    merging.expect(state, "m1")
    assert merging.waiting(state)
    for n in range(3):
        merging.park(state, record(n))
    assert merging.release(state, "m1") == [record(0), record(1), record(2)]
    assert not merging.waiting(state) and "parked" not in state and "awaiting" not in state


def test_an_absorb_or_a_release_completes_the_merge_it_names() -> None:
    assert merging.released_by({"kind": "absorb", "id": "m1"}) == "m1"
    assert merging.released_by(merging.release_record("u", "m2")) == "m2"
    assert merging.released_by(record(0)) is None


def test_two_merges_awaited_release_only_when_both_arrived() -> None:
    state: dict[str, Any] = {"key": "u"}
    merging.expect(state, "m1")
    merging.expect(state, "m2")
    merging.expect(state, "m1")  # a re-sent await waits once
    merging.park(state, record(0))
    assert merging.release(state, "m1") == []
    assert merging.waiting(state)
    assert merging.release(state, "m2") == [record(0)]


def test_a_user_holding_too_many_records_says_so() -> None:
    state: dict[str, Any] = {"key": "u"}
    merging.expect(state, "m1")
    full = [merging.park(state, record(n)) for n in range(merging.MAX_PARKED)]
    assert full[-1] and not any(full[:-1])
    assert len(merging.release(state)) == merging.MAX_PARKED
