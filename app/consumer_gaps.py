"""Faust's consumer, made to deliver each partition's records in order, without holes.

Faust's consumer (faust-streaming 0.15.3, `Consumer._drain_messages`) lost records two ways, both
seen in Kairos's crash and rebalance tests:

- **A record held across a rebalance.** The drain loop holds a fetched batch across awaits (a
  commit every 10,000 acknowledgements, a delivery to a full agent buffer) that can span a whole
  rebalance. A record fetched before the rebalance was then delivered after its seek to the
  committed offset and became the read offset, so the re-fetched records before it (dropped
  from the agents' buffers at the rebalance) were discarded as "already read" (faust-streaming
  issues #216 and #221).
- **A fetch that skips an offset.** Faust takes any jump past the next offset for a gap
  (compacted records, transaction markers) and commits the offsets in it as if processed. The
  embedded broker's fetches sometimes skip a record another producer is writing to the same
  partition (seen in about 1 of 5,000 records with three producers); fetched again, it is there.

`deliver_in_order` replaces the drain loop with Faust's own, changed in one place: for the
records of stream topics (those acknowledged and committed), it knows the offset each partition's
next record must have (the committed offset after a seek, the last delivered + 1 after a
delivery). A record before it was read already and is dropped; a record after it is not delivered:
the partition is fetched again from the missing offset, and only a jump that lasts (a real gap:
transaction markers, records removed by retention) is recorded as Faust would. `watch_gaps`
counts every gap recorded and, at `at_least_once`, logs it, so that a skip is never silent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.types import TP
from mode import Service, ServiceT

from app.metrics import CONSUMER_GAPS, CONSUMER_REFETCHES

log = logging.getLogger(__name__)

#: A skipped offset is fetched again up to this many times, over at least this long, before the
#: jump over it is taken for a real gap. The embedded broker's skipped records reappear at once.
REFETCHES = 2
REFETCH_SECONDS = 0.05
#: A seek back that has not returned by then is given up (logged); the loop must not hang on it.
SEEK_SECONDS = 10.0


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
    """How many times a rebalance or a seek to the committed offsets has begun or ended."""
    return cast(int, getattr(consumer, "_kairos_position_epoch", 0))


def _move_position(consumer: Any) -> None:
    consumer._kairos_position_epoch = position_epoch(consumer) + 1


def next_offsets(consumer: Any) -> dict[TP, int | None]:
    """The offset each partition's next record must have (None: unknown, nothing committed)."""
    offsets = consumer.__dict__.setdefault("_kairos_next_offsets", {})
    return cast(dict[TP, "int | None"], offsets)


def _holes(consumer: Any) -> dict[TP, tuple[int, int, float]]:
    """Per partition, the offset being fetched again: (offset, times asked, since when)."""
    holes = consumer.__dict__.setdefault("_kairos_holes", {})
    return cast(dict[TP, tuple[int, int, float]], holes)


def deliver_in_order() -> None:
    """Replace Faust's drain loop with one that delivers each partition's records in order."""
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
            # Faust has set each partition's read offset to its committed offset (or None).
            next_offsets(self).update(self._read_offset)
        finally:
            _move_position(self)

    # Set with setattr: a monkeypatch of a class mypy knows the methods of.
    setattr(Consumer, "stop_flow", stopping_flow)  # noqa: B010
    setattr(Consumer, "perform_seek", seeking_to_committed)  # noqa: B010
    setattr(Consumer, "_drain_messages", _drain_messages)  # noqa: B010
    setattr(Consumer, "_kairos_delivers_in_order", True)  # noqa: B010


async def _refetch(consumer: Any, tp: TP, missing: int, found: int) -> bool:
    """Seek `tp` back to the `missing` offset a fetch jumped over to `found`, unless that jump has
    lasted long enough to be real. True when the partition is fetched again from `missing`."""
    holes = _holes(consumer)
    now = time.monotonic()
    offset, tries, since = holes.get(tp, (missing, 0, now))
    if offset != missing:
        tries, since = 0, now
    if tries >= REFETCHES and now - since >= REFETCH_SECONDS:
        del holes[tp]
        return False
    holes[tp] = (missing, tries + 1, since)
    CONSUMER_REFETCHES.labels(topic=tp.topic).inc()
    log.info(
        "%s[%d]: fetched offset %d where %d was due; fetching again from %d",
        tp.topic,
        tp.partition,
        found,
        missing,
        missing,
    )
    await _seek_back(consumer, tp, missing)
    return True


async def _seek_back(consumer: Any, tp: TP, offset: int) -> None:
    """Move `tp`'s fetch position to `offset` (in the consumer's thread; no broker request).

    Nothing from the seek may end the drain loop: a CancelledError out of it would stop Faust's
    fetcher for good, silently, outside a rebalance. A seek that fails or hangs is logged and the
    loop goes on; the next record beyond the due offset asks for the seek again, and a jump that
    lasts becomes a logged gap.
    """
    try:
        await asyncio.wait_for(consumer.seek_wait({tp: offset}), timeout=SEEK_SECONDS)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the loop itself is cancelled (stop, rebalance)
        log.warning("%s[%d]: seek to %d cancelled in the consumer", tp.topic, tp.partition, offset)
    except Exception as exc:  # not assigned any more (the rebalance seeks it), or a timeout
        log.warning("%s[%d]: no seek to %d (%r)", tp.topic, tp.partition, offset, exc)


async def _drain_messages(self: Any, fetcher: ServiceT) -> None:  # pragma: no cover
    """Faust 0.15.3's `Consumer._drain_messages`, changed only in how it orders stream records.

    Faust compared each record with the partition's read offset: it dropped one below it, and
    took one beyond the next for a gap. Here a stream topic's record must have the partition's
    next offset (`next_offsets`): below it the record was read already and is dropped; beyond it
    the partition is fetched again from the next offset (`_refetch`), and only a lasting jump is
    recorded as a gap. The next offset moves on only when no rebalance or seek began during the
    record's delivery: that seek sets it. Records of other topics (changelogs) go as in Faust.
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
    due_offsets = next_offsets(self)
    holes = _holes(self)

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            ait = cast(AsyncIterator[Any], getmany(timeout=1.0))

            # Sleeping because sometimes getmany is called in a loop
            # never releasing to the event loop
            await self.sleep(0)
            if not self.should_stop:
                refetching: set[TP] = set()
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()

                    offset = message.offset
                    in_order = acks_enabled_for(message.topic)
                    if in_order:
                        if tp in refetching:
                            continue
                        due = due_offsets.get(tp)
                        if due is not None and offset < due:
                            continue  # read already
                        if due is not None and offset > due:
                            if await _refetch(self, tp, due, offset):
                                refetching.add(tp)
                                continue
                            await self._add_gap(tp, due, offset - 1)
                    else:
                        r_offset = get_read_offset(tp)
                        if r_offset is not None and offset < r_offset:
                            self.log.dev(
                                "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                offset,
                                message.key,
                                message.value,
                            )
                            continue
                    epoch = position_epoch(self)
                    await self.wait_first(callback(message), self.suspend_flow.wait())
                    if not in_order:
                        set_read_offset(tp, offset)
                    elif position_epoch(self) == epoch:
                        set_read_offset(tp, offset)
                        due_offsets[tp] = offset + 1
                        if holes:
                            holes.pop(tp, None)
                    self._kairos_last_delivery = time.monotonic()
                unset_flag(CONSUMER_FETCHING)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        # Faust's fetcher restarts the loop only when a rebalance is under way; otherwise the
        # worker stops consuming: say so.
        log.warning("consumer drain loop cancelled (rebalancing: %s)", self.app.rebalancing)
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


#: Seconds without a delivered record, while a stream partition has records waiting, after which
#: the consumer is reported as stalled (once per stall).
STALL_SECONDS = 15.0


def last_delivery(consumer: Any) -> float:
    """When the drain loop last delivered a record (monotonic; its start before the first)."""
    return cast(float, consumer.__dict__.setdefault("_kairos_last_delivery", time.monotonic()))


def waiting_records(consumer: Any) -> dict[TP, tuple[int, int]]:
    """Stream partitions with records fetched-able beyond the next due offset: (next, end)."""
    waiting = {}
    for tp, due in next_offsets(consumer).items():
        if due is None or not consumer.app.topics.acks_enabled_for(tp.topic):
            continue
        try:
            end = consumer.highwater(tp)
        except Exception:  # not assigned any more
            continue
        if end is not None and end > due:
            waiting[tp] = (due, end)
    return waiting


def stall_report(consumer: Any) -> str | None:
    """What the consumer's flow looks like, when records wait and none was delivered lately."""
    idle = time.monotonic() - last_delivery(consumer)
    if idle < STALL_SECONDS or consumer.app.rebalancing:
        return None
    waiting = waiting_records(consumer)
    if not waiting:
        return None
    active = consumer._active_partitions or set()
    buffered = consumer._buffered_partitions
    paused = consumer._paused_partitions
    fetcher = consumer.app._fetcher
    lines = [
        f"{tp.topic}[{tp.partition}] next {due} end {end}"
        f"{' paused' if tp in paused else ''}{' buffered' if tp in buffered else ''}"
        f"{'' if tp in active else ' inactive'}"
        for tp, (due, end) in sorted(waiting.items())
    ]
    return (
        f"no record delivered for {idle:.0f} s while {len(waiting)} partitions have records "
        f"waiting: flow_active={consumer.flow_active} "
        f"can_resume_flow={consumer.can_resume_flow.is_set()} "
        f"suspend_flow={consumer.suspend_flow.is_set()} "
        f"flow_control={consumer.app.flow_control.is_active()} "
        f"fetcher={fetcher.state} drain_task={_drain_task_state(fetcher)}; " + "; ".join(lines)
    )


def new_stall(consumer: Any) -> str | None:
    """`stall_report`, once per stall: None again until a record is delivered after it."""
    report = stall_report(consumer)
    if report is None or consumer.__dict__.get("_kairos_stall_reported") == last_delivery(consumer):
        return None
    consumer._kairos_stall_reported = last_delivery(consumer)
    return report


def _drain_task_state(fetcher: Any) -> str:
    tasks = [t for t in getattr(fetcher, "_futures", ()) if isinstance(t, asyncio.Task)]
    if not tasks:
        return "none"
    return ",".join("done" if t.done() else "pending" for t in tasks)
