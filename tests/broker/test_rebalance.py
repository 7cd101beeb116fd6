"""Rebalances lose no decision and double no effect: workers join and leave mid-stream.

Two workers process the deterministic workload of tests/broker/workload.py, written in chunks. In
the second chunk a third worker joins (its partitions move to it), in the third it leaves with
SIGTERM (they move back), and in the fourth one more joins and leaves within the chunk. After each
chunk every profile must equal the offline replay of everything written so far; at the end the set
of trigger ids must equal the replay's (duplicates reported) and every invalid input be
dead-lettered.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator

import pytest

from app.broker import EmbeddedBroker
from tests.broker.conftest import deployment
from tests.broker.harness import Kairos, Worker
from tests.broker.workload import (
    build,
    check_timers,
    expected,
    final_report,
    rulebook,
    run_chunks,
)

SEED = int(os.environ.get("KAIROS_REBALANCE_SEED", "20250612"))
CHUNKS = 4


@pytest.fixture(scope="module")
def pair(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kairos]:
    running = deployment(broker, tmp_path_factory.mktemp("rebalance"), "rebalance", workers=2)
    yield running
    running.stop()


def test_workers_joining_and_leaving_end_in_the_replays_state_and_triggers(pair: Kairos) -> None:
    started = time.monotonic()
    book = rulebook(pair)
    workload = build(SEED, users=60, events=1600, chunks=CHUNKS)
    check_timers(expected(workload, book), int(time.time() * 1000) + 10 * 60_000)
    rng = random.Random(SEED)
    joined: list[Worker] = []

    def write(chunk: list[tuple[int, bytes]], at: float) -> tuple[int, list[tuple[int, bytes]]]:
        cut = int(len(chunk) * at) + rng.randrange(-3, 4)
        cut = max(0, min(len(chunk), cut))
        pair.produce_to("events", chunk[:cut])
        return cut, chunk[cut:]

    def join(index: int, chunk: list[tuple[int, bytes]]) -> str:
        if index == 0:
            pair.produce_to("events", chunk)
            return "two workers"
        if index == 1:  # a third worker joins mid-chunk
            cut, rest = write(chunk, 0.4)
            joined.append(pair.add_worker())
            pair.produce_to("events", rest)
            joined[-1].wait_ready()
            pair.wait_settled()
            return f"a third worker joined after {cut}/{len(chunk)} messages"
        if index == 2:  # and leaves gracefully
            cut, rest = write(chunk, 0.5)
            joined[-1].stop()
            pair.produce_to("events", rest)
            pair.wait_settled()
            return f"the third worker left (SIGTERM) after {cut}/{len(chunk)} messages"
        cut, rest = write(chunk, 0.3)  # one more joins and leaves within the chunk
        joined.append(pair.add_worker())
        second, last = len(rest) // 2, rest[len(rest) // 2 :]
        pair.produce_to("events", rest[:second])
        joined[-1].wait_ready()
        joined[-1].stop()
        pair.produce_to("events", last)
        pair.wait_settled()
        return f"a fourth worker joined after {cut} messages and left after {cut + second}"

    lines, failed = run_chunks(pair, workload, book, join)
    assert failed is None, "\n".join([*lines, failed.summary()])
    final = final_report(pair, workload, book, CHUNKS, started, lines)
    print(final.summary())
    assert final.ok, final.summary()
