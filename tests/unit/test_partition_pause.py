"""A changelog partition Faust pauses is paused in aiokafka's fetcher too, on its thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from app.partition_pause import pause_in_client

TOPIC = "pause-test-profiles-changelog"
STREAM = "pause-test.users"
ASSIGNED = {TP(TOPIC, p) for p in range(4)} | {TP(STREAM, p) for p in range(4)}


class ClientThread:
    """An aiokafka consumer on an event loop of its own thread, as Faust runs it."""

    def __init__(self) -> None:
        self.thread_loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.thread_loop.run_forever, daemon=True)
        self._thread.start()
        self._consumer = self.call(self._new_client)

    @staticmethod
    async def _new_client() -> AIOKafkaConsumer:
        # Never started: pausing is bookkeeping of the client's assignment, no broker involved.
        client = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
        client.assign(sorted(ASSIGNED))
        return client

    def call(self, factory: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(factory(), self.thread_loop).result(5)

    def paused(self) -> set[TP]:
        async def paused() -> set[TP]:  # read on the client's loop: after what was scheduled
            return {TP(tp.topic, tp.partition) for tp in self._consumer.paused()}

        return set(self.call(paused))

    def stop(self) -> None:
        self.thread_loop.call_soon_threadsafe(self.thread_loop.stop)
        self._thread.join(5)
        self.thread_loop.close()


@pytest.fixture
def client() -> Iterator[ClientThread]:
    thread = ClientThread()
    yield thread
    thread.stop()


def _faust_consumer(client: ClientThread) -> SimpleNamespace:
    """What Faust's `Consumer.pause_partitions` and `resume_partitions` read and write."""
    active: set[TP] = set(ASSIGNED)
    return SimpleNamespace(
        _thread=client,
        _paused_partitions=set(),
        _get_active_partitions=lambda: active,
        _is_changelog_tp=lambda tp: tp.topic == TOPIC,
        active=active,
    )


def test_a_partition_faust_pauses_is_not_fetched_until_faust_resumes_it(
    client: ClientThread,
) -> None:
    pause_in_client()
    consumer = _faust_consumer(client)
    changelog = {TP(TOPIC, 1), TP(TOPIC, 2)}

    faust_aiokafka.Consumer.pause_partitions(consumer, changelog)
    # Faust's own books as before: the partitions are left out of what it asks for ...
    assert consumer._paused_partitions == changelog
    assert consumer.active == ASSIGNED - changelog
    # ... and the client no longer fetches them.
    assert client.paused() == changelog

    faust_aiokafka.Consumer.resume_partitions(consumer, (tp for tp in [TP(TOPIC, 2)]))
    assert consumer._paused_partitions == {TP(TOPIC, 1)}
    assert client.paused() == {TP(TOPIC, 1)}


def test_a_stream_partition_is_paused_by_faust_alone(client: ClientThread) -> None:
    pause_in_client()
    consumer = _faust_consumer(client)
    stream = {TP(STREAM, 0), TP(STREAM, 3)}

    faust_aiokafka.Consumer.pause_partitions(consumer, stream | {TP(TOPIC, 0)})
    assert consumer._paused_partitions == stream | {TP(TOPIC, 0)}
    # The consumer's in-order delivery (app/consumer_gaps.py) was built on Faust's own pauses.
    assert client.paused() == {TP(TOPIC, 0)}


def test_a_partition_no_longer_assigned_is_left_alone(client: ClientThread) -> None:
    pause_in_client()
    consumer = _faust_consumer(client)
    gone = TP(TOPIC, 9)  # revoked by a rebalance before the pause reached the client

    faust_aiokafka.Consumer.pause_partitions(consumer, {gone, TP(TOPIC, 0)})
    assert client.paused() == {TP(TOPIC, 0)}


def test_before_the_client_exists_or_after_its_loop_closed_only_faust_pauses() -> None:
    pause_in_client()
    thread = SimpleNamespace(_consumer=None, thread_loop=asyncio.new_event_loop())
    consumer = _faust_consumer(thread)  # type: ignore[arg-type]
    faust_aiokafka.Consumer.pause_partitions(consumer, {TP(TOPIC, 0)})
    assert consumer._paused_partitions == {TP(TOPIC, 0)}

    closed = ClientThread()
    closed.stop()
    consumer = _faust_consumer(closed)
    faust_aiokafka.Consumer.resume_partitions(consumer, {TP(TOPIC, 0)})
    assert TP(TOPIC, 0) in consumer.active
    thread.thread_loop.close()


def test_installing_twice_wraps_faust_once() -> None:
    pause_in_client()
    first = faust_aiokafka.Consumer.pause_partitions
    pause_in_client()
    assert faust_aiokafka.Consumer._kairos_original_pause is not first  # type: ignore[attr-defined]
