"""How agents read their streams: in batches, with the right event current for table access."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

from faust import Stream
from faust.types import EventT, StreamT

from app.faust_app import settings


async def batches(stream: StreamT[Any]) -> AsyncIterator[list[EventT[Any]]]:
    """The stream in batches: Faust's per-message cost is paid once per batch, not per event."""
    async for batch in cast(Stream[Any], stream).take_events(
        settings.batch_size, within=settings.batch_window
    ):
        yield list(batch)


def focus(stream: StreamT[Any], event: EventT[Any]) -> None:
    """Make `event` the stream's current event before touching a table for its key.

    In a batch Faust does not know which event a table access belongs to, and its RocksDB store
    reads from (and its changelog writes to) the partition of the current event: reading a key
    while another partition's event is current finds nothing.
    """
    cast(Stream[Any], stream)._set_current_event(event)
