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
from aiokafka.errors import IllegalStateError
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


def _refetches() -> float:
    value = REGISTRY.get_sample_value("kairos_consumer_refetches_total", {"topic": TOPIC})
    return value or 0.0


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


class Drain:
    """The drain loop of a real (unstarted) Faust consumer, with its broker operations scripted:
    the fetches (`getmany`), the seek to the committed offsets and the seek of one partition."""

    def __init__(
        self,
        batches: list[list[int]],
        committed: int,
        stop_after: int,
        commit_every: int | None = None,
    ) -> None:
        self.batches, self.committed, self.stop_after = batches, committed, stop_after
        self.commit_every = commit_every
        #: Raised by the scripted seek, as the consumer's thread may hand back.
        self.seek_error: BaseException | None = None
        #: Raised once by the scripted seek to the committed offsets.
        self.committed_error: BaseException | None = None
        self.delivered: list[int] = []
        self.seeks: list[int] = []  # offsets of the seeks back of one partition
        #: An action on the consumer before the fetch of the batch of that index.
        self.before_batch: dict[int, Any] = {}
        self.tp = TP(TOPIC, 1)

    async def run(self, on_commit: Any = None) -> Any:
        # Faust binds its services to the loop running when they are made: make them in it.
        app = faust.App("drain-test", broker="kafka://127.0.0.1:1")
        consumer: Any = app.consumer
        app.topics._acking_topics.add(TOPIC)
        fetcher = Service()
        tp = self.tp

        fetches = 0

        async def getmany(timeout: float) -> AsyncIterator[tuple[TP, Message]]:
            nonlocal fetches
            action = self.before_batch.get(fetches)
            fetches += 1
            if action is not None:
                await action(consumer)
            for offset in self.batches.pop(0) if self.batches else []:
                yield tp, Message(TOPIC, 1, offset, 0.0, 0, None, None, b"v", None)

        async def callback(message: Message) -> None:
            self.delivered.append(message.offset)
            consumer._n_acked += 1
            if len(self.delivered) == self.stop_after:
                await fetcher.stop()

        async def seek_to_committed() -> dict[TP, int]:
            error, self.committed_error = self.committed_error, None
            if error is not None:
                raise error
            return {tp: self.committed}

        async def seek_wait(partitions: dict[TP, int]) -> None:
            self.seeks.extend(partitions.values())
            if self.seek_error is not None:
                raise self.seek_error

        async def commit() -> bool:
            if on_commit is not None:
                await on_commit(consumer)
            return True

        consumer.getmany = getmany
        consumer.callback = callback
        consumer.seek_to_committed = seek_to_committed
        consumer.seek_wait = seek_wait
        consumer.commit = commit
        consumer._commit_every = self.commit_every
        await consumer.perform_seek()
        await asyncio.wait_for(consumer._drain_messages(fetcher), timeout=5)
        return consumer


def test_a_record_held_across_a_rebalance_is_fetched_again_in_order() -> None:
    """Offsets 5 and 6 are fetched. Before 6 is delivered the loop commits (every
    `commit_every` acks), and a whole rebalance happens during that commit: the flow stops, the
    agents' buffers are dropped (5 with them), the consumer seeks to the committed offset 5 and
    the flow resumes. Faust's loop then delivered 6, took it as the read offset and dropped the
    re-fetched 5 as already read. Now 6 is held back, 5 is fetched again, then 5 and 6 follow.
    """
    deliver_in_order()
    drain = Drain([[5, 6], [5, 6]], committed=5, stop_after=3, commit_every=1)
    before = _refetches()
    rebalanced: list[bool] = []

    async def rebalance_once(consumer: Any) -> None:
        if not rebalanced:
            rebalanced.append(True)
            consumer.stop_flow()
            await consumer.perform_seek()
            consumer.resume_flow()

    consumer = asyncio.run(drain.run(rebalance_once))
    assert drain.delivered == [5, 5, 6]
    assert drain.seeks == [5]
    assert not consumer._gap[drain.tp]
    assert _refetches() == before + 1


def _rebalance_before_13(failed_seek: bool) -> list[int]:
    """Offsets 10 to 14 are fetched; before 13 is delivered a rebalance begins, and the flow
    resumes before its seek (fetched before the next batch). With `failed_seek`, Faust's fetcher
    asks for a seek of its own while the flow is stopped, and it fails. The offsets delivered."""
    deliver_in_order()
    drain = Drain([[10, 11, 12, 13, 14], [12, 13, 14]], committed=10, stop_after=6, commit_every=1)

    async def rebalance(consumer: Any) -> None:
        if drain.delivered == [10, 11, 12] and drain.committed == 10:
            consumer.stop_flow()
            drain.committed = 12  # 10 and 11 were applied; 12 was in a buffer, dropped
            if failed_seek:
                drain.committed_error = IllegalStateError("No current assignment for partition")
                with pytest.raises(IllegalStateError):
                    await consumer.perform_seek()  # what Faust's getmany does, flow stopped
            consumer.resume_flow()  # recovery reads the changelogs with the flow on

    async def seek(consumer: Any) -> None:
        await consumer.perform_seek()

    drain.before_batch[1] = seek
    asyncio.run(drain.run(rebalance))
    return drain.delivered


def test_records_fetched_after_a_rebalance_began_wait_for_its_seek() -> None:
    """Offsets 10 to 14 are fetched. Before 13 is delivered a rebalance begins: the agents'
    buffers are dropped (12 with them), and the flow resumes while the worker recovers, before
    the seek to the committed offset 12. Faust's loop delivered 13 and 14 meanwhile, and 12,
    fetched again after the seek, came after them: the profiles agent skipped it as applied
    already. Now no record is delivered until the seek, and 12, 13, 14 follow it in order.
    """
    assert _rebalance_before_13(failed_seek=False) == [10, 11, 12, 12, 13, 14]


def test_a_seek_that_fails_during_a_rebalance_is_not_the_seek_records_wait_for() -> None:
    """As above, but while the flow is stopped Faust's fetcher asks for a seek of its own, and
    it fails: a partition was assigned away meanwhile. Faust logs that and goes on ("exception
    performing seek when flow not active"). Taken for the rebalance's seek, it let 13 and 14,
    fetched before the real seek, meet the next offset of before the rebalance: 12 was then
    skipped as applied already. Now records still wait for a seek that succeeds.
    """
    assert _rebalance_before_13(failed_seek=True) == [10, 11, 12, 12, 13, 14]


def test_an_offset_a_fetch_skipped_is_fetched_again_not_committed_unread() -> None:
    """The embedded broker's fetch returns 5, 7: 6, being written, is skipped. Faust recorded
    6 as a gap and committed it unread; now 7 waits and 6 is fetched again."""
    deliver_in_order()
    drain, before = Drain([[5, 7], [6, 7]], committed=5, stop_after=3), _refetches()
    consumer = asyncio.run(drain.run())
    assert drain.delivered == [5, 6, 7]
    assert drain.seeks == [6]
    assert not consumer._gap[drain.tp]
    assert _refetches() == before + 1


def test_a_jump_that_lasts_is_a_gap(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offset 6 never comes (a transaction marker, or removed by retention): after the
    re-fetches 7 is delivered, and 6 is recorded as a gap, counted and logged."""
    deliver_in_order()
    watch_gaps(expected=False)
    monkeypatch.setattr("app.consumer_gaps.REFETCH_SECONDS", 0.0)
    batches = [[5, 7], [7], [7], [7]]
    drain, gaps = Drain(batches, committed=5, stop_after=2), _gaps()
    with caplog.at_level(logging.WARNING, logger="app.consumer_gaps"):
        consumer = asyncio.run(drain.run())
    assert drain.delivered == [5, 7]
    assert drain.seeks == [6, 6]  # REFETCHES
    assert sorted((i.begin, i.end) for i in consumer._gap[drain.tp]) == [(6, 7)]
    assert _gaps() == gaps + 1
    assert f"consumer gap on {TOPIC}[1]: offsets 6 to 6" in caplog.text


def test_records_read_already_are_dropped() -> None:
    deliver_in_order()
    drain = Drain([[5, 6], [5, 6, 7]], committed=5, stop_after=3)
    asyncio.run(drain.run())
    assert drain.delivered == [5, 6, 7]
    assert drain.seeks == []


def test_a_seek_cancelled_in_the_consumer_does_not_end_the_loop() -> None:
    """A CancelledError handed back by the consumer's thread would have stopped Faust's fetcher
    for good (it restarts the loop only during a rebalance): the loop logs it and goes on."""
    deliver_in_order()
    drain = Drain([[5, 7], [6, 7]], committed=5, stop_after=3)
    drain.seek_error = asyncio.CancelledError()
    asyncio.run(drain.run())
    assert drain.delivered == [5, 6, 7]
    assert drain.seeks == [6]
