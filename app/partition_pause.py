"""Faust pauses a changelog partition in its own books only; Kairos pauses it in the client too.

Faust "pauses" a partition by leaving it out of what it asks aiokafka for. aiokafka's fetcher is
not told: it goes on fetching the partition, and while it holds records nobody asks for, it
sends no fetch to that broker for its prefetch backoff (100 ms). A worker's own changelogs are
written on every batch and never read once its tables are recovered, so each of their
partitions stopped every fetch once after each start and rebalance: up to 24 stops of 100 ms,
each adding 100 ms to every hop of the events in flight (docs/throughput.md).

Only changelog partitions are paused in the client. Pausing the stream partitions too (Faust
pauses them while it recovers) made the consumer meet out-of-order positions after rebalances
far more often; the consumer's in-order delivery (app/consumer_gaps.py) is built on Faust's own
pauses of those (docs/throughput.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from faust.transport.consumer import ensure_TPset
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP


def pause_in_client() -> None:
    """Make Faust's pauses and resumes of changelog partitions pause and resume aiokafka's too."""
    consumer = faust_aiokafka.Consumer
    pause = getattr(consumer, "_kairos_original_pause", consumer.pause_partitions)
    resume = getattr(consumer, "_kairos_original_resume", consumer.resume_partitions)
    # Set with setattr: a monkeypatch of a class mypy knows the methods of.
    setattr(consumer, "_kairos_original_pause", pause)  # noqa: B010
    setattr(consumer, "_kairos_original_resume", resume)  # noqa: B010
    setattr(consumer, "pause_partitions", _mirrored(pause, paused=True))  # noqa: B010
    setattr(consumer, "resume_partitions", _mirrored(resume, paused=False))  # noqa: B010


def _mirrored(faust_method: Any, paused: bool) -> Any:
    """Faust's pause or resume, then the same for its changelog partitions in the client."""

    def method(self: Any, tps: Iterable[TP]) -> None:
        partitions = ensure_TPset(tps)
        faust_method(self, partitions)
        _mirror(self, {tp for tp in partitions if self._is_changelog_tp(tp)}, paused=paused)

    return method


def _mirror(faust_consumer: Any, partitions: set[TP], paused: bool) -> None:
    """Apply a pause or resume on the client's own thread, in the order Faust made them."""
    thread = faust_consumer._thread
    client = thread._consumer
    if client is None or not partitions or thread.thread_loop.is_closed():
        return
    thread.thread_loop.call_soon_threadsafe(_apply, client, partitions, paused)


def _apply(client: Any, partitions: set[TP], paused: bool) -> None:
    subscription = client._subscription
    for tp in partitions:
        # A partition no longer assigned (a rebalance came in between) has nothing to pause;
        # a new assignment starts unpaused and Faust pauses what it must again.
        if not subscription.is_assigned(tp):
            continue
        if paused:
            subscription.pause(tp)
        else:
            subscription.resume(tp)
