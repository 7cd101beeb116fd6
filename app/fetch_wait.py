"""Faust hard-codes the consumer's fetch max-wait to 1.5 s; Kairos makes it a setting.

A fetch that finds no data waits up to this long on the broker. Apache Kafka answers as soon as
data arrives, but the embedded broker holds the fetch for the whole wait, so every hop of the
pipeline (ingest → identity → profiles) cost up to 1.5 s of latency there.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka


def limit_fetch_wait(max_wait_ms: int) -> None:
    """Make every Faust worker consumer created from now on wait at most `max_wait_ms`."""
    thread = faust_aiokafka.AIOKafkaConsumerThread
    original = getattr(thread, "_kairos_original_create", thread._create_worker_consumer)

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    # Attributes set with setattr: a monkeypatch of a class mypy knows the methods of.
    setattr(thread, "_kairos_original_create", original)  # noqa: B010
    setattr(thread, "_create_worker_consumer", create)  # noqa: B010
