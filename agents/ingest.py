"""Ingest agents: validate input topics, dead-letter what is bad, re-key the rest.

Segment events go on to `kairos.identity`, in envelopes per partition of their identity key (see
agents/envelopes.py); CRM records and profile updates carry a user id and go straight to
`kairos.users`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from faust.types import EventT, StreamT

from agents.batching import batches
from agents.dead_letters import dead_letter
from agents.envelopes import Envelopes
from app.faust_app import (
    app,
    crm_topic,
    events_topic,
    identity_topic,
    profiles_topic,
    settings,
    users_topic,
)
from app.intake import Rejected, crm_record, event_records, profile_update_record
from app.metrics import BATCH_SECONDS, EVENTS_INGESTED
from app.topics import CRM, EVENTS, PROFILES
from engine.records import EventRecord, TraitsRecord

log = logging.getLogger(__name__)


def _received_ms(event: EventT[Any]) -> int:
    return int(event.message.timestamp * 1000)


@app.agent(events_topic, name="ingest_events")
async def ingest_events(stream: StreamT[Any]) -> None:
    async for batch in batches(stream):
        started = time.perf_counter()
        out = Envelopes(identity_topic, settings.partitions)
        for event in batch:
            for record in _event_records(event):
                if isinstance(record, Rejected):
                    await dead_letter(event, EVENTS, record.code, record.reason)
                    continue
                EVENTS_INGESTED.labels(type=record["event"]["type"]).inc()
                out.add(record)
        await out.send()
        BATCH_SECONDS.labels(stage="ingest").observe(time.perf_counter() - started)


def _event_records(event: EventT[Any]) -> list[EventRecord | Rejected]:
    try:
        return event_records(event.message.value or b"", _received_ms(event))
    except Exception as exc:  # a bug must cost one input record, never the agent
        return [_unexpected(exc)]


def _unexpected(exc: Exception) -> Rejected:
    # The message may quote the input: only its type is logged above DEBUG.
    log.error("ingest failed on a record: %s", type(exc).__name__)
    log.debug("ingest failure", exc_info=exc)
    return Rejected("processing_error", f"ingest: {type(exc).__name__}: {exc}")


async def _ingest_traits(
    stream: StreamT[Any], source: str, parse: Callable[[bytes, int], TraitsRecord], label: str
) -> None:
    async for batch in batches(stream):
        for event in batch:
            try:
                record = parse(event.message.value or b"", _received_ms(event))
            except Rejected as exc:
                await dead_letter(event, source, exc.code, exc.reason)
                continue
            except Exception as exc:  # a bug must cost one input record, never the agent
                rejected = _unexpected(exc)
                await dead_letter(event, source, rejected.code, rejected.reason)
                continue
            EVENTS_INGESTED.labels(type=label).inc()
            await users_topic.send(key=record["key"], value=orjson.dumps(record))


@app.agent(crm_topic, name="ingest_crm")
async def ingest_crm(stream: StreamT[Any]) -> None:
    await _ingest_traits(stream, CRM, crm_record, "crm")


@app.agent(profiles_topic, name="ingest_profiles")
async def ingest_profiles(stream: StreamT[Any]) -> None:
    await _ingest_traits(stream, PROFILES, profile_update_record, "profile")
