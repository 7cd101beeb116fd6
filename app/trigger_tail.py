"""Following `kairos.triggers`: what `kairos triggers` and `make run` print."""

from __future__ import annotations

import json
import sys

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.broker import bootstrap_of
from app.settings import Settings
from app.topics import TRIGGERS, topic_name
from schemas.triggers import trigger_line


async def tail(settings: Settings, *, from_beginning: bool = False, as_json: bool = False) -> None:
    """Print every trigger published from now on (or from the first one), until cancelled."""
    topic = topic_name(settings, TRIGGERS)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_of(settings.broker_url),
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
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
