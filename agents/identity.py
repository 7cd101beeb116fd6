"""Identity agent: attribute each event to a user, linking anonymous ids as users identify.

Reads `kairos.identity` (keyed by anonymousId, or userId when there is none), so the identity
table holds every link for the keys of its partition. Sends each event to `kairos.users` keyed by
the user it belongs to, and on the first link of an anonymousId a merge to the anonymous profile.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from faust.types import StreamT

from agents.batching import batches, focus
from agents.dead_letters import dead_letter
from app.faust_app import app, identity_topic, users_topic
from app.metrics import BATCH_SECONDS, IDENTITY_LINKS
from app.topics import IDENTITY
from engine.identity import resolve
from engine.records import EventRecord, merge_record
from tables.identity import identity_links


@app.agent(identity_topic, name="resolve_identities")
async def resolve_identities(stream: StreamT[Any]) -> None:
    async for batch in batches(stream):
        started = time.perf_counter()
        for event in batch:
            try:
                record: EventRecord = orjson.loads(event.message.value or b"")
                identity = record["key"]
                focus(event)
                resolution = resolve(record["event"], identity_links.get(identity))
            except (ValueError, KeyError, TypeError) as exc:
                await dead_letter(event, IDENTITY, "processing_error", f"identity: {exc!r}")
                continue
            if resolution.merge_from is not None:
                merge = merge_record(resolution.merge_from, resolution.user_key)
                await users_topic.send(key=merge["key"], value=orjson.dumps(merge))
            record["key"] = resolution.user_key
            await users_topic.send(key=record["key"], value=orjson.dumps(record))
            if resolution.link is not None:
                # The link is written after the sends: a crash in between re-sends the same
                # records (dropped by their ids) instead of losing the merge.
                identity_links[identity] = resolution.link
                IDENTITY_LINKS.inc()
        BATCH_SECONDS.labels(stage="identity").observe(time.perf_counter() - started)
