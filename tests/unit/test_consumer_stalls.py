"""A consumer that delivers nothing while records wait is reported (app/consumer_gaps.py)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from app import consumer_gaps

USERS = TP("kairos.users", 3)
CHANGELOG = TP("kairos-profiles-changelog", 3)


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
        highwater=ends.__getitem__,
        flow_active=state.get("flow_active", True),
        can_resume_flow=Flag(True),
        suspend_flow=Flag(False),
        _active_partitions=set(state.get("active", ends)),
        _paused_partitions=set(state.get("paused", ())),
        _buffered_partitions=set(),
    )
    consumer_gaps.next_offsets(fake).update({USERS: 20, CHANGELOG: 5})
    fake._kairos_last_delivery = time.monotonic() - state.get("idle", 60.0)
    return fake


def test_records_waiting_and_nothing_delivered_for_a_while_is_a_stall() -> None:
    report = consumer_gaps.stall_report(consumer({USERS: 25, CHANGELOG: 9}, paused={USERS}))
    assert report is not None
    assert "1 partitions have records waiting" in report  # the changelog is not a stream topic
    assert "kairos.users[3] next 20 end 25 paused inactive" not in report
    assert "kairos.users[3] next 20 end 25 paused" in report
    assert "flow_active=True" in report


def test_a_partition_out_of_the_active_set_says_so() -> None:
    report = consumer_gaps.stall_report(consumer({USERS: 25}, active=()))
    assert report is not None and "kairos.users[3] next 20 end 25 inactive" in report


def test_no_stall_when_a_record_came_lately_nothing_waits_or_a_rebalance_is_on() -> None:
    assert consumer_gaps.stall_report(consumer({USERS: 25}, idle=1.0)) is None
    assert consumer_gaps.stall_report(consumer({USERS: 20})) is None
    assert consumer_gaps.stall_report(consumer({USERS: 25}, rebalancing=True)) is None


def test_a_stall_is_reported_once_until_a_record_is_delivered_again() -> None:
    stalled = consumer({USERS: 25})
    assert consumer_gaps.new_stall(stalled) is not None
    assert consumer_gaps.new_stall(stalled) is None
    stalled._kairos_last_delivery -= 1.0  # delivered since, then stalled again
    assert consumer_gaps.new_stall(stalled) is not None
