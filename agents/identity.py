"""Identity agent: attribute each event to a user, linking anonymous ids as users identify.

Reads `kairos.identity` (keyed by anonymousId, or userId when there is none; envelopes of many
records per message, see agents/envelopes.py), so the identity table holds every link for the keys
of its partition. Sends each event to `kairos.users` keyed by the user it belongs to, and on the
first link of an anonymousId a merge to the anonymous profile.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from faust.types import StreamT

from agents.batching import batches
from agents.dead_letters import dead_letter
from agents.envelopes import Envelopes, unpack
from agents.merging import await_record
from app.faust_app import app, identity_topic, settings, users_topic
from app.metrics import BATCH_SECONDS, IDENTITY_LINKS
from app.topics import IDENTITY
from engine.identity import resolve
from engine.records import EventRecord, merge_record
from tables.identity import identity_links


@app.agent(identity_topic, name="resolve_identities")
async def resolve_identities(stream: StreamT[Any]) -> None:
    async for batch in batches(stream):
        started = time.perf_counter()
        out = Envelopes(users_topic, settings.partitions)
        links: dict[str, tuple[int, str]] = {}
        for event in batch:
            partition = event.message.partition
            try:
                records: list[EventRecord] = unpack(event.message.value)
            except ValueError as exc:
                await dead_letter(event, IDENTITY, "processing_error", f"identity: {exc!r}")
                continue
            for record in records:
                try:
                    identity = record["key"]
                    resolution = resolve(record["event"], _link(partition, identity, links))
                except (KeyError, TypeError) as exc:
                    reason = f"identity: {exc!r}"
                    original = orjson.dumps(record)
                    await dead_letter(event, IDENTITY, "processing_error", reason, original)
                    continue
                record["key"] = resolution.user_key
                out.add(record)
                if resolution.merge_from is not None:
                    merge = merge_record(resolution.merge_from, resolution.user_key)
                    out.add(merge)
                    # The user holds its next records until the visitor's history arrives.
                    out.add(await_record(resolution.user_key, merge["id"]))
                if resolution.link is not None:
                    links[identity] = (partition, resolution.link)
        sent = await out.send()
        if links:
            # Links are written once the records they routed are delivered: a crash in between
            # re-sends the same records (dropped by their ids) instead of losing a merge.
            await asyncio.gather(*sent)
            for identity, (partition, link) in links.items():
                identity_links.stage(partition, identity, link)
            await identity_links.flush()
            IDENTITY_LINKS.inc(len(links))
        BATCH_SECONDS.labels(stage="identity").observe(time.perf_counter() - started)


def _link(partition: int, identity: str, made: dict[str, tuple[int, str]]) -> str | None:
    """The identity's link: made earlier in this batch (not yet written), or in the table."""
    if identity in made:
        return made[identity][1]
    link: str | None = identity_links.read(partition, identity)
    return link
