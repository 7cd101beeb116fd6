"""A deterministic Segment workload, and how to check a live run of it against the replay.

Used by the crash and rebalance tests (tests/broker/test_crash.py, test_rebalance.py) and by the
longer script `python -m bench.crash`. Only Kairos's external surface is used: the bytes written
to `kairos.events`, `GET /users/{id}`, the records on `kairos.triggers` and `kairos.dlq`, and the
offline replay (`app.replay`, the same pure core as the workers, with the workers' rules).

**What a live run can be compared with.** Kairos keeps the order of a user's records only along
one path through its partitions. The workload respects that, so that the live outcome is
determined by the events alone, whatever the interleaving of partitions, crashes and rebalances:

- every event goes to the `kairos.events` partition of its identity key (anonymousId, else
  userId; previousId for alias), so one identity's events keep their order;
- a person has one identity key for life: known users always send their userId alone; visitors
  always send their anonymousId (with the userId once they identify), as analytics.js does;
- a visitor's identify (or alias) is their last event of its chunk, and each chunk is processed
  completely (profiles equal to the replay of everything so far) before the next one is written,
  so the anonymous profile's hand-over reaches the user before anything newer of theirs.

Every event carries an explicit ISO `timestamp` (a few minutes before now) and a unique
`messageId`; a few are sent twice (a retrying client), a few are invalid (dead-lettered). Timers
of the rules used (30 minutes and more) are all due long after the run: none fires live or in the
replay, which `Workload.check_timers` verifies.
"""

from __future__ import annotations

import random
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from app.replay import ReplayResult, replay
from app.rule_files import load_rulebook
from engine.clock import iso, parse_iso_ms
from engine.profile import profile_view
from engine.rules import RuleBook
from tests.broker.harness import ADMIN_TOKEN, Kairos, Worker

PARTITIONS = 8
PRODUCTS = {"A": "Lamp", "B": "Desk", "C": "Chair", "D": "Shelf", "E": "Rug"}
PAGES = [("Home", "/"), ("Pricing", "/pricing"), ("Docs", "/docs"), ("Blog", "/blog")]
PLANS = ["free", "pro", "team", "enterprise"]
NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]


def partition_of(identity: str) -> int:
    """The `kairos.events` partition of an identity key (stable: crc32)."""
    return zlib.crc32(identity.encode()) % PARTITIONS


@dataclass
class Person:
    index: int
    user_id: str | int
    anonymous_id: str | None = None  # visitors only
    link_chunk: int | None = None  # the chunk in which a visitor identifies (None: never)
    link_by_alias: bool = False
    linked: bool = False
    carts: list[str] = field(default_factory=list)
    weight: float = 1.0

    @property
    def identity(self) -> str:
        """The identity key of all this person's events (ids here are already normalized)."""
        return self.anonymous_id if self.anonymous_id is not None else str(self.user_id).lower()


@dataclass
class Workload:
    """Messages for `kairos.events`, per chunk, each as (partition, value bytes)."""

    seed: int
    chunks: list[list[tuple[int, bytes]]]
    events: int  # events written, invalid and re-sent ones included
    invalid: int  # events (or messages) Kairos must dead-letter
    resent: int  # events written a second time, same bytes
    first_ms: int
    last_ms: int

    def lines(self, chunks: int | None = None) -> list[bytes]:
        """The message values of the first `chunks` chunks (all by default), in write order."""
        upto = self.chunks if chunks is None else self.chunks[:chunks]
        return [value for chunk in upto for _, value in chunk]


def count_events(chunks: list[list[tuple[int, bytes]]]) -> int:
    """Events in these messages (an envelope counts its events, a broken message one)."""
    return sum(
        len(orjson.loads(v)["batch"]) if v.startswith(b'{"batch"') else 1
        for chunk in chunks
        for _, v in chunk
    )


def build(
    seed: int,
    users: int = 60,
    events: int = 1800,
    chunks: int = 6,
    span_ms: int = 4 * 60_000,
    end_ms: int | None = None,
    link_share: float = 0.85,
) -> Workload:
    """A workload of about `events` events of `users` people, in `chunks` chunks.

    Event times are spread evenly over `span_ms` ending at `end_ms` (default: a minute ago).
    A third of the people are anonymous visitors, `link_share` of whom identify (or alias).
    """
    rng = random.Random(seed)
    end = end_ms if end_ms is not None else int(time.time() * 1000) - 60_000
    first = end - span_ms
    step = max(1, span_ms // max(1, events))
    people = _people(rng, users, chunks, link_share)
    clock = [first]
    written: dict[int, list[dict[str, Any]]] = {}  # each person's events, for re-sends
    result_chunks: list[list[tuple[int, bytes]]] = []
    counts = Counter[str]()
    per_chunk = events // chunks
    for chunk in range(chunks):
        plan = _chunk_plan(rng, people, chunk, per_chunk)
        stream: list[tuple[int, bytes | dict[str, Any]]] = []
        for person, kind in plan:
            mine = written.setdefault(person.index, [])
            if kind == "resend" and mine:
                # A client retrying one of its recent events: same bytes, on the same path.
                stream.append((partition_of(person.identity), rng.choice(mine[-20:])))
                counts["resent"] += 1
                continue
            clock[0] += step
            event = _event(rng, person, kind, clock[0], f"s{seed}-m{counts['written']}")
            counts["written"] += 1
            mine.append(event)
            stream.append((partition_of(person.identity), event))
        for _ in range(max(1, per_chunk // 150)):  # a few events Kairos must dead-letter
            clock[0] += step
            bad = {
                "type": "track",
                "userId": "broken",
                "messageId": f"s{seed}-bad-{counts['invalid']}",
                "timestamp": iso(clock[0]),
                "properties": {"why": "track without an event name"},
            }
            position = rng.randrange(len(stream) + 1)
            stream.insert(position, (rng.randrange(PARTITIONS), bad))
            counts["invalid"] += 1
        stream.insert(rng.randrange(len(stream) + 1), (rng.randrange(PARTITIONS), b"{not json"))
        counts["invalid"] += 1
        result_chunks.append(_messages(rng, stream))
    return Workload(
        seed=seed,
        chunks=result_chunks,
        events=count_events(result_chunks),
        invalid=counts["invalid"],
        resent=counts["resent"],
        first_ms=first,
        last_ms=clock[0],
    )


def _people(rng: random.Random, users: int, chunks: int, link_share: float) -> list[Person]:
    people: list[Person] = []
    visitors = users // 3
    for i in range(users):
        if i < visitors:
            person = Person(
                i,
                f"visitor-{i}@example.com",
                anonymous_id=f"anon-{i:03d}-{rng.randrange(16**6):06x}",
            )
            # Most visitors identify (a few by alias), in some chunk; a few stay anonymous.
            if rng.random() < link_share:
                person.link_chunk = rng.randrange(chunks)
                person.link_by_alias = rng.random() < 0.2
        elif i % 10 == 3:
            person = Person(i, 70_000 + i)  # a numeric userId, stringified by Kairos
        elif i % 5 == 1:
            person = Person(i, f"{NAMES[i % len(NAMES)].lower()}.{i}@example.com")
        else:
            person = Person(i, f"user-{i:03d}")
        person.weight = rng.choice([0.5, 1.0, 1.0, 1.5, 2.5])
        people.append(person)
    return people


_KINDS = [
    ("page", 30),
    ("product_viewed", 22),
    ("product_added", 8),
    ("order_completed", 5),
    ("signed_in", 8),
    ("identify", 6),
    ("screen", 4),
    ("onboarding_completed", 2),
    ("subscription_cancelled", 1.5),
    ("resend", 1.5),
]


def _chunk_plan(
    rng: random.Random, people: list[Person], chunk: int, size: int
) -> list[tuple[Person, str]]:
    """Which person does what, in order, in one chunk; a visitor's link is their last event."""
    kinds, kind_weights = zip(*_KINDS, strict=True)
    weights = [p.weight for p in people]
    plan = [
        (person, rng.choices(kinds, kind_weights)[0])
        for person in rng.choices(people, weights, k=size)
    ]
    for person in people:
        if person.link_chunk != chunk:
            continue
        mine = [i for i, (p, _) in enumerate(plan) if p is person]
        if mine:
            cut = rng.choice(mine)
            plan = [item for i, item in enumerate(plan) if not (item[0] is person and i > cut)]
            plan[cut] = (person, "link")
        else:
            plan.insert(rng.randrange(len(plan) + 1), (person, "link"))
    return plan


def _event(
    rng: random.Random, person: Person, kind: str, at_ms: int, message_id: str
) -> dict[str, Any]:
    base: dict[str, Any] = {"messageId": message_id, "timestamp": iso(at_ms)}
    if person.anonymous_id is not None:
        base["anonymousId"] = person.anonymous_id
        if person.linked and rng.random() < 0.7:
            base["userId"] = person.user_id
    else:
        base["userId"] = person.user_id
    if kind == "link":
        person.linked = True
        if person.link_by_alias:
            return {
                "type": "alias",
                "previousId": person.anonymous_id,
                "userId": person.user_id,
                "messageId": message_id,
                "timestamp": iso(at_ms),
            }
        return {**base, "userId": person.user_id, "type": "identify", "traits": _traits(rng)}
    if kind == "identify":
        if person.anonymous_id is not None and not person.linked:
            kind = "signed_in"  # an anonymous identify would be a link; keep links planned
        else:
            return {**base, "type": "identify", "traits": _traits(rng)}
    if kind == "page":
        name, path = rng.choice(PAGES)
        return {**base, "type": "page", "name": name, "properties": {"path": path}}
    if kind == "screen":
        return {**base, "type": "screen", "name": rng.choice(["Feed", "Settings", "Cart"])}
    if kind == "product_viewed":
        product = rng.choice("AABCDE")
        props = {"product_id": product, "name": PRODUCTS[product], "price": rng.randrange(5, 300)}
        return {**base, "type": "track", "event": "Product Viewed", "properties": props}
    if kind == "product_added":
        cart = f"cart-{person.index}-{len(person.carts)}"
        person.carts.append(cart)
        product = rng.choice("ABCDE")
        props = {"cart_id": cart, "product_id": product, "name": PRODUCTS[product]}
        return {**base, "type": "track", "event": "Product Added", "properties": props}
    if kind == "order_completed":
        cart = rng.choice(person.carts) if person.carts else f"cart-{person.index}-none"
        props = {"cart_id": cart, "order_id": f"o-{message_id}", "revenue": rng.randrange(10, 500)}
        return {**base, "type": "track", "event": "Order Completed", "properties": props}
    if kind == "onboarding_completed":
        return {**base, "type": "track", "event": "Onboarding Completed"}
    if kind == "subscription_cancelled":
        return {**base, "type": "track", "event": "Subscription Cancelled"}
    return {**base, "type": "track", "event": "Signed In", "properties": {"method": "password"}}


def _traits(rng: random.Random) -> dict[str, Any]:
    traits: dict[str, Any] = {"plan": rng.choice(PLANS)}
    if rng.random() < 0.6:
        traits["first_name"] = rng.choice(NAMES)
    if rng.random() < 0.15:
        traits["role"] = "admin"
    elif rng.random() < 0.2:
        traits["role"] = "member"
    if rng.random() < 0.1:
        traits["onboarding_completed"] = True
    return traits


def _messages(
    rng: random.Random, stream: list[tuple[int, bytes | dict[str, Any]]]
) -> list[tuple[int, bytes]]:
    """Group a chunk's events into messages: single events and `{"batch": [...]}` envelopes.

    An envelope holds events of one partition only, and each partition's events keep their order.
    """
    out: list[tuple[int, bytes]] = []
    pending: dict[int, list[dict[str, Any]]] = {}
    target: dict[int, int] = {}

    def flush(partition: int) -> None:
        items = pending.pop(partition, [])
        if len(items) == 1 and rng.random() < 0.9:
            out.append((partition, orjson.dumps(items[0])))
        elif items:
            out.append((partition, orjson.dumps({"batch": items})))

    for partition, item in stream:
        if isinstance(item, bytes):  # a raw (broken) message goes out as is
            flush(partition)
            out.append((partition, item))
            continue
        pending.setdefault(partition, []).append(item)
        size = target.setdefault(partition, 1 if rng.random() < 0.5 else rng.randrange(2, 25))
        if len(pending[partition]) >= size:
            flush(partition)
            del target[partition]
    for partition in sorted(pending):
        flush(partition)
    return out


# --- the expected outcome: the offline replay of the same bytes with the workers' rules ------


def rulebook(kairos: Kairos) -> RuleBook:
    return load_rulebook(kairos.rules_dir)


def expected(workload: Workload, book: RuleBook, chunks: int | None = None) -> ReplayResult:
    return replay(workload.lines(chunks), book)


def check_timers(result: ReplayResult, not_before_ms: int) -> None:
    """The workload's precondition: no timer fired in the replay, none is due before then."""
    assert result.timers_fired == 0, f"{result.timers_fired} timers fired in the replay"
    dues = [t["due"] for s in result.states.values() for t in s.get("timers", {}).values()]
    if dues:
        soonest = min(dues)
        assert soonest > not_before_ms, (
            f"a timer is due at {iso(soonest)}, before {iso(not_before_ms)}: it could fire live"
        )


# --- comparing a live deployment with it -----------------------------------------------------


@dataclass
class StateReport:
    users: int = 0
    matching: int = 0
    lost: int = 0  # events the replay counts that the live profile does not (events_total)
    doubled: int = 0  # events the live profile counts more than the replay (events_total)
    unreachable: int = 0  # profiles the API did not answer (404, errors)
    differences: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.matching == self.users

    def summary(self, limit: int = 8) -> str:
        lines = [
            f"{self.matching}/{self.users} profiles equal the replay; events lost {self.lost}, "
            f"doubled {self.doubled}; unreachable {self.unreachable}"
        ]
        for user, diffs in list(self.differences.items())[:limit]:
            lines.append(f"  {user}: " + "; ".join(diffs[:6]))
        return "\n".join(lines)


def live_url(kairos: Kairos) -> str:
    alive = [w for w in kairos.workers if w.alive]
    assert alive, "no worker is running"
    return alive[0].url


def fetch_profile(url: str, user: str) -> dict[str, Any] | None:
    try:
        answer = httpx.get(
            f"{url}/users/{quote(user, safe=':@')}",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
    except httpx.HTTPError:
        return None
    return dict(answer.json()) if answer.status_code == 200 else None


def compare_view(live: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Differences between a live profile and the replay's, field by field.

    The engagement score is decayed to each side's own `now` (milliseconds apart): compared to
    0.01. Everything else is compared exactly (counts at 1h..30d, traits and their sources,
    first/last seen, recent items, anonymous ids, pending timers, merges).
    """
    diffs: list[str] = []
    for name in sorted({*live, *wanted}):
        mine, theirs = live.get(name), wanted.get(name)
        if name == "engagement_score" and mine is not None and theirs is not None:
            if abs(float(mine) - float(theirs)) > 0.01:
                diffs.append(f"engagement_score live {mine} replay {theirs}")
        elif isinstance(mine, list) and isinstance(theirs, list) and mine != theirs:
            # Long lists (pending timers, recent items) differ in an element or two: name them.
            only_live = [item for item in mine if item not in theirs]
            only_replay = [item for item in theirs if item not in mine]
            order = "" if only_live or only_replay else " (same elements, other order)"
            diffs.append(
                f"{name}{order}: live only {_short(only_live)} replay only {_short(only_replay)}"
                f" (live {len(mine)}, replay {len(theirs)})"
            )
        elif mine != theirs:
            diffs.append(f"{name}: live {_short(mine)} replay {_short(theirs)}")
    return diffs


def _short(value: Any, limit: int = 300) -> str:
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= limit else text[:limit] + "..."


def compare_profiles(
    kairos: Kairos, result: ReplayResult, half_life_ms: int | None, only: set[str] | None = None
) -> StateReport:
    report = StateReport()
    url = live_url(kairos)
    for user, state in sorted(result.states.items()):
        if only is not None and user not in only:
            continue
        report.users += 1
        live = fetch_profile(url, user)
        now = int(time.time() * 1000)
        wanted = profile_view(state, now, half_life_ms)
        if live is None:
            report.unreachable += 1
            report.lost += int(wanted.get("events_total", 0))
            report.differences[user] = ["no profile"]
            continue
        diffs = compare_view(live, wanted)
        if not diffs:
            report.matching += 1
            continue
        report.differences[user] = diffs
        delta = int(live.get("events_total", 0)) - int(wanted.get("events_total", 0))
        report.lost += max(0, -delta)
        report.doubled += max(0, delta)
    return report


def wait_profiles(
    kairos: Kairos, result: ReplayResult, half_life_ms: int | None, timeout: float = 60
) -> StateReport:
    """Poll until every profile equals the replay's (or `timeout`): the last comparison.

    Profiles found equal are not asked again until all are; then all are compared once more.
    """
    deadline = time.monotonic() + timeout
    pending: set[str] | None = None
    report = StateReport()
    while True:
        report = compare_profiles(kairos, result, half_life_ms, pending)
        if report.ok:
            if pending is None:
                return report
            pending = None  # all matched once: compare everything again, to be sure
            continue
        pending = set(report.differences)
        if time.monotonic() > deadline:
            return compare_profiles(kairos, result, half_life_ms)
        time.sleep(0.5)


@dataclass
class TriggerReport:
    expected: int = 0
    records: int = 0
    distinct: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # same id, other content

    @property
    def duplicates(self) -> int:
        return self.records - self.distinct

    @property
    def ok(self) -> bool:
        return not self.missing and not self.extra and not self.changed

    def summary(self) -> str:
        return (
            f"triggers: replay {self.expected} ids, live {self.records} records of {self.distinct} "
            f"distinct ids ({self.duplicates} duplicate records); missing {len(self.missing)}, "
            f"extra {len(self.extra)}, same id with other content {len(self.changed)}"
            + (f"\n  missing e.g. {self.missing[:5]}" if self.missing else "")
            + (f"\n  extra e.g. {self.extra[:5]}" if self.extra else "")
            + (f"\n  changed e.g. {self.changed[:5]}" if self.changed else "")
        )


def compare_triggers(kairos: Kairos, result: ReplayResult) -> TriggerReport:
    wanted = {t["id"]: t for t in result.triggers}
    records = [orjson.loads(r.value) for r in kairos.read_topic("triggers", idle=0.5)]
    live: dict[str, dict[str, Any]] = {}
    report = TriggerReport(expected=len(wanted), records=len(records))
    for trigger in records:
        earlier = live.setdefault(trigger["id"], trigger)
        if earlier != trigger and trigger["id"] not in report.changed:
            report.changed.append(trigger["id"])  # a re-send that differs from the first
    report.distinct = len(live)
    report.missing = sorted(wanted.keys() - live.keys())
    report.extra = sorted(live.keys() - wanted.keys())
    for tid in sorted(wanted.keys() & live.keys()):
        if live[tid] != wanted[tid] and tid not in report.changed:
            report.changed.append(tid)
    return report


def wait_triggers(kairos: Kairos, result: ReplayResult, timeout: float = 15) -> TriggerReport:
    deadline = time.monotonic() + timeout
    while True:
        report = compare_triggers(kairos, result)
        if report.ok or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


def dead_letters(kairos: Kairos) -> tuple[int, int]:
    """(records on kairos.dlq, distinct dead-lettered inputs: partition, offset, bytes, reason).

    The reason tells apart two bad events of one envelope, which share the envelope's bytes.
    """
    letters = [orjson.loads(r.value) for r in kairos.read_topic("dlq", idle=0.5)]
    distinct = {
        (
            letter["source_topic"],
            letter["source_partition"],
            letter["source_offset"],
            letter["original"],
            letter["reason"],
        )
        for letter in letters
    }
    return len(letters), len(distinct)


def processed_total(workers: list[Worker]) -> float:
    """`kairos_events_processed_total` summed over the running workers (since their start)."""
    total = 0.0
    for worker in workers:
        if not worker.alive:
            continue
        try:
            text = httpx.get(f"{worker.url}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        for line in text.splitlines():
            if line.startswith("kairos_events_processed_total{"):
                total += float(line.rpartition(" ")[2])
    return total


def first_event_time(workload: Workload) -> int:
    first = orjson.loads(workload.chunks[0][0][1])
    item = first["batch"][0] if "batch" in first else first
    return parse_iso_ms(item["timestamp"])


def save(workload: Workload, path: Path) -> Path:
    """The workload as a JSONL file `kairos replay` reads (one message value per line)."""
    path.write_bytes(b"".join(line + b"\n" for line in workload.lines()))
    return path


# --- driving a deployment through the workload ------------------------------------------------


def kill_during(
    kairos: Kairos,
    chunk: list[tuple[int, bytes]],
    rng: random.Random,
    down: tuple[float, float] = (0.0, 0.0),
) -> str:
    """Write a chunk while one worker is SIGKILLed at a random point and restarted.

    The chunk is cut at two random points: the first part is written, and after a random pause
    (the workers are busy with it) a random worker is SIGKILLed; the second part is written while
    it is down (for a random time in `down` seconds; beyond the 6 s session timeout the other
    worker takes its partitions over first), the third while it restarts (a rebalance). Returns
    what happened, for the log.
    """
    victim = rng.choice([w for w in kairos.workers if w.alive])
    first = rng.randrange(len(chunk) + 1)
    second = rng.randrange(first, len(chunk) + 1)
    pause = rng.uniform(0.0, 0.6)
    kairos.produce_to("events", chunk[:first])
    time.sleep(pause)
    victim.kill()
    kairos.produce_to("events", chunk[first:second])
    dead = rng.uniform(*down)
    time.sleep(dead)
    victim.restart()
    kairos.produce_to("events", chunk[second:])
    victim.wait_ready()
    kairos.wait_settled()
    index = kairos.workers.index(victim)
    return (
        f"worker {index} SIGKILLed after {first}/{len(chunk)} messages (+{pause:.2f}s), "
        f"down {dead:.1f}s, restarted after {second}"
    )


@dataclass
class RunReport:
    cycles: int
    events: int
    invalid: int
    state: StateReport
    triggers: TriggerReport
    dead_letters: int
    dead_lettered: int  # distinct inputs
    replay_rejected: int
    seconds: float
    barriers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state.ok and self.triggers.ok and self.dead_lettered == self.replay_rejected

    def summary(self) -> str:
        return "\n".join(
            [
                f"{self.cycles} cycles, {self.events} events ({self.invalid} invalid) in "
                f"{self.seconds:.1f}s",
                self.state.summary(),
                self.triggers.summary(),
                f"dead letters: {self.dead_letters} records, {self.dead_lettered} distinct "
                f"inputs; the replay rejects {self.replay_rejected}",
                *self.barriers,
            ]
        )


def final_report(
    kairos: Kairos,
    workload: Workload,
    book: RuleBook,
    cycles: int,
    started: float,
    barriers: list[str],
    timeout: float = 60,
) -> RunReport:
    """Wait for the live deployment to equal the replay of the whole workload, and compare."""
    result = expected(workload, book)
    state = wait_profiles(kairos, result, book.score_half_life_ms, timeout)
    triggers = wait_triggers(kairos, result)
    records, distinct = dead_letters(kairos)
    return RunReport(
        cycles=cycles,
        events=workload.events,
        invalid=workload.invalid,
        state=state,
        triggers=triggers,
        dead_letters=records,
        dead_lettered=distinct,
        replay_rejected=len(result.rejected),
        seconds=time.monotonic() - started,
        barriers=barriers,
    )


Disruption = Callable[[int, list[tuple[int, bytes]]], str]


def run_chunks(
    kairos: Kairos,
    workload: Workload,
    book: RuleBook,
    disrupt: Disruption,
    barrier_timeout: float = 30,
    stop_on_failure: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[list[str], StateReport | None]:
    """Write each chunk with `disrupt` (which writes it, disrupting the workers as it goes), then
    wait until every profile equals the replay of everything written so far.

    Returns one line per chunk, and the first failed comparison (None: all matched).
    """
    lines: list[str] = []
    failed: StateReport | None = None
    for index, chunk in enumerate(workload.chunks):
        started = time.monotonic()
        what = disrupt(index, chunk)
        so_far = expected(workload, book, index + 1)
        report = wait_profiles(kairos, so_far, book.score_half_life_ms, barrier_timeout)
        lines.append(
            f"chunk {index + 1}/{len(workload.chunks)} ({len(chunk)} messages): {what}; "
            f"{report.matching}/{report.users} profiles equal the replay "
            f"({time.monotonic() - started:.1f}s)"
        )
        log(lines[-1])
        if not report.ok:
            log(report.summary())
            failed = failed or report
            if stop_on_failure:
                break
    return lines, failed
