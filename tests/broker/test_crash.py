"""Crashes lose no decision and double no effect: a worker SIGKILLed mid-stream, again and again.

Two workers process a deterministic workload (tests/broker/workload.py) written in chunks; while
each chunk is written one worker is SIGKILLed at a random point and restarted with its data
directory. After each chunk, every profile must equal the offline replay of everything written so
far; at the end, the set of trigger ids on `kairos.triggers` must equal the replay's (re-sent
duplicates are allowed and reported: consumers deduplicate by id), and every invalid input must be
dead-lettered. `python -m bench.crash --cycles 50` runs the same for longer.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator

import orjson
import pytest

from app.broker import EmbeddedBroker
from app.replay import replay
from engine.clock import iso
from tests.broker.conftest import deployment
from tests.broker.harness import Kairos
from tests.broker.workload import (
    build,
    check_timers,
    expected,
    final_report,
    kill_during,
    partition_of,
    rulebook,
    run_chunks,
    wait_profiles,
)

SEED = int(os.environ.get("KAIROS_CRASH_SEED", "20250611"))
CYCLES = int(os.environ.get("KAIROS_CRASH_CYCLES", "5"))


@pytest.fixture(scope="module")
def pair(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kairos]:
    running = deployment(broker, tmp_path_factory.mktemp("crash"), "crash", workers=2)
    yield running
    running.stop()


def test_sigkilled_workers_end_in_the_replays_state_and_triggers(pair: Kairos) -> None:
    started = time.monotonic()
    book = rulebook(pair)
    workload = build(SEED, users=60, events=1800, chunks=CYCLES)
    check_timers(expected(workload, book), int(time.time() * 1000) + 10 * 60_000)
    rng = random.Random(SEED)

    def kill(_: int, chunk: list[tuple[int, bytes]]) -> str:
        return kill_during(pair, chunk, rng)

    lines, failed = run_chunks(pair, workload, book, kill)
    assert failed is None, "\n".join([*lines, failed.summary()])
    final = final_report(pair, workload, book, CYCLES, started, lines)
    print(final.summary())
    assert final.ok, final.summary()


def test_an_anonymous_event_delivered_again_after_identify_counts_once(kairos: Kairos) -> None:
    """At-least-once delivery (Faust re-reads from the last committed offset after a crash or a
    rebalance; a client retries) can bring an event of an anonymous visitor a second time after
    the identify that linked the visitor. The replay, like a single delivery, counts the page
    once. Live, the second delivery is resolved with the new link and goes straight to the user;
    the user holds it until the anonymous profile's state (and its record ids) has arrived, and
    then drops it as already applied (agents/merging.py). It used to be counted twice.
    """
    run = uuid.uuid4().hex[:8]
    anon, user = f"anon-{run}", f"user-{run}"
    now = int(time.time() * 1000) - 60_000
    page = {
        "type": "page",
        "anonymousId": anon,
        "name": "Home",
        "properties": {"path": "/"},
        "messageId": f"{run}-page",
        "timestamp": iso(now),
    }
    identify = {
        "type": "identify",
        "anonymousId": anon,
        "userId": user,
        "traits": {"plan": "pro"},
        "messageId": f"{run}-identify",
        "timestamp": iso(now + 1),
    }
    lines = [orjson.dumps(page), orjson.dumps(identify), orjson.dumps(page)]
    kairos.produce_to("events", [(partition_of(anon), line) for line in lines])  # in order

    book = rulebook(kairos)
    result = replay(lines, book)
    assert result.states[user]["events"] == 1  # the replay counts the page once
    report = wait_profiles(kairos, result, book.score_half_life_ms, timeout=15)
    assert report.ok, report.summary()
