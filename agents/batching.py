"""How agents read their streams: in batches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

from faust import Stream
from faust.types import EventT, StreamT

from app.faust_app import settings


async def batches(stream: StreamT[Any]) -> AsyncIterator[list[EventT[Any]]]:
    """The stream in batches: Faust's per-message cost is paid once per batch, not per event."""
    batched = cast(Stream[Any], stream).take_events
    async for batch in batched(settings.batch_size, within=settings.batch_window):
        yield list(batch)
