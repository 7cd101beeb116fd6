"""Writing input Kairos cannot use to `kairos.dlq` (schemas.dlq.DeadLetter), with the reason."""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import orjson
from faust.types import EventT

from app.faust_app import dlq_topic
from app.metrics import EVENTS_INVALID
from engine.clock import iso
from schemas.dlq import ReasonCode

log = logging.getLogger(__name__)


async def dead_letter(
    event: EventT[Any], source: str, code: ReasonCode, reason: str, original: bytes | None = None
) -> None:
    """Dead-letter (part of) the record behind `event`; `original` defaults to its whole value."""
    message = event.message
    value = message.value if original is None else original
    letter = {
        "source_topic": message.topic,
        "source_partition": message.partition,
        "source_offset": message.offset,
        "reason_code": code,
        "reason": reason,
        "original": base64.b64encode(value or b"").decode("ascii"),
        "failed_at": iso(int(time.time() * 1000)),
    }
    EVENTS_INVALID.labels(reason=code, source=source).inc()
    # The reason may quote user input, so it is logged at DEBUG only; INFO carries no PII.
    log.info("dead-lettered a record from %s: %s", message.topic, code)
    log.debug("dead-letter reason: %s", reason)
    await dlq_topic.send(key=message.key, value=orjson.dumps(letter))
