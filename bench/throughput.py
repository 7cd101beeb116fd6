"""Kairos's throughput against a raw consumer (the ceiling) and Quix Streams (a peer), checked.

    python -m bench.throughput [--users 100000] [--events 200000] [--rules 50] [--envelope 100]
                               [--latency-seconds 20] [--seed 7]

On one embedded broker, with one realistic Segment workload (bench/workload.py: interleaved
sessions of page views, product views, cart adds, checkouts, identifies, anonymous visitors who
later sign up) and the example rules plus `--rules` generated ones (bench/ingest.py), it measures:

1. a raw aiokafka consumer (`getmany`) reading the whole input topic, without and with orjson
   decoding: what reading costs, the ceiling of any consumer in Python;
2. Quix Streams doing a comparable stateful job: per-user count and last-seen in RocksDB state,
   one threshold rule (bench/quix_peer.py);
3. one Kairos worker with the full rule set: events/s from the first write until its
   `kairos_events_processed_total` counts every event; then, on the same worker, the event →
   trigger latency (p50/p99) at a fixed offered load of half that maximum; its peak RSS (VmHWM)
   and the size of its profiles table's RocksDB files per user with state.

Each is run on one event per Kafka message (keyed by identity, as other producers write) and on
`{"batch": [...]}` envelopes of `--envelope` events (grouped by partition, as the HTTP collector
writes them). Correctness is checked while measuring: the same events are replayed offline
(app.replay) and the run fails (exit 1) if the distinct triggers Kairos published on
`kairos.triggers` are not as many as the replay's. Prints a table and writes
bench/results/throughput.json. A benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.broker import EmbeddedBroker
from app.replay import ReplayResult, replay, trigger_key
from app.rule_files import load_rulebook
from bench.ingest import PARTITIONS, metric_sum, processed, rules_folder
from bench.workload import Message, arrived_anonymous, envelopes, generate
from engine.clock import iso
from engine.rules import RuleBook
from tests.broker.harness import Kairos, Worker, read_all

RESULTS = Path("bench/results/throughput.json")
MB = 1024 * 1024


# --- results ---------------------------------------------------------------------------------


@dataclass
class Rate:
    """Events read or processed, and in how long."""

    events: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "events_per_second": round(self.per_second)}


@dataclass
class Latency:
    offered_per_second: float  # the rate asked for
    achieved_per_second: float  # the rate the producer kept
    seconds: float
    events: int
    samples: int  # triggers whose causing event was sent in the latency run
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    #: p50 of the events sent in each 5 s of the run: steady if the worker keeps up with the
    #: offered load, growing if it falls behind.
    p50_ms_by_5s: list[float | None] = field(default_factory=list)


@dataclass
class Check:
    """Kairos's published triggers against the replay of the same events."""

    events_replayed: int
    events_expected: int
    triggers_live: int  # distinct trigger ids read from kairos.triggers
    triggers_replay: int
    missing: int  # in the replay, not published
    extra: int  # published, not in the replay
    #: Of the missing and extra, those of visitors who arrived anonymous (identity merges).
    of_anonymous_visitors: int = 0
    #: A few of each, as "rule user cause-id", to start an investigation from.
    missing_examples: list[str] = field(default_factory=list)
    extra_examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.triggers_live == self.triggers_replay
            and self.events_replayed == self.events_expected
        )


@dataclass
class KairosRun:
    label: str
    rate: Rate
    check: Check
    peak_rss_bytes: int
    profiles_bytes: int  # RocksDB files of the profiles table
    data_dir_bytes: int  # the worker's whole data dir (every table)
    profiles: int  # profile keys with state (users and anonymous visitors), from the replay
    #: Seconds from the last event processed until its triggers were all on kairos.triggers, and
    #: until the worker was idle (done with its table writes).
    triggers_out_seconds: float
    idle_seconds: float

    @property
    def sustained(self) -> Rate:
        """Events over the time until the worker was idle: the load it can keep up with."""
        return Rate(self.rate.events, self.rate.seconds + self.idle_seconds)

    latency: Latency | None = None

    @property
    def bytes_per_user(self) -> float:
        return self.profiles_bytes / self.profiles if self.profiles else 0.0


@dataclass
class Report:
    config: dict[str, Any]
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)
    quix: dict[str, dict[str, Any]] = field(default_factory=dict)
    kairos: dict[str, KairosRun] = field(default_factory=dict)


# --- Kafka -----------------------------------------------------------------------------------

#: One write: (key, partition, value); a key lets Kafka pick the partition, else `partition` does.
Write = tuple[bytes | None, int | None, bytes]


async def produce(bootstrap: str, topic: str, writes: list[Write]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=65536)
    await producer.start()
    try:
        for key, partition, value in writes:
            await producer.send(topic, value, key=key, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def plain_writes(messages: list[Message]) -> list[Write]:
    """One event per message, keyed by identity: each user's events in one partition, in order."""
    return [(m.key.encode(), None, m.value) for m in messages]


def envelope_writes(batches: list[tuple[int, bytes]]) -> list[Write]:
    return [(None, partition, value) for partition, value in batches]


async def assigned_consumer(bootstrap: str, topic: str, **config: Any) -> AIOKafkaConsumer:
    """A consumer (no group) assigned every partition of `topic`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **config,
    )
    await consumer.start()
    partitions = consumer.partitions_for_topic(topic) or set()
    consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
    return consumer


async def raw_read(bootstrap: str, topic: str, messages: int, decode: bool) -> Rate:
    """Read `messages` messages from the start of `topic`; with `decode`, JSON-decode each.

    Counts events: one per message, or the length of an envelope's batch when decoding.
    """
    consumer = await assigned_consumer(bootstrap, topic, max_partition_fetch_bytes=4 * MB)
    try:
        await consumer.seek_to_beginning()
        read = events = 0
        started = time.perf_counter()
        while read < messages:
            batch = await consumer.getmany(timeout_ms=2000, max_records=10_000)
            if not batch:
                raise SystemExit(f"raw consumer: {topic} has only {read} of {messages} messages")
            for records in batch.values():
                read += len(records)
                events += sum(map(_events_in, records)) if decode else len(records)
        return Rate(events, time.perf_counter() - started)
    finally:
        await consumer.stop()


def _events_in(record: Any) -> int:
    value = orjson.loads(record.value)
    if isinstance(value, dict) and isinstance(value.get("batch"), list):
        return len(value["batch"])
    return 1


def raw_rates(bootstrap: str, topic: str, messages: int, events: int) -> dict[str, Any]:
    """The best of three reads each way: a read takes well under a second, so noise dominates."""
    plain = [asyncio.run(raw_read(bootstrap, topic, messages, False)) for _ in range(3)]
    decoded = [asyncio.run(raw_read(bootstrap, topic, messages, True)) for _ in range(3)]
    # Without decoding, a message's events are not counted: the workload says how many there are.
    fastest = min(plain, key=lambda r: r.seconds)
    return {
        "no_decode": Rate(events, fastest.seconds).as_dict(),
        "orjson_decode": min(decoded, key=lambda r: r.seconds).as_dict(),
    }


# --- Quix Streams ----------------------------------------------------------------------------


def quix_rate(bootstrap: str, topic: str, events: int, envelope: bool) -> dict[str, Any]:
    """Run bench/quix_peer.py in its own process; its JSON line, or why it could not run."""
    command = [sys.executable, "-m", "bench.quix_peer", bootstrap, topic, str(events)]
    if envelope:
        command.append("--envelopes")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}  # a dependency's deprecation noise
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    except subprocess.TimeoutExpired:
        return {"error": "Quix Streams did not finish in 15 minutes"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if "No module named 'quixstreams'" in done.stderr:
            last = "quixstreams is not installed: pip install -e '.[dev,bench]'"
        return {"error": last}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- Kairos ----------------------------------------------------------------------------------


def wait_processed(worker: Worker, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while processed(worker.url) < expected:
        if worker.process is None or worker.process.poll() is not None:
            raise SystemExit(f"the Kairos worker died:\n{worker.log_tail()}")
        if time.monotonic() > deadline:
            seen = int(processed(worker.url))
            raise SystemExit(f"Kairos processed {seen} of {expected} events in {timeout:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def deployment(broker: EmbeddedBroker, name: str, root: Path, rules: Path) -> Iterator[Kairos]:
    """A Kairos deployment with one ready worker; stopped on the way out."""
    workdir = root / name
    workdir.mkdir(parents=True)
    kairos = Kairos(broker, name, workdir)
    kairos.create_topics()
    worker = kairos.add_worker(KAIROS_RULES=str(rules), KAIROS_LOG_LEVEL="warn")
    try:
        worker.wait_ready(timeout=120)
        yield kairos
    finally:
        kairos.stop()


def timed_run(kairos: Kairos, writes: list[Write], expected: int) -> Rate:
    """Write everything to `kairos.events` and wait until the worker has processed it.

    The producer is ~50 times faster than a worker, so the time is the worker's.
    """
    worker = kairos.workers[0]
    started = time.perf_counter()
    asyncio.run(produce(kairos.broker.bootstrap, kairos.topic("events"), writes))
    wait_processed(worker, expected, timeout=max(600.0, expected / 100))
    return Rate(expected, time.perf_counter() - started)


def read_triggers(kairos: Kairos, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """Every trigger on `kairos.triggers` by id, once all the worker published are in.

    A trigger is counted as published once handed to the worker's producer, which may still hold
    it behind a backlog of other records (table changelogs) for a while.
    """
    deadline = time.monotonic() + timeout
    while True:
        records = read_all(kairos.broker.bootstrap, kairos.topic("triggers"), idle=1.0)
        published = metric_sum(kairos.url, "kairos_triggers_published_total")
        if len(records) >= published or time.monotonic() > deadline:
            triggers = (orjson.loads(r.value) for r in records)
            return {t["id"]: t for t in triggers}
        time.sleep(1)


def drain(kairos: Kairos) -> tuple[float, float]:
    """Seconds until every published trigger is on `kairos.triggers` (within ~1 s), and until the
    worker is idle.

    A worker goes on after its last event is counted: it still writes table changelogs, and
    anything it sends meanwhile waits behind them. The latency run starts once it is idle.
    """
    started = time.perf_counter()
    read_triggers(kairos, timeout=600)
    out = time.perf_counter() - started
    return out, out + wait_idle(kairos.workers[0])


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    # /proc/PID/stat: the fields after the command name's closing parenthesis start at field 3;
    # utime and stime are fields 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(worker: Worker, window: float = 2.0, busy: float = 0.3) -> float:
    """Seconds until the worker uses less than `busy` of a core over `window` (10 minutes at most).

    Idle, a worker still fetches every `KAIROS_FETCH_MAX_WAIT_MS` and ticks its timers: 16-19 %
    of a core after a 100k-event run. A threshold of 15 % then kept the wait going for 150 s,
    which halved the rate offered to the latency run. Busy, a worker uses a whole core.
    """
    assert worker.process is not None
    started = time.perf_counter()
    while time.perf_counter() - started < 600:
        before = cpu_seconds(worker.process.pid)
        time.sleep(window)
        if (cpu_seconds(worker.process.pid) - before) / window < busy:
            break
    return max(0.0, time.perf_counter() - started - window)


def check(
    live: dict[str, dict[str, Any]], result: ReplayResult, messages: list[Message], expected: int
) -> Check:
    replayed = {t["id"]: t for t in result.triggers}
    missing = sorted(replayed.keys() - live.keys())
    extra = sorted(live.keys() - replayed.keys())
    visitors = arrived_anonymous(messages)
    differing = [replayed[i] for i in missing] + [live[i] for i in extra]
    return Check(
        events_replayed=result.events,
        events_expected=expected,
        triggers_live=len(live),
        triggers_replay=len(replayed),
        missing=len(missing),
        extra=len(extra),
        of_anonymous_visitors=sum(t["data"]["user_id"] in visitors for t in differing),
        missing_examples=[" ".join(trigger_key(replayed[i])) for i in missing[:5]],
        extra_examples=[" ".join(trigger_key(live[i])) for i in extra[:5]],
    )


def peak_rss(pid: int) -> int:
    """A live process's peak resident set size in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def profiles_bytes(data_dir: Path) -> int:
    """Bytes of the profiles table's RocksDB databases (one per partition) in a data dir.

    Faust keeps a table `profiles` as `<app>-data/v1/tables/profiles-<partition>.db`; found by
    name rather than by that layout, which is Faust's.
    """
    dbs = [d for d in data_dir.rglob("profiles*") if d.is_dir() and d.suffix == ".db"]
    return sum(size_of(d) for d in dbs)


def measure_worker(kairos: Kairos) -> tuple[int, int, int]:
    """(peak RSS, profiles table bytes, data dir bytes) of the first worker; stops it.

    Sizes are read after the stop: RocksDB has then flushed what it held in memory.
    """
    worker = kairos.workers[0]
    assert worker.process is not None
    rss = peak_rss(worker.process.pid)
    worker.stop()
    data_dir = Path(worker.env["KAIROS_DATA_DIR"])
    return rss, profiles_bytes(data_dir), size_of(data_dir)


# --- latency ---------------------------------------------------------------------------------


async def paced_send(
    producer: AIOKafkaProducer, topic: str, messages: list[Message], rate: float
) -> tuple[dict[str, float], list[bytes], float]:
    """Send at `rate` events/s, each stamped with its send time.

    Returns each messageId's send time (epoch s), the lines as sent (for the replay) and how
    long sending took.
    """
    sent: dict[str, float] = {}
    lines: list[bytes] = []
    started = time.perf_counter()
    for i, message in enumerate(messages):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        event = orjson.loads(message.value)
        now = time.time()
        event["timestamp"] = iso(int(now * 1000))  # live event time, so no timer comes due
        value = orjson.dumps(event)
        sent[event["messageId"]] = now
        lines.append(value)
        await producer.send(topic, value, key=message.key.encode())
    return sent, lines, time.perf_counter() - started


async def collect_triggers(
    consumer: AIOKafkaConsumer, stop: asyncio.Event, received: list[tuple[str, float]]
) -> None:
    """(causing record id, receive time) of every trigger until `stop` is set."""
    while not stop.is_set():
        batch = await consumer.getmany(timeout_ms=100)
        now = time.time()
        for records in batch.values():
            for record in records:
                cause = orjson.loads(record.value)["data"]["explanation"]["cause"]["id"]
                received.append((cause, now))


async def wait_processed_async(worker: Worker, expected: int, timeout: float) -> None:
    await asyncio.to_thread(wait_processed, worker, expected, timeout)


async def latency_run(
    kairos: Kairos, messages: list[Message], rate: float, baseline: int
) -> tuple[Latency, list[bytes]]:
    """Offer `messages` at `rate`; latency from each send to its triggers' arrival.

    `baseline` is what the worker had processed before. Returns the figures and the lines sent.
    """
    bootstrap = kairos.broker.bootstrap
    # Tansu holds a fetch for the whole max wait even when data arrives: keep it short.
    consumer = await assigned_consumer(bootstrap, kairos.topic("triggers"), fetch_max_wait_ms=10)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    stop = asyncio.Event()
    received: list[tuple[str, float]] = []
    try:
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)  # resolve the end now: only this run's triggers count
        reader = asyncio.create_task(collect_triggers(consumer, stop, received))
        sent, lines, seconds = await paced_send(producer, kairos.topic("events"), messages, rate)
        await producer.flush()
        await wait_processed_async(kairos.workers[0], baseline + len(messages), 300)
        await asyncio.sleep(1.0)  # the last triggers are sent before their events count
        stop.set()
        await reader
    finally:
        await producer.stop()
        await consumer.stop()
    timed = [(sent[cause], 1000 * (at - sent[cause])) for cause, at in received if cause in sent]
    return _latency(rate, len(messages), seconds, timed), lines


def quantile(samples: list[float], q: float) -> float | None:
    """The `q` quantile of sorted samples (nearest rank), in ms rounded to 0.1."""
    return round(samples[min(len(samples) - 1, int(q * len(samples)))], 1) if samples else None


def _latency(rate: float, events: int, seconds: float, timed: list[tuple[float, float]]) -> Latency:
    """The figures of (send time, latency ms) samples."""
    samples = sorted(latency for _, latency in timed)
    start = min((at for at, _ in timed), default=0.0)
    windows: dict[int, list[float]] = {}
    for at, latency in timed:
        windows.setdefault(int((at - start) // 5), []).append(latency)
    by_5s = [quantile(sorted(windows.get(i, [])), 0.5) for i in range(max(windows, default=-1) + 1)]
    return Latency(
        offered_per_second=round(rate, 1),
        achieved_per_second=round(events / seconds, 1) if seconds else 0.0,
        seconds=round(seconds, 2),
        events=events,
        samples=len(samples),
        p50_ms=quantile(samples, 0.50),
        p99_ms=quantile(samples, 0.99),
        max_ms=round(samples[-1], 1) if samples else None,
        p50_ms_by_5s=by_5s,
    )


# --- the runs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    events: int
    users: int
    rules: int
    envelope: int
    latency_seconds: float
    seed: int
    anonymous_percent: int


def now_ms() -> int:
    return int(time.time() * 1000)


def workload(
    opts: Options, end_ms: int, count: int = 0, seed: int = 0, prefix: str = "bench"
) -> list[Message]:
    """The options' workload (`count` events, else `opts.events`), timestamped up to `end_ms`."""
    return generate(
        count or opts.events, opts.users, end_ms, seed or opts.seed, prefix, opts.anonymous_percent
    )


def kairos_plain(
    broker: EmbeddedBroker, root: Path, rules: Path, book: RuleBook, opts: Options
) -> tuple[KairosRun, list[Message]]:
    """One event per message: throughput, then latency at half of it, on the same worker."""
    messages = workload(opts, now_ms())
    with deployment(broker, "plain", root, rules) as kairos:
        say(f"Kairos, one event per message: {len(messages):,} events ...")
        rate = timed_run(kairos, plain_writes(messages), len(messages))
        out, idle = drain(kairos)
        sustained = Rate(rate.events, rate.seconds + idle)
        say(
            f"  {rate.per_second:,.0f} events/s; {sustained.per_second:,.0f} until idle "
            f"({idle:.1f} s more)"
        )
        say("  latency at half of that ...")
        offered = max(sustained.per_second / 2, 1.0)
        count = max(1, int(offered * opts.latency_seconds))
        extra = workload(opts, now_ms(), count, seed=opts.seed + 1, prefix="latency")
        latency, sent = asyncio.run(latency_run(kairos, extra, offered, len(messages)))
        say(f"  p50 {latency.p50_ms} ms, p99 {latency.p99_ms} ms; checking triggers ...")
        live = read_triggers(kairos)
        rss, table, data = measure_worker(kairos)
    lines = [m.value for m in messages] + sent
    result = replay(lines, book)
    run = KairosRun(
        label="plain",
        rate=rate,
        check=check(live, result, messages + extra, len(lines)),
        peak_rss_bytes=rss,
        profiles_bytes=table,
        data_dir_bytes=data,
        profiles=len(result.states),
        triggers_out_seconds=round(out, 1),
        idle_seconds=round(idle, 1),
        latency=latency,
    )
    return run, messages


def kairos_envelopes(
    broker: EmbeddedBroker, root: Path, rules: Path, book: RuleBook, opts: Options
) -> tuple[KairosRun, list[tuple[int, bytes]]]:
    """Envelopes of `opts.envelope` events: the same events, stamped afresh so none is stale."""
    messages = workload(opts, now_ms())
    batches = envelopes(messages, opts.envelope, PARTITIONS)
    with deployment(broker, "envelopes", root, rules) as kairos:
        say(f"Kairos, envelopes of {opts.envelope}: {len(batches):,} messages ...")
        rate = timed_run(kairos, envelope_writes(batches), len(messages))
        out, idle = drain(kairos)
        say(f"  {rate.per_second:,.0f} events/s; idle {idle:.1f} s after the last event")
        live = read_triggers(kairos)
        rss, table, data = measure_worker(kairos)
    result = replay([value for _, value in batches], book)
    run = KairosRun(
        label="envelopes",
        rate=rate,
        check=check(live, result, messages, len(messages)),
        peak_rss_bytes=rss,
        profiles_bytes=table,
        data_dir_bytes=data,
        profiles=len(result.states),
        triggers_out_seconds=round(out, 1),
        idle_seconds=round(idle, 1),
    )
    return run, batches


def peers(report: Report, key: str, bootstrap: str, topic: str, messages: int, events: int) -> None:
    say(f"raw consumer and Quix Streams on {topic} ...")
    report.raw[key] = raw_rates(bootstrap, topic, messages, events)
    report.quix[key] = quix_rate(bootstrap, topic, events, envelope=key == "envelopes")


def run(opts: Options, book: RuleBook, rules: Path, root: Path) -> Report:
    report = Report(config=config(opts, book))
    with EmbeddedBroker(log_file=root / "broker.log") as broker:
        plain, messages = kairos_plain(broker, root, rules, book, opts)
        report.kairos["plain"] = plain
        peers(report, "plain", broker.bootstrap, "plain.events", len(messages), len(messages))
        del messages
        batched, batches = kairos_envelopes(broker, root, rules, book, opts)
        report.kairos["envelopes"] = batched
        topic = "envelopes.events"
        peers(report, "envelopes", broker.bootstrap, topic, len(batches), opts.events)
    report.config["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def config(opts: Options, book: RuleBook) -> dict[str, Any]:
    return {
        **asdict(opts),
        "rules_total": len(book.rules),
        "partitions": PARTITIONS,
        "started_at": iso(now_ms()),
        # The machine may be shared: its load says how much the figures can be trusted.
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


# --- output ----------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def as_json(report: Report) -> dict[str, Any]:
    def kairos(run: KairosRun) -> dict[str, Any]:
        out = {
            "throughput": run.rate.as_dict(),
            "until_idle": run.sustained.as_dict(),
            "triggers_out_seconds": run.triggers_out_seconds,
            "idle_seconds": run.idle_seconds,
            "correctness": {**asdict(run.check), "ok": run.check.ok},
            "peak_rss_bytes": run.peak_rss_bytes,
            "profiles_table_bytes": run.profiles_bytes,
            "data_dir_bytes": run.data_dir_bytes,
            "profiles_with_state": run.profiles,
            "rocksdb_bytes_per_user": round(run.bytes_per_user, 1),
        }
        if run.latency is not None:
            out["latency"] = asdict(run.latency)
        return out

    return {
        "config": report.config,
        "raw_consumer": report.raw,
        "quix_streams": report.quix,
        "kairos": {key: kairos(run) for key, run in report.kairos.items()},
        "ratios": {key: ratios(report, key) for key in report.kairos},
    }


def ratios(report: Report, key: str) -> dict[str, float | None]:
    """Kairos's events/s as a fraction of the raw consumer's and of Quix's, same input."""
    mine = report.kairos[key].rate.per_second
    raw = report.raw.get(key, {}).get("no_decode", {}).get("events_per_second")
    quix = report.quix.get(key, {}).get("events_per_second")
    return {
        "kairos_to_raw": round(mine / raw, 5) if raw else None,
        "kairos_to_quix": round(mine / quix, 5) if quix else None,
    }


def table(report: Report) -> str:
    c = report.config
    lines = [
        f"{c['events']:,} events, up to {c['users']:,} users, {c['rules_total']} rules "
        f"({c['rules']} generated), {c['partitions']} partitions, {c['cpus']} CPUs",
        "",
        f"{'pipeline':<50}{'events/s':>12}{'seconds':>10}{'peak RSS':>11}",
    ]
    names = {"plain": "1 event/message", "envelopes": f"envelopes of {c['envelope']}"}
    for key, name in names.items():
        lines += _rows(report, key, name)
    lines.append("")
    for key, name in names.items():
        r = ratios(report, key)
        lines.append(
            f"Kairos / raw ({name}): {_pct(r['kairos_to_raw'])}   "
            f"Kairos / Quix: {_pct(r['kairos_to_quix'])}"
        )
    lines += _kairos_lines(report)
    return "\n".join(lines)


def _rows(report: Report, key: str, name: str) -> list[str]:
    raw, quix, run = report.raw.get(key, {}), report.quix.get(key, {}), report.kairos[key]
    rows = [
        _row(f"raw aiokafka getmany, {name}", raw.get("no_decode")),
        _row(f"raw aiokafka getmany + orjson, {name}", raw.get("orjson_decode")),
        _row(f"Quix Streams (1 rule), {name}", quix),
        _row(
            f"Kairos (all rules), {name}",
            {**run.rate.as_dict(), "peak_rss_bytes": run.peak_rss_bytes},
        ),
    ]
    return rows


def _row(name: str, figures: dict[str, Any] | None) -> str:
    if not figures or "error" in figures:
        why = (figures or {}).get("error", "not run")
        return f"{name:<50}  failed: {why}"
    rss = figures.get("peak_rss_bytes")
    shown = f"{rss / MB:,.0f} MB" if rss else "-"
    return f"{name:<50}{figures['events_per_second']:>12,}{figures['seconds']:>10.2f}{shown:>11}"


def _differences(ch: Check) -> str:
    if not ch.missing and not ch.extra:
        return ""
    return (
        f" (missing {ch.missing}, extra {ch.extra}; {ch.of_anonymous_visitors} of these are of "
        "visitors who arrived anonymous)"
    )


def _trend(lat: Latency) -> str:
    """A warning when latency grew through the run: the offered load was more than it handles."""
    windows = [p for p in lat.p50_ms_by_5s if p is not None]
    if len(windows) >= 2 and windows[-1] > max(2 * windows[0], 1000):
        return "; growing: the worker fell behind the offered load"
    return ""


def _pct(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.2f} %"


def _kairos_lines(report: Report) -> list[str]:
    lines = []
    plain = report.kairos["plain"]
    if plain.latency is not None:
        lat = plain.latency
        lines.append(
            f"Kairos event → trigger latency at {lat.offered_per_second:,.0f} events/s offered "
            f"(half its max until idle; {lat.achieved_per_second:,.0f} kept) "
            f"for {lat.seconds:.0f} s: "
            f"p50 {lat.p50_ms} ms, p99 {lat.p99_ms} ms, max {lat.max_ms} ms "
            f"({lat.samples:,} triggers; p50 per 5 s: {', '.join(map(str, lat.p50_ms_by_5s))}"
            f"{_trend(lat)})"
        )
    for key, run in report.kairos.items():
        lines.append(
            f"Kairos ({key}): after the last event was processed, all triggers were out in "
            f"{run.triggers_out_seconds} s and the worker idle in {run.idle_seconds} s: "
            f"{run.sustained.per_second:,.0f} events/s until idle"
        )
    for key, run in report.kairos.items():
        lines.append(
            f"Kairos RocksDB profiles ({key}): {run.bytes_per_user:,.0f} bytes per user "
            f"({run.profiles_bytes / MB:,.1f} MB / {run.profiles:,} profiles; whole data dir "
            f"{run.data_dir_bytes / MB:,.1f} MB)"
        )
    for key, run in report.kairos.items():
        ch = run.check
        verdict = "OK" if ch.ok else "MISMATCH"
        lines.append(
            f"Correctness ({key}): {verdict}: {ch.triggers_live:,} distinct triggers published, "
            f"replay {ch.triggers_replay:,}{_differences(ch)}; "
            f"{ch.events_replayed:,} of {ch.events_expected:,} events replayed"
        )
        lines += [f"  missing: {example}" for example in ch.missing_examples]
        lines += [f"  extra:   {example}" for example in ch.extra_examples]
    return lines


# --- main ------------------------------------------------------------------------------------


def options() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rules", type=int, default=50, help="generated rules")
    parser.add_argument("--envelope", type=int, default=100, help="events per envelope")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--anonymous", type=int, default=30, help="percent of users who arrive anonymous"
    )
    args = parser.parse_args()
    return Options(
        args.events,
        args.users,
        args.rules,
        args.envelope,
        args.latency_seconds,
        args.seed,
        args.anonymous,
    )


def main() -> None:
    opts = options()
    root = Path(tempfile.mkdtemp(prefix="kairos-throughput-"))
    try:
        rules = rules_folder(root, opts.rules)
        book = load_rulebook(rules)
        report = run(opts, book, rules, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(table(report), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(as_json(report), indent=2))
    failed = [key for key, run in report.kairos.items() if not run.check.ok]
    if failed:
        which = ", ".join(failed)
        raise SystemExit(
            f"FAILED: Kairos's triggers differ from the replay of the same events ({which})"
        )


if __name__ == "__main__":
    main()
