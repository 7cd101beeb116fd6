"""A consumer that delivers nothing while records wait is reported (app/consumer_gaps.py)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from app import consumer_gaps

USERS = TP("kairos.users", 3)
CHANGELOG = TP("kairos-profiles-changelog", 3)
OTHER = TP("kairos.users", 5)
NEVER = TP("kairos.events", 1)


class Flag:
    def __init__(self, value: bool) -> None:
        self.value = value

    def is_set(self) -> bool:
        return self.value


def consumer(ends: dict[TP, int], **state: Any) -> Any:
    app = SimpleNamespace(
        rebalancing=state.get("rebalancing", False),
        topics=SimpleNamespace(acks_enabled_for=lambda topic: not topic.endswith("changelog")),
        flow_control=SimpleNamespace(is_active=lambda: True),
        _fetcher=SimpleNamespace(state="running", _futures=set()),
    )
    fake = SimpleNamespace(
        app=app,
        ends=ends,
        flow_active=state.get("flow_active", True),
        can_resume_flow=Flag(True),
        suspend_flow=Flag(False),
        _active_partitions=set(state.get("active", ends)),
        _paused_partitions=set(state.get("paused", ())),
        _buffered_partitions=set(),
    )
    consumer_gaps.next_offsets(fake).update({USERS: 20, CHANGELOG: 5, OTHER: 7})
    return fake


def ends_of(fake: Any) -> dict[TP, int]:
    """The broker's end offsets of the stream partitions, as the timer asks them."""
    return {tp: end for tp, end in fake.ends.items() if not tp.topic.endswith("changelog")}


def look(fake: Any, now: float) -> dict[TP, tuple[int, int, float]]:
    return consumer_gaps.stalled_partitions(fake, ends_of(fake), now=now)


def stalled_after(fake: Any, seconds: float) -> dict[TP, tuple[int, int, float]]:
    """The stalled partitions seen `seconds` after a first look."""
    start = time.monotonic()
    look(fake, start)
    return look(fake, start + seconds)


def test_a_partition_whose_records_wait_and_do_not_move_is_stalled() -> None:
    fake = consumer({USERS: 25, OTHER: 7})
    stalled = stalled_after(fake, consumer_gaps.STALL_SECONDS + 1)
    # OTHER has nothing waiting (it delivers its ticks).
    assert list(stalled) == [USERS]
    assert stalled[USERS][:2] == (20, 25)
    assert stalled_after(consumer({USERS: 25}), consumer_gaps.STALL_SECONDS - 1) == {}


def test_a_partition_that_moved_on_is_not_stalled() -> None:
    fake = consumer({USERS: 25})
    start = time.monotonic()
    look(fake, start)
    consumer_gaps.next_offsets(fake)[USERS] = 21  # a record was delivered
    assert look(fake, start + consumer_gaps.STALL_SECONDS) == {}


def test_a_rebalance_starts_the_count_again() -> None:
    fake = consumer({USERS: 25})
    start = time.monotonic()
    look(fake, start)
    fake.app.rebalancing = True
    assert look(fake, start + 10) == {}
    fake.app.rebalancing = False
    assert look(fake, start + 20) == {}
    assert USERS in look(fake, start + 40)


def test_the_report_gives_each_stalled_partition_and_the_flow_state() -> None:
    fake = consumer({USERS: 25}, paused={USERS})
    report = consumer_gaps.stall_report(fake, {USERS: (20, 25, 16.0)})
    assert "kairos.users[3] next 20 end 25 for 16 s paused" in report
    assert "inactive" not in report
    assert "flow_active=True" in report
    out = consumer_gaps.stall_report(consumer({USERS: 25}, active=()), {USERS: (20, 25, 16.0)})
    assert "kairos.users[3] next 20 end 25 for 16 s inactive" in out


def test_a_stall_is_reported_once_until_the_partition_moves_on() -> None:
    fake = consumer({USERS: 25})
    look(fake, time.monotonic() - consumer_gaps.STALL_SECONDS - 1)
    first = consumer_gaps.new_stall(fake, look(fake, time.monotonic()))
    assert first is not None and "kairos.users[3] next 20" in first
    # A fake consumer has no Kafka client thread: the report says so instead of failing.
    assert "consumer thread state unreadable" in first
    assert consumer_gaps.new_stall(fake, look(fake, time.monotonic())) is None
    consumer_gaps.next_offsets(fake)[USERS] = 22  # moved on, then stuck again
    look(fake, time.monotonic() - consumer_gaps.STALL_SECONDS - 1)
    again = consumer_gaps.new_stall(fake, look(fake, time.monotonic()))
    assert again is not None and "kairos.users[3] next 22" in again


def test_a_partition_that_never_delivered_waits_from_its_first_offset() -> None:
    fake = consumer({NEVER: 4})
    assert consumer_gaps.next_offsets(fake).get(NEVER) is None  # nothing delivered or committed
    assert stalled_after(fake, consumer_gaps.STALL_SECONDS + 1)[NEVER][:2] == (0, 4)
    assert stalled_after(consumer({NEVER: 0}), consumer_gaps.STALL_SECONDS + 1) == {}


def test_a_client_thread_that_does_not_answer_is_reported_once_until_it_answers() -> None:
    fake = consumer({USERS: 20})
    first = consumer_gaps.unanswered(fake, [USERS], TimeoutError())
    assert first is not None and "gave no end offsets" in first
    assert consumer_gaps.unanswered(fake, [USERS], TimeoutError()) is None
    consumer_gaps.answered(fake)
    assert consumer_gaps.unanswered(fake, [USERS], TimeoutError()) is not None


class Seeks:
    """The consumer's seeks, as the Kafka client thread would be asked for them."""

    def __init__(self, earliest: dict[TP, int]) -> None:
        self.earliest = earliest
        self.done: list[dict[TP, int]] = []

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.earliest[tp] for tp in tps}

    async def seek_wait(self, offsets: dict[TP, int]) -> None:
        self.done.append(dict(offsets))


def test_after_the_seek_to_committed_every_stream_partition_is_at_its_next_offset() -> None:
    """aiokafka seeks only to committed offsets above 0: the others kept a position past
    records fetched and dropped at a rebalance, and those were never delivered."""
    fake = consumer({USERS: 25, NEVER: 4})
    seeks = Seeks({NEVER: 2, CHANGELOG: 0})
    fake.assignment = lambda: {USERS, NEVER, CHANGELOG}
    fake.app.topics.acks_enabled_for = lambda topic: not topic.endswith("changelog")
    fake._read_offset = {USERS: 20, NEVER: None, CHANGELOG: None}
    fake.earliest_offsets, fake.seek_wait = seeks.earliest_offsets, seeks.seek_wait
    asyncio.run(consumer_gaps._seek_streams_to_next(fake))
    # All stream partitions at once: the committed one at its offset, the other at its first;
    # not a changelog.
    assert seeks.done == [{USERS: 20, NEVER: 2}]
    assert consumer_gaps.next_offsets(fake)[NEVER] == 2


def test_a_stalled_partition_is_fetched_again_from_its_next_offset() -> None:
    fake = consumer({USERS: 25, NEVER: 4})
    seeks = Seeks({})
    fake.seek_wait = seeks.seek_wait
    stalled = stalled_after(fake, consumer_gaps.STALL_SECONDS + 1)
    asyncio.run(consumer_gaps.resume_stalled(fake, stalled))
    assert sorted(seeks.done, key=str) == sorted([{USERS: 20}, {NEVER: 0}], key=str)
    assert look(fake, time.monotonic()) == {}  # counted from the seek again
