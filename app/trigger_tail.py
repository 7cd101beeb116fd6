"""Following `kairos.triggers`: what `kairos triggers` and `make run` print."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from app.broker import bootstrap_of
from app.settings import Settings
from app.topics import TRIGGERS, topic_name
from schemas.triggers import trigger_line


class BrokerUnreachable(Exception):
    """No broker answers at KAIROS_BROKER: the message says where it looked and what to do."""


async def tail(settings: Settings, *, from_beginning: bool = False, as_json: bool = False) -> None:
    """Print every trigger published from now on (or from the first one), until cancelled.

    Raises BrokerUnreachable when no broker answers at KAIROS_BROKER.
    """
    topic = topic_name(settings, TRIGGERS)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_of(settings.broker_url),
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    try:
        with _quiet("aiokafka"):
            await consumer.start()
    except KafkaConnectionError:
        await consumer.stop()  # a consumer that failed to start is still open
        raise BrokerUnreachable(unreachable(settings)) from None
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        # On stderr with --json, so that stdout is JSON lines only (to pipe into jq).
        print(
            f"following {topic} (Ctrl-C stops)",
            file=sys.stderr if as_json else sys.stdout,
            flush=True,
        )
        async for message in consumer:
            try:
                trigger = orjson.loads(message.value)
            except orjson.JSONDecodeError:
                continue
            text = json.dumps(trigger) if as_json else f"trigger  {trigger_line(trigger)}"
            print(text, flush=True)
    finally:
        await consumer.stop()


def unreachable(settings: Settings) -> str:
    """What to do when no broker answers: most often `make run` is not running, or it printed
    a port of its own that KAIROS_BROKER does not name yet."""
    return (
        f"no Kafka broker answers at {settings.broker_url}: start one (make run prints its "
        "address) and set KAIROS_BROKER to it, e.g. KAIROS_BROKER=kafka://127.0.0.1:PORT"
    )


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """Silence a logger for a while: aiokafka logs every broker it cannot reach, and
    BrokerUnreachable then says it once, with what to do."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)
