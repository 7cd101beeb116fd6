"""Faust's consumer, made to deliver each partition's records in order, without holes.

Faust's consumer (faust-streaming 0.15.3, `Consumer._drain_messages`) lost records three ways, all
seen in Kairos's crash and rebalance tests:

- **A record held across a rebalance.** The drain loop holds a fetched batch across awaits (a
  commit every 10,000 acknowledgements, a delivery to a full agent buffer) that can span a whole
  rebalance. A record fetched before the rebalance was then delivered after its seek to the
  committed offset and became the read offset, so the re-fetched records before it (dropped
  from the agents' buffers at the rebalance) were discarded as "already read" (faust-streaming
  issues #216 and #221).
- **A record fetched between a rebalance and its seek.** Faust resumes the stream partitions
  before it seeks them to their committed offsets. A record fetched in between met the next
  offset of before the rebalance: an earlier one the rebalance had cleared from an agent's buffer
  was dropped as read already while the later ones were applied, and fetched again after the
  seek it was skipped by the profiles agent as applied already (`sought`).
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
import sys
import time
import traceback
from collections.abc import AsyncIterator, Iterable
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


def sought(consumer: Any) -> bool:
    """Whether the stream partitions were sought to their committed offsets since the last
    rebalance began.

    Faust resumes the stream partitions before it seeks them: records fetched in between met the
    next offsets of before the rebalance. Those the rebalance had cleared from the agents'
    buffers were dropped as read already, while the records after them were applied; fetched
    again after the seek, the cleared ones were then skipped as applied already (users left
    waiting for a hand-over, docs/guarantees.md). Until the seek no stream record is delivered:
    the seek fetches them all again. A seek that fails does not count.
    """
    return bool(getattr(consumer, "_kairos_sought", False))


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
        self._kairos_sought = False
        stop_flow(self)

    async def seeking_to_committed(self: Any) -> None:
        _move_position(self)
        try:
            await perform_seek(self)
            # Faust has set each partition's read offset to its committed offset (or None).
            next_offsets(self).update(self._read_offset)
            await _seek_streams_to_next(self)
            # Only a seek that got this far ends the wait. Faust's fetcher also seeks while the
            # flow is stopped, in the middle of a rebalance, and logs and forgets a failure
            # ("exception performing seek when flow not active": a partition assigned away):
            # counted as the seek, it let records fetched before the real one meet the next
            # offsets of before the rebalance (a crash test lost a user's history so).
            self._kairos_sought = True
        finally:
            _move_position(self)

    # Set with setattr: a monkeypatch of a class mypy knows the methods of.
    setattr(Consumer, "stop_flow", stopping_flow)  # noqa: B010
    setattr(Consumer, "perform_seek", seeking_to_committed)  # noqa: B010
    setattr(Consumer, "_drain_messages", _drain_messages)  # noqa: B010
    setattr(Consumer, "_kairos_delivers_in_order", True)  # noqa: B010


async def _seek_streams_to_next(consumer: Any) -> None:
    """Put every stream partition's fetch position at its next offset, after Faust's seek.

    aiokafka's `seek_to_committed` seeks only to a committed offset above 0: any other partition
    stayed where its fetches left it, past records Faust dropped when the rebalance stopped the
    flow (a restarted worker of the crash test left whole partitions unread). And it seeks one
    partition after another while the drain loop runs: records fetched from a partition already
    sought, before the seek of the others ended, met the next offset of before the rebalance and
    were dropped as read already, though the agents' buffers had been cleared (the rebalance test
    saw a partition's last records so). Every stream partition is therefore sought again, at once,
    to its committed offset, or to its first offset when none is committed (as
    `auto_offset_reset=earliest` means): what was applied already is dropped by the user's applied
    offset.
    """
    tps = stream_partitions(consumer)
    if not tps:
        return
    try:
        uncommitted = [tp for tp in tps if not consumer._read_offset.get(tp)]
        earliest = await consumer.earliest_offsets(*uncommitted) if uncommitted else {}
        offsets = {tp: consumer._read_offset.get(tp) or earliest.get(tp) or 0 for tp in tps}
        await consumer.seek_wait(offsets)
    except Exception as exc:  # a rebalance again: its own seek comes next; else the stall check
        log.warning("no seek of the stream partitions to their next offsets (%r)", exc)
        return
    next_offsets(consumer).update(offsets)


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
                        if tp in refetching or not sought(self):
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


#: Seconds a stream partition's next offset may stay put while records wait beyond it, before the
#: partition is reported as stalled (once per stall) and fetched again. Short: a record dropped at
#: a rebalance waits this long; a busy worker's drain loop still moves every partition's next
#: offset within a few seconds (an agent's full buffer takes ~3 s to drain at 1.5k records/s).
STALL_SECONDS = 8.0


def stream_partitions(consumer: Any) -> list[TP]:
    """The assigned partitions of stream topics (those whose records are acknowledged)."""
    try:
        assigned = consumer.assignment()
    except Exception:  # the consumer is not started, or stopping
        return []
    return sorted(tp for tp in assigned if consumer.app.topics.acks_enabled_for(tp.topic))


def waiting_records(consumer: Any, ends: dict[TP, int]) -> dict[TP, tuple[int, int]]:
    """Stream partitions with records beyond the next due offset, by the broker's end offsets
    (`ends`): (next, end). A partition that has delivered nothing yet, with nothing committed,
    is due from its first offset."""
    due_offsets = next_offsets(consumer)
    waiting = {}
    for tp, end in ends.items():
        due = due_offsets.get(tp) or 0
        if end is not None and end > due:
            waiting[tp] = (due, end)
    return waiting


def stalled_partitions(
    consumer: Any, ends: dict[TP, int], now: float | None = None
) -> dict[TP, tuple[int, int, float]]:
    """Stream partitions whose next offset has not moved for STALL_SECONDS while records wait
    beyond it: (next, end, seconds). Per partition: the others' records (the timer ticks every
    worker sends itself) keep coming while one partition is stuck."""
    progress = consumer.__dict__.setdefault("_kairos_progress", {})  # tp -> (next, since)
    if consumer.app.rebalancing:
        progress.clear()  # positions move at the end of a rebalance: count from there
        return {}
    now = time.monotonic() if now is None else now
    waiting = waiting_records(consumer, ends)
    for tp in [tp for tp in progress if tp not in waiting]:
        del progress[tp]
    stalled = {}
    for tp, (due, end) in waiting.items():
        seen = progress.get(tp)
        if seen is None or seen[0] != due:
            progress[tp] = (due, now)
        elif now - seen[1] >= STALL_SECONDS:
            stalled[tp] = (due, end, now - seen[1])
    return stalled


async def resume_stalled(consumer: Any, stalled: dict[TP, tuple[int, int, float]]) -> None:
    """Fetch each stalled partition again from its next offset.

    Safe whatever stalled it: every record before the next offset was delivered, and one
    delivered again is dropped as read already. The stall check counts from here again.
    """
    progress = consumer.__dict__.setdefault("_kairos_progress", {})
    for tp, (due, _, _) in stalled.items():
        log.warning("%s[%d]: fetching again from %d, its next offset", tp.topic, tp.partition, due)
        await _seek_back(consumer, tp, due)
        progress.pop(tp, None)


def stall_report(consumer: Any, stalled: dict[TP, tuple[int, int, float]]) -> str:
    """What the consumer's flow looks like, for stalled partitions."""
    active = consumer._active_partitions or set()
    buffered = consumer._buffered_partitions
    paused = consumer._paused_partitions
    fetcher = consumer.app._fetcher
    lines = [
        f"{tp.topic}[{tp.partition}] next {due} end {end} for {seconds:.0f} s"
        f"{' paused' if tp in paused else ''}{' buffered' if tp in buffered else ''}"
        f"{'' if tp in active else ' inactive'}"
        for tp, (due, end, seconds) in sorted(stalled.items())
    ]
    return (
        f"{len(stalled)} partitions have records waiting and deliver none: "
        f"flow_active={consumer.flow_active} "
        f"can_resume_flow={consumer.can_resume_flow.is_set()} "
        f"suspend_flow={consumer.suspend_flow.is_set()} "
        f"flow_control={consumer.app.flow_control.is_active()} "
        f"fetcher={fetcher.state} drain_task={_drain_task_state(fetcher)}; " + "; ".join(lines)
    )


def thread_report(consumer: Any, tps: Iterable[TP]) -> str:
    """The Kafka client's side of a stall, for the log: what Faust's consumer thread is doing.

    Faust runs aiokafka in a thread of its own and asks it for records through a queue of
    calls; a stall that the flow state above does not explain is there. Read without locks from
    the worker's thread: a snapshot for a person to read, never used for a decision.
    """
    lines = []
    try:
        thread = consumer._thread
        client = thread._consumer
        queue = thread._method_queue
        lines.append(
            f"calls queued for the consumer thread: {queue._queue.qsize()}; "
            f"reassignment in progress: {client._subscription.reassignment_in_progress}"
        )
        fetcher = client._fetcher
        lines.append(
            f"aiokafka fetcher: task {'done' if fetcher._fetch_task.done() else 'running'}, "
            f"{len(fetcher._pending_tasks)} requests pending, nodes in flight "
            f"{sorted(fetcher._in_flight)}, records held for {len(fetcher._records)} partitions"
        )
        assignment = client._subscription.subscription.assignment
        for tp in sorted(tps):
            state = assignment.state_value(tp) if assignment is not None else None
            if state is None:
                lines.append(f"{tp.topic}[{tp.partition}]: not assigned in aiokafka")
                continue
            held = fetcher._records.get(tp)
            lines.append(
                f"{tp.topic}[{tp.partition}]: position "
                f"{state.position if state.has_valid_position else 'none'}"
                f"{' paused' if state.paused else ''}"
                f"{' awaiting reset' if state.awaiting_reset else ''}"
                f"{f' holding {type(held).__name__}' if held is not None else ''}"
            )
        for task in asyncio.all_tasks(thread.thread_loop):
            coro = task.get_coro()
            frames = task.get_stack(limit=1)  # a suspended coroutine has only its own frame
            where = f":{frames[-1].f_lineno}" if frames else " (not started)"
            lines.append(f"consumer thread task {getattr(coro, '__qualname__', coro)}{where}")
        frame = sys._current_frames().get(thread._thread.ident)
        if frame is not None:
            stack = traceback.format_stack(frame, limit=6)
            lines.append("consumer thread stack:\n" + "".join(stack).rstrip())
    except Exception as exc:  # a diagnostic must never take the worker down
        lines.append(f"(consumer thread state unreadable: {exc!r})")
    return "\n".join(lines)


def new_stall(consumer: Any, stalled: dict[TP, tuple[int, int, float]]) -> str | None:
    """The report of partitions newly among the `stalled` (None when none is): a partition is
    reported once per stall, again only once it has moved on and stalled anew."""
    reported = consumer.__dict__.setdefault("_kairos_stalls_reported", {})  # tp -> next offset
    for tp in [tp for tp in reported if tp not in stalled]:
        del reported[tp]
    new = {tp: found for tp, found in stalled.items() if reported.get(tp) != found[0]}
    if not new:
        return None
    reported.update({tp: found[0] for tp, found in new.items()})
    return f"{stall_report(consumer, new)}\n{thread_report(consumer, new)}"


#: How long the stall report waits for the broker's end offsets before it reports the client
#: thread itself as not answering.
END_OFFSETS_SECONDS = 10.0


def unanswered(consumer: Any, partitions: list[TP], exc: BaseException) -> str | None:
    """The report of a Kafka client thread that did not give the end offsets (once per stall)."""
    if consumer.__dict__.get("_kairos_unanswered"):
        return None  # reported already; `answered` says when it answers again
    consumer._kairos_unanswered = True
    return (
        f"the Kafka client thread gave no end offsets within {END_OFFSETS_SECONDS:g} s "
        f"({exc!r})\n{thread_report(consumer, partitions)}"
    )


def answered(consumer: Any) -> None:
    """The client thread gave the end offsets: a later silence is a new stall."""
    consumer._kairos_unanswered = False


def _drain_task_state(fetcher: Any) -> str:
    tasks = [t for t in getattr(fetcher, "_futures", ()) if isinstance(t, asyncio.Task)]
    if not tasks:
        return "none"
    return ",".join("done" if t.done() else "pending" for t in tasks)
