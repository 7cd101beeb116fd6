"""The peer pipeline of bench/throughput.py: the same stateful job written with Quix Streams.

    python -m bench.quix_peer BOOTSTRAP TOPIC EVENTS [--envelopes] [--threshold 10]

Per user: a count of events and the last-seen time in Quix's RocksDB state, and one threshold
rule (a record to an output topic when a user's count reaches `--threshold`). State is keyed by the
Kafka key, so one-event-per-message input must be keyed by user (the workload keys it by identity).
Envelopes (`--envelopes`) hold many users' events: they are expanded and re-keyed by identity with
`group_by`, which Quix does through a repartition topic, as Kairos re-keys through its own topics.

Runs in its own process (bench/throughput.py starts it) so that its peak RSS is its own, and
prints one JSON line: events, seconds from the first message read to the last event counted,
events/s, triggers, peak RSS, and the size of its state directory.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from quixstreams import Application, State
from quixstreams.models.topics import Topic, TopicConfig, TopicManager

from bench.workload import identity

_derive = TopicManager.derive_topic_config.__func__  # type: ignore[attr-defined]


def _derive_without_configs(cls: type[TopicManager], topics: Iterable[Topic]) -> TopicConfig:
    """Tansu returns no topic configs; Quix expects `retention.ms` (KeyError): -1 is infinite."""
    topics = list(topics)
    for topic in topics:
        topic.broker_config.extra_config.setdefault("retention.ms", "-1")
    result: TopicConfig = _derive(cls, topics)
    return result


TopicManager.derive_topic_config = classmethod(_derive_without_configs)  # type: ignore[assignment, method-assign]


class Meter:
    """Counts events as the stateful step sees them; stops the app after the last."""

    def __init__(self, app: Application, expected: int) -> None:
        self.app = app
        self.expected = expected
        self.seen = 0
        self.first = self.last = 0.0
        self.triggers = 0

    def start(self, value: object) -> None:
        """At the source: the clock starts with the first message read, before any re-keying."""
        if not self.first:
            self.first = time.perf_counter()

    def tick(self) -> None:
        now = time.perf_counter()
        self.seen += 1
        self.last = now
        if self.seen == self.expected:
            self.app.stop()


def build(app: Application, topic: str, envelopes: bool, meter: Meter, threshold: int) -> None:
    source = app.topic(topic, value_deserializer="json", key_deserializer="str")
    output = app.topic(f"{topic}.quix-triggers", value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.update(meter.start)
    if envelopes:
        sdf = sdf.apply(lambda value: value["batch"], expand=True)
        sdf = sdf.group_by(identity, name="identity")

    def update(event: dict[str, Any], state: State[str, Any]) -> dict[str, Any] | None:
        meter.tick()
        count = int(state.get("count", 0)) + 1
        state.set("count", count)
        state.set("last_seen", event.get("timestamp"))
        if count != threshold:
            return None
        meter.triggers += 1
        return {"user": identity(event), "count": count, "at": event.get("timestamp")}

    sdf = sdf.apply(update, stateful=True)
    sdf = sdf.filter(lambda trigger: trigger is not None)
    sdf.to_topic(output)


def peak_rss() -> int:
    """This process's peak resident set size in bytes (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def size_of(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("events", type=int)
    parser.add_argument("--envelopes", action="store_true")
    parser.add_argument("--threshold", type=int, default=10)
    args = parser.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="quix-state-"))
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=f"quix-bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
        # Tansu: the default session timeout makes the group join take ~22 s.
        consumer_extra_config={"session.timeout.ms": 6000},
    )
    meter = Meter(app, args.events)
    build(app, args.topic, args.envelopes, meter, args.threshold)
    app.run()
    seconds = meter.last - meter.first
    result = {
        "events": meter.seen,
        "seconds": round(seconds, 3),
        "events_per_second": round(meter.seen / seconds) if seconds > 0 else None,
        "triggers": meter.triggers,
        "peak_rss_bytes": peak_rss(),
        "state_bytes": size_of(state_dir),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
