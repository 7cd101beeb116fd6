"""A gap Faust's consumer records (offsets it will commit unread) is counted and logged."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.transport.consumer import Consumer
from faust.types import TP, Message
from intervaltree import IntervalTree
from mode import Service
from prometheus_client import REGISTRY

from app.consumer_gaps import deliver_in_order, watch_gaps

TOPIC = "gaps-test.users"


def _gaps() -> float:
    value = REGISTRY.get_sample_value("kairos_consumer_gaps_total", {"topic": TOPIC})
    return value or 0.0


def _stale() -> float:
    return REGISTRY.get_sample_value("kairos_consumer_stale_records_total") or 0.0


def _consumer() -> SimpleNamespace:
    """What Faust's `Consumer._add_gap` reads and writes: committed offsets and gaps."""
    return SimpleNamespace(
        _committed_offset=defaultdict(lambda: None), _gap=defaultdict(IntervalTree)
    )


def test_a_gap_is_counted_logged_and_still_recorded_by_faust(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch_gaps(expected=False)
    consumer, tp, before = _consumer(), TP(TOPIC, 3), _gaps()
    with caplog.at_level(logging.WARNING, logger="app.consumer_gaps"):
        asyncio.run(Consumer._add_gap(consumer, tp, 41, 49))
    assert _gaps() == before + 1
    assert f"consumer gap on {TOPIC}[3]: offsets 41 to 49 will be committed" in caplog.text
    # Faust's own bookkeeping goes on unchanged: the offsets count as acknowledged for commits.
    assert sorted((i.begin, i.end) for i in consumer._gap[tp]) == [(41, 50)]


def test_only_offsets_after_the_committed_one_are_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch_gaps(expected=False)
    consumer, tp, before = _consumer(), TP(TOPIC, 5), _gaps()
    consumer._committed_offset[tp] = 44
    with caplog.at_level(logging.WARNING, logger="app.consumer_gaps"):
        asyncio.run(Consumer._add_gap(consumer, tp, 41, 49))
        asyncio.run(Consumer._add_gap(consumer, tp, 30, 40))  # all committed already: no gap
    assert _gaps() == before + 1
    assert f"consumer gap on {TOPIC}[5]: offsets 45 to 49 will be committed" in caplog.text
    assert "offsets 30 to 40" not in caplog.text
    assert sorted((i.begin, i.end) for i in consumer._gap[tp]) == [(45, 50)]


def test_expected_gaps_are_counted_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    watch_gaps(expected=True)
    try:
        consumer, tp, before = _consumer(), TP(TOPIC, 0), _gaps()
        with caplog.at_level(logging.WARNING, logger="app.consumer_gaps"):
            asyncio.run(Consumer._add_gap(consumer, tp, 7, 7))
        assert _gaps() == before + 1
        assert "consumer gap" not in caplog.text
    finally:
        watch_gaps(expected=False)


def _record(tp: TP, offset: int) -> Message:
    return Message(tp.topic, tp.partition, offset, 0.0, 0, None, None, b"v", None)


def test_a_record_held_across_a_rebalance_is_read_again_not_delivered_out_of_order() -> None:
    """The drain loop of a real (unstarted) Faust consumer, fed by a scripted fetch.

    Offsets 5 and 6 are fetched. Before 6 is delivered the loop commits (every `commit_every`
    acks), and a whole rebalance happens during that commit: the flow stops, the agents' buffers
    are dropped (5 with them), the consumer seeks to the committed offset 5 and the flow
    resumes. Faust's loop then delivered 6, took it as the read offset and dropped the re-fetched
    5 as already read. Now 6 is dropped, the consumer seeks again, and 5 and 6 are delivered.
    """
    deliver_in_order()
    before = _stale()
    # Faust binds its services to the loop running when they are made: make them in it.
    delivered, seeks, consumer, tp = asyncio.run(_drain_with_a_rebalance_in_a_commit())
    assert delivered == [5, 5, 6]
    assert seeks == [5, 5]  # the rebalance's seek, then the loop's own
    assert consumer._read_offset[tp] == 6
    assert not consumer._gap[tp]
    assert _stale() == before + 1


async def _drain_with_a_rebalance_in_a_commit() -> tuple[list[int], list[int], Any, TP]:
    app = faust.App("drain-test", broker="kafka://127.0.0.1:1")
    consumer: Any = app.consumer
    tp = TP(TOPIC, 1)
    app.topics._acking_topics.add(TOPIC)
    fetcher = Service()
    delivered: list[int] = []
    seeks: list[int] = []
    batches = [[5, 6], [5, 6]]

    async def getmany(timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        for offset in batches.pop(0):
            yield tp, Message(TOPIC, 1, offset, 0.0, 0, None, None, b"v", None)

    async def callback(message: Message) -> None:
        delivered.append(message.offset)
        consumer._n_acked += 1
        if len(delivered) == 3:
            await fetcher.stop()

    async def commit() -> bool:
        if not seeks:  # the first commit spans a rebalance
            consumer.stop_flow()
            await consumer.perform_seek()
            consumer.resume_flow()
        return True

    async def seek_to_committed() -> dict[TP, int]:
        seeks.append(5)
        return {tp: 5}

    consumer.getmany = getmany
    consumer.callback = callback
    consumer.commit = commit
    consumer.seek_to_committed = seek_to_committed
    consumer._commit_every = 1
    await asyncio.wait_for(consumer._drain_messages(fetcher), timeout=5)
    return delivered, seeks, consumer, tp
