"""How many events per second one Kairos worker turns into profiles, on the embedded broker.

    python -m bench.ingest [--events 20000] [--users 1000] [--envelope 1 100] [--rules 0 50]

Starts its own broker and worker, writes a realistic Segment mix (bench/workload.py) to
`kairos.events` (one event per record, or envelopes of many as the HTTP collector writes), and
measures from the first write until the worker's `kairos_events_processed_total` reaches the
count. `--rules 0` runs with the example rules only; `--rules 50` adds 50 generated rules (entries
on every event name, property filters, windowed counts, traits, score). Prints the figures and
writes them as JSON to bench/results/ingest.json. A benchmark, not a test: it asserts nothing about
speed. (bench/throughput.py compares Kairos with a raw consumer and Quix Streams, and checks it.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from app.broker import EmbeddedBroker
from bench.workload import Message, envelopes, generate
from tests.broker.harness import Kairos

#: The Segment types `kairos_events_processed_total` is labelled with; its other series count
#: Kairos's own records (merges of anonymous profiles), which are not input events.
SEGMENT_TYPES = ("track", "page", "screen", "identify", "group", "alias")
PARTITIONS = 8  # the harness's deployments have 8 partitions
EVENT_NAMES = ["Product Viewed", "Product Added", "Page Viewed", "Order Completed", "Signed In"]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "rules"


def rules_folder(workdir: Path, generated: int) -> Path:
    """The example rules plus `generated` more, spread over the workload's event names."""
    folder = workdir / "rules"
    folder.mkdir(parents=True, exist_ok=True)
    for file in EXAMPLES.glob("*.yaml"):
        shutil.copy(file, folder / file.name)
    rules = []
    for i in range(generated):
        event = EVENT_NAMES[i % len(EVENT_NAMES)]
        product = f"P{i % 200}"
        rules.append(
            {
                "id": f"generated_{i}",
                "when": {"event": event, "where": [{"property": "price", "op": "gt", "value": i}]},
                "if": {
                    "any": [
                        {
                            "count": {
                                "event": event,
                                "where": [{"property": "product_id", "value": product}],
                                "within": "7d",
                            },
                            "op": "gte",
                            "value": 2 + i % 3,
                        },
                        {
                            "all": [
                                {"trait": "plan", "value": "pro"},
                                {"score": {"op": "gt", "value": 50}},
                            ]
                        },
                    ]
                },
                "then": {
                    "type": f"generated_{i % 7}",
                    "channel": ["email", "push", "in_app"][i % 3],
                    "cooldown": "1d",
                    "content": {
                        "text": f"Rule {i}: {{{{ event.properties.product_id | default: 'x' }}}}"
                    },
                },
            }
        )
    (folder / "generated.yaml").write_text(json.dumps({"rules": rules}))  # JSON is YAML
    return folder


def make_events(count: int, users: int, seed: int = 7) -> list[Message]:
    """A realistic Segment mix (bench/workload.py), timestamped up to now."""
    return generate(count, users, int(time.time() * 1000), seed)


async def produce(bootstrap: str, topic: str, events: list[Message], envelope: int) -> None:
    """One event per record keyed by identity, or envelopes grouped by partition.

    As other producers and the HTTP collector write them: each identity's events stay in order.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=65536)
    await producer.start()
    try:
        if envelope <= 1:
            for event in events:
                await producer.send(topic, event.value, key=event.key.encode())
        else:
            for partition, payload in envelopes(events, envelope, PARTITIONS):
                await producer.send(topic, payload, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def metric_sum(url: str, name: str) -> float:
    """A labelled metric of the worker, summed over its series."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def processed(url: str) -> float:
    """Input events applied to profiles: the Segment-typed series only (merges are not input)."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("kairos_events_processed_total{"):
            labels, value = line.rsplit(" ", 1)
            if any(f'type="{t}"' in labels for t in SEGMENT_TYPES):
                total += float(value)
    return total


def run(events: int, users: int, envelope: int, generated_rules: int) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="kairos-bench-"))
    rules = rules_folder(workdir, generated_rules)
    with EmbeddedBroker(log_file=workdir / "broker.log") as broker:
        kairos = Kairos(broker, "bench", workdir)
        kairos.create_topics()
        worker = kairos.add_worker(KAIROS_LOG_LEVEL="warn", KAIROS_RULES=str(rules))
        worker.wait_ready()
        data = make_events(events, users)
        started = time.monotonic()
        asyncio.run(produce(broker.bootstrap, kairos.topic("events"), data, envelope))
        produced = time.monotonic() - started
        while processed(worker.url) < events:
            if time.monotonic() - started > 600:
                raise SystemExit("the worker did not process every event in 10 minutes")
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        triggers = metric_sum(worker.url, "kairos_triggers_published_total")
        kairos.stop()
    return {
        "events": events,
        "users": users,
        "events_per_record": envelope,
        "generated_rules": generated_rules,
        "triggers": int(triggers),
        "produce_seconds": round(produced, 2),
        "seconds": round(elapsed, 2),
        "events_per_second": round(events / elapsed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--envelope", type=int, nargs="*", default=[1, 100])
    parser.add_argument("--rules", type=int, nargs="*", default=[0, 50], help="generated rules")
    args = parser.parse_args()
    results = []
    for generated in args.rules:
        for envelope in args.envelope:
            result = run(args.events, args.users, envelope, generated)
            label = "example rules" if not generated else f"example rules + {generated} generated"
            print(
                f"{result['events']} events, {result['users']} users, {label}, "
                f"{result['events_per_record']} per record: {result['events_per_second']} events/s "
                f"({result['seconds']} s, {result['triggers']} triggers)",
                flush=True,
            )
            results.append(result)
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
