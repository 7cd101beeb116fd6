"""Timer firing lateness and tick cost with many timers pending, on one worker.

    python -m bench.timers [--timers 100000] [--spread 3600] [--lead 200] [--measure 120]

Arms `--timers` cart-abandonment timers (one per user) whose due times are spread over
`--spread` seconds, starting `--lead` seconds after the start, so that all are pending before the
first comes due. Then, for the first `--measure` seconds of due times (all of them when
`--measure` is at least `--spread`), measures from the triggers on `kairos.triggers` the firing
lateness (the trigger record's broker timestamp minus its due time) and, from the worker's
`kairos_timer_tick_seconds`, the cost of one partition's tick while all timers are pending and
none is due, and while they fire. Prints the figures and writes bench/results/timers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.broker import EmbeddedBroker
from engine.clock import iso, parse_iso_ms
from tests.broker.harness import Kairos

RULE = """
rules:
  - id: bench_cart
    when: {event: Bench Cart Added}
    unless: {event: Bench Checkout, match: [cart_id]}
    within: %ds
    then: {type: bench_cart, channel: webhook, content: {cart: "{{ event.properties.cart_id }}"}}
"""


def tick_cost(url: str) -> tuple[float, float]:
    """(sum, count) of kairos_timer_tick_seconds on the worker."""
    total = count = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("kairos_timer_tick_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("kairos_timer_tick_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])
    return total, count


async def arm(bootstrap: str, topic: str, timers: int, base_ms: int, spread_ms: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=131072)
    await producer.start()
    try:
        batch = []
        for i in range(timers):
            at = base_ms + i * spread_ms // timers
            batch.append(
                {
                    "type": "track",
                    "userId": f"cart-user-{i}",
                    "event": "Bench Cart Added",
                    "messageId": f"arm-{i}",
                    "timestamp": iso(at),
                    "properties": {"cart_id": f"c{i}"},
                }
            )
            if len(batch) == 200:
                await producer.send(topic, orjson.dumps({"batch": batch}))
                batch = []
        if batch:
            await producer.send(topic, orjson.dumps({"batch": batch}))
        await producer.flush()
    finally:
        await producer.stop()


async def collect(
    bootstrap: str, topic: str, expected: int, timeout: float, due_before: int
) -> list[float]:
    """Lateness (s) of each trigger: broker record timestamp minus the trigger's due time."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    lateness: list[float] = []
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout
        while len(lateness) < expected and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for message in messages:
                    trigger = orjson.loads(message.value)
                    due = parse_iso_ms(trigger["time"])
                    if due < due_before:
                        lateness.append((message.timestamp - due) / 1000)
    finally:
        await consumer.stop()
    return lateness


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument(
        "--spread", type=int, default=3600, help="seconds the due times spread over"
    )
    parser.add_argument("--lead", type=int, default=200, help="seconds before the first is due")
    parser.add_argument(
        "--measure", type=int, default=120, help="seconds of due times whose firing is measured"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kairos-bench-timers-"))
    rules = workdir / "rules"
    rules.mkdir()
    (rules / "bench.yaml").write_text(RULE % args.lead)
    with EmbeddedBroker(log_file=workdir / "broker.log") as broker:
        kairos = Kairos(broker, "tbench", workdir)
        kairos.create_topics()
        worker = kairos.add_worker(KAIROS_LOG_LEVEL="warn", KAIROS_RULES=str(rules))
        worker.wait_ready()
        base = int(time.time() * 1000)
        started = time.monotonic()
        asyncio.run(
            arm(broker.bootstrap, kairos.topic("events"), args.timers, base, args.spread * 1000)
        )
        while kairos.metric("kairos_events_processed_total", type="track") < args.timers:
            time.sleep(1)
        armed_in = time.monotonic() - started
        first_due = base + args.lead * 1000
        idle_from = tick_cost(worker.url)
        time.sleep(max(0.0, (first_due - time.time() * 1000) / 1000 - 1))
        idle_to = tick_cost(worker.url)
        window = min(args.measure, args.spread)
        expected = args.timers * window // args.spread
        due_before = first_due + window * 1000
        lateness = asyncio.run(
            collect(broker.bootstrap, kairos.topic("triggers"), expected, window + 120, due_before)
        )
        busy_to = tick_cost(worker.url)
        kairos.stop()
    idle_ticks = idle_to[1] - idle_from[1]
    busy_ticks = busy_to[1] - idle_to[1]
    result = {
        "timers": args.timers,
        "armed_seconds": round(armed_in, 1),
        "measured_window_s": window,
        "due_in_window": expected,
        "fired_in_window": len(lateness),
        "lateness_p50_s": round(statistics.median(lateness), 3) if lateness else None,
        "lateness_p99_s": round(percentile(lateness, 0.99), 3) if lateness else None,
        "lateness_max_s": round(max(lateness), 3) if lateness else None,
        "tick_ms_all_pending_none_due": round(1000 * (idle_to[0] - idle_from[0]) / idle_ticks, 3)
        if idle_ticks
        else None,
        "tick_ms_while_firing": round(1000 * (busy_to[0] - idle_to[0]) / busy_ticks, 3)
        if busy_ticks
        else None,
        "timers_due_per_second": round(args.timers / args.spread),
    }
    print(json.dumps(result, indent=2))
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "timers.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
