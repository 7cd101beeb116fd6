"""Faust's consumer gaps: offsets it commits without having delivered them.

Faust's consumer (faust-streaming 0.15.3, `Consumer._drain_messages`) takes a record whose offset
is more than one past the last one it read for the end of a gap (compacted records, transaction
markers) and commits the offsets in between as if they had been processed. Kairos's topics have
no compacted records, and transaction markers only with `exactly_once`. Yet gaps happened at
rebalances (faust-streaming issues #216 and #221): the drain loop holds a fetched batch across
its awaits, and a record fetched before the rebalance's seek to the committed offset was
delivered after it. Its offset then looked like a jump forward, the offsets in between (queued
before the rebalance and dropped with the agents' buffers) were committed unread, and their
re-fetch was dropped as "already read". Those events were lost.

`deliver_in_order` replaces the drain loop with one that knows when the consumer's position
moved under it (a rebalance stopping the flow, or a seek) and drops what it fetched before: the
consumer reads those records again from the committed offset. `watch_gaps` counts every gap that
is still recorded and, at `at_least_once`, logs it, so that a loss is never silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.types import TP
from mode import Service, ServiceT

from app.metrics import CONSUMER_GAPS, CONSUMER_STALE_RECORDS

log = logging.getLogger(__name__)


def watch_gaps(expected: bool) -> None:
    """Count (and, unless gaps are `expected`, log) every gap Faust's consumers record."""
    original = getattr(Consumer, "_kairos_original_add_gap", Consumer._add_gap)

    async def add_gap(self: Any, tp: TP, offset_from: int, offset_to: int) -> None:
        # Faust records only the offsets after the committed one (already committed ones are
        # done): report exactly those, and nothing when none are left.
        committed = self._committed_offset[tp]
        first = offset_from if committed is None else max(offset_from, committed + 1)
        if first <= offset_to:
            CONSUMER_GAPS.labels(topic=tp.topic).inc()
            if not expected:
                log.warning(
                    "consumer gap on %s[%d]: offsets %d to %d will be committed without being "
                    "read again (see docs/guarantees.md)",
                    tp.topic,
                    tp.partition,
                    first,
                    offset_to,
                )
        await original(self, tp, offset_from, offset_to)

    # Set with setattr: a monkeypatch of a class mypy knows the methods of.
    setattr(Consumer, "_kairos_original_add_gap", original)  # noqa: B010
    setattr(Consumer, "_add_gap", add_gap)  # noqa: B010


def position_epoch(consumer: Any) -> int:
    """How many times the consumer's position has moved under its drain loop so far."""
    return cast(int, getattr(consumer, "_kairos_position_epoch", 0))


def _move_position(consumer: Any) -> None:
    consumer._kairos_position_epoch = position_epoch(consumer) + 1


def deliver_in_order() -> None:
    """Make Faust's consumers drop records fetched before their position last moved."""
    if getattr(Consumer, "_kairos_delivers_in_order", False):
        return
    stop_flow = Consumer.stop_flow
    perform_seek = Consumer.perform_seek

    def stopping_flow(self: Any) -> None:
        # A rebalance starts here; it ends with a seek to the committed offsets.
        _move_position(self)
        stop_flow(self)

    async def seeking_to_committed(self: Any) -> None:
        _move_position(self)
        try:
            await perform_seek(self)
        finally:
            _move_position(self)

    # Set with setattr: a monkeypatch of a class mypy knows the methods of.
    setattr(Consumer, "stop_flow", stopping_flow)  # noqa: B010
    setattr(Consumer, "perform_seek", seeking_to_committed)  # noqa: B010
    setattr(Consumer, "_drain_messages", _drain_messages)  # noqa: B010
    setattr(Consumer, "_kairos_delivers_in_order", True)  # noqa: B010


async def _drain_messages(self: Any, fetcher: ServiceT) -> None:  # pragma: no cover
    """Faust 0.15.3's `Consumer._drain_messages`, changed only where it delivered stale records.

    A record of a stream topic fetched before the consumer's position last moved (a rebalance
    stopped the flow, or the consumer sought to its committed offsets) is dropped: not delivered,
    not taken as the read offset. The loop then seeks to the committed offsets (unless the flow
    is stopped, which ends in that seek anyway), so that every dropped record is read again,
    even one the coarse position count took for stale. Everything else is Faust's loop.
    """
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = cast(Service, self)._stopped.is_set
    fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            if not self.flow_active:
                # Faust's fetch waits for the flow too; waiting here first lets the position
                # count be read after the seek that ends a rebalance, not before it.
                await self.wait(self.can_resume_flow)
            epoch = position_epoch(self)
            ait = cast(AsyncIterator[Any], getmany(timeout=1.0))

            await self.sleep(0)
            if not self.should_stop:
                stale = 0
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0
                    acks_enabled = acks_enabled_for(message.topic)
                    if acks_enabled and position_epoch(self) != epoch:
                        stale += 1
                        continue

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled:
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        # The awaits above can span a whole rebalance.
                        if acks_enabled and position_epoch(self) != epoch:
                            stale += 1
                            continue
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                        # A rebalance that began during the delivery resets the read offsets
                        # with its seek: this record's offset must not overwrite them.
                        if not acks_enabled or position_epoch(self) == epoch:
                            set_read_offset(tp, offset)
                    else:
                        self.log.dev(
                            "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                            offset,
                            message.key,
                            message.value,
                        )
                if stale:
                    CONSUMER_STALE_RECORDS.inc(stale)
                    log.info(
                        "dropped %d records fetched before a rebalance or seek; "
                        "reading again from the committed offsets",
                        stale,
                    )
                    if self.flow_active:
                        await self.perform_seek()
                unset_flag(CONSUMER_FETCHING)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)
