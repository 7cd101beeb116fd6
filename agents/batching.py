"""How agents read their streams: in batches, with the right event current for table access."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from typing import Any, cast

from faust import Stream
from faust.streams import _current_event
from faust.types import EventT, StreamT

from app.faust_app import settings


async def batches(stream: StreamT[Any]) -> AsyncIterator[list[EventT[Any]]]:
    """The stream in batches: Faust's per-message cost is paid once per batch, not per event."""
    batched = cast(Stream[Any], stream).take_events
    async for batch in batched(settings.batch_size, within=settings.batch_window):
        yield list(batch)


def focus(event: EventT[Any]) -> None:
    """Make `event` current for table access by this task, before touching a table for its key.

    In a batch Faust does not know which event a table access belongs to, and its RocksDB store
    reads from (and its changelog writes to) the partition of the current event: reading a key
    while another partition's event is current finds nothing.

    Only the task-local context variable is set. `Stream._set_current_event` would also set the
    stream's `current_event`, which `take_events` reads from its background task to pair the next
    buffered value with its event: overwriting it there duplicated some events and lost others.
    """
    _current_event.set(weakref.ref(event))
