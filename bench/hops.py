"""Event → trigger latency, hop by hop, at a steady offered rate.

    python -m bench.hops [--rate 50] [--seconds 10] [--users 1000] [--rules 50] [--warm-up 0]
                         [--seed 7]

Starts its own embedded broker and one Kairos worker (the example rules plus `--rules` generated
ones), optionally offers 20 events/s for `--warm-up` seconds, then offers one event per message
at `--rate` for `--seconds`. Every record carries the Kafka timestamp its sender gave it; the
records of each event are found by its id on `kairos.events`, `kairos.identity`,
`kairos.users` and `kairos.triggers`, so each hop's time is the next stage's send minus the
previous one's. Prints p50/p90/p99/max per hop and end to end (and the end-to-end figures as
`bench.throughput` measures them, at the trigger consumer), and writes `bench/results/hops.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from app.broker import EmbeddedBroker
from bench.ingest import rules_folder
from bench.throughput import (
    Options,
    assigned_consumer,
    deployment,
    latency_run,
    now_ms,
    quantile,
    workload,
)

#: The stages in the order an event passes them, by topic.
STAGES = ("events", "identity", "users", "triggers")
HOPS = ("events → identity", "identity → users", "users → triggers")


async def _read_to_end(bootstrap: str, topic: str) -> list[Any]:
    """Every record of `topic` up to its end offsets now (workers keep writing ticks)."""
    consumer = await assigned_consumer(bootstrap, topic)
    try:
        tps = sorted(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        while True:
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(positions[tp] >= ends[tp] for tp in tps):
                return records
            batch = await consumer.getmany(timeout_ms=200)
            for tp, messages in batch.items():
                records.extend(m for m in messages if m.offset < ends[tp])
    finally:
        await consumer.stop()


def _ids(stage: str, value: Any) -> list[str]:
    """The ids of the events a record of `stage` carries (a trigger: the event that caused it)."""
    if stage == "events":
        return [str(value.get("messageId"))] if isinstance(value, dict) else []
    if stage == "triggers":
        return [str(value["data"]["explanation"]["cause"]["id"])]
    records = value if isinstance(value, list) else [value]
    return [str(r["id"]) for r in records if isinstance(r, dict) and r.get("kind") == "event"]


def sent_times(bootstrap: str, topic_of: dict[str, str], prefix: str) -> dict[str, dict[str, int]]:
    """For each event id starting with `prefix`: the first send time (ms) on each stage's topic."""
    times: dict[str, dict[str, int]] = {}
    for stage in STAGES:
        for record in asyncio.run(_read_to_end(bootstrap, topic_of[stage])):
            try:
                value = orjson.loads(record.value)
            except orjson.JSONDecodeError:
                continue
            for event_id in _ids(stage, value):
                if event_id.startswith(prefix):
                    times.setdefault(event_id, {}).setdefault(stage, record.timestamp)
    return times


def quantiles(samples: list[float]) -> dict[str, float | int | None]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": quantile(ordered, 0.5),
        "p90_ms": quantile(ordered, 0.9),
        "p99_ms": quantile(ordered, 0.99),
        "max_ms": ordered[-1] if ordered else None,
    }


def per_hop(times: dict[str, dict[str, int]]) -> dict[str, dict[str, float | int | None]]:
    """Quantiles of each hop and of the whole way, over the events that reached a trigger."""
    complete = [t for t in times.values() if all(stage in t for stage in STAGES)]
    figures = {
        hop: quantiles([float(t[b] - t[a]) for t in complete])
        for hop, (a, b) in zip(HOPS, itertools.pairwise(STAGES), strict=True)
    }
    figures["end to end"] = quantiles([float(t["triggers"] - t["events"]) for t in complete])
    return figures


def run(args: argparse.Namespace) -> dict[str, Any]:
    opts = Options(
        events=0,
        users=args.users,
        rules=args.rules,
        envelope=1,
        latency_seconds=args.seconds,
        seed=args.seed,
        anonymous_percent=30,
    )
    root = Path(tempfile.mkdtemp(prefix="kairos-hops-"))
    rules = rules_folder(root, args.rules)
    with EmbeddedBroker() as broker, deployment(broker, "hops", root, rules) as kairos:
        sent = 0
        if args.warm_up > 0:
            warm = workload(opts, now_ms(), int(20 * args.warm_up), args.seed + 1, "warm")
            asyncio.run(latency_run(kairos, warm, 20.0, sent))
            sent += len(warm)
        offered = workload(opts, now_ms(), int(args.rate * args.seconds), args.seed, "hop")
        consumer_view, _ = asyncio.run(latency_run(kairos, offered, args.rate, sent))
        topic_of = {stage: kairos.topic(stage) for stage in STAGES}
        times = sent_times(broker.bootstrap, topic_of, "hop-")
    return {
        "config": {**vars(args), "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "hops": per_hop(times),
        "at_the_trigger_consumer": {
            "p50_ms": consumer_view.p50_ms,
            "p99_ms": consumer_view.p99_ms,
            "max_ms": consumer_view.max_ms,
            "samples": consumer_view.samples,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="events/s offered")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument(
        "--rules", type=int, default=50, help="generated rules on top of the examples"
    )
    parser.add_argument("--warm-up", type=float, default=0.0, help="seconds at 20 events/s first")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    result = run(args)
    print(f"{'hop':20} {'events':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for hop, q in result["hops"].items():
        print(
            f"{hop:20} {q['n']:>7} {q['p50_ms'] or '-':>8} {q['p90_ms'] or '-':>8} "
            f"{q['p99_ms'] or '-':>8} {q['max_ms'] or '-':>8}"
        )
    seen = result["at_the_trigger_consumer"]
    print(f"at the trigger consumer: p50 {seen['p50_ms']} ms, p99 {seen['p99_ms']} ms")
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "hops.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
