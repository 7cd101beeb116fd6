"""How fast the pure decision core (`engine.rules.process`) replays events, and what it decides.

    python -m bench.decide [--repeat 3]         # events/s of the four ingest-bench workloads
    python -m bench.decide --dump DIR [--all]   # write every output of each workload to DIR
    python -m bench.decide --check DIR [--all]  # compare today's outputs with a DIR dumped before

No broker: the replay's intake, identity resolution and rules, in one process. `--all` adds the
equivalence workloads (other seeds of the bench's events, and tests/unit/workloads.py: every
Segment call type, CRM trait records and timers of every kind, over a rule set that uses every
condition kind): what an optimization of the engine must leave byte-identical, i.e. triggers,
suppressions, final states and every outcome's timer changes.

Run the dump and the check with the same PYTHONHASHSEED: merging two profiles iterates a set of
counter names, so the order of the keys of a merged profile's counts depends on it.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

import app.replay as replay_module
from app.replay import ReplayResult, replay
from app.rule_files import load_rulebook
from bench.ingest import rules_folder
from bench.workload import generate
from engine.clock import DAY_MS
from engine.rules import Outcome, RuleBook, fire_due, process
from tests.unit.workloads import coverage_folder, mixed_items, replay_items


class OutcomeLog:
    """Every outcome of `process` and `fire_due` in a replay, as JSON lines, to compare."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def note(self, outcome: Outcome) -> Outcome:
        self.lines.append(
            orjson.dumps(
                [
                    len(outcome.triggers),
                    len(outcome.suppressed),
                    outcome.render_fallbacks,
                    outcome.timers.set,
                    outcome.timers.unset,
                    outcome.fired,
                    outcome.cancelled,
                    outcome.applied.duplicate,
                    outcome.applied.forward,
                ]
            )
        )
        return outcome

    def wrap(self, function: Callable[..., Outcome]) -> Callable[..., Outcome]:
        return lambda *args: self.note(function(*args))


def outputs(result: ReplayResult, log: OutcomeLog) -> dict[str, bytes]:
    summary = [result.events, result.rejected, result.timers_fired, result.timers_pending]
    return {
        "triggers.json": orjson.dumps(result.triggers),
        "suppressed.json": orjson.dumps([s.as_dict() for s in result.suppressed]),
        "states.json": orjson.dumps(result.states),
        "outcomes.jsonl": b"\n".join(log.lines),
        "summary.json": orjson.dumps(summary),
    }


#: The bench's events end at this moment, not now: a dump and a later check replay the same events.
BENCH_END_MS = 1_795_000_000_000


def bench_events(count: int, users: int, seed: int = 7) -> list[Any]:
    """The bench's events (bench/workload.py) as the dicts the other workloads are."""
    return [orjson.loads(m.value) for m in generate(count, users, BENCH_END_MS, seed)]


def workloads(workdir: Path, everything: bool) -> Iterator[tuple[str, RuleBook, list[Any], int]]:
    """(name, rule book, events, how far to move the clock after the last one)."""
    books = {
        gen: load_rulebook(rules_folder(workdir / str(gen), gen), recent_items=20)
        for gen in (0, 50)
    }
    for gen, book in books.items():
        for users in (1000, 100_000):
            yield f"bench-{gen}rules-{users}users", book, bench_events(50_000, users), 0
    if not everything:
        return
    for gen, book in books.items():
        for seed in (1, 2, 3):
            yield f"seed{seed}-{gen}rules", book, bench_events(10_000, 300, seed), 0
    coverage = load_rulebook(coverage_folder(workdir), recent_items=5)
    for name, book in (("bench50", books[50]), ("coverage", coverage)):
        for seed, users in ((11, 40), (12, 400), (13, 4000)):
            items = list(mixed_items(6000, users, seed))
            yield f"mixed{seed}-{users}users-{name}", book, items, 5 * DAY_MS


def timed(name: str, book: RuleBook, items: list[Any], repeat: int) -> None:
    """Events/s of `app.replay.replay` over the workload, the best of `repeat` runs.

    Per second of the process's CPU time, and of wall time: on a machine shared with other work
    the CPU time is the steadier measure.
    """
    lines = [orjson.dumps(item) for item in items]
    cpu = wall = float("inf")
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = replay(lines, book)
        cpu = min(cpu, time.process_time() - started_cpu)
        wall = min(wall, time.perf_counter() - started)
    print(
        f"{name}: {len(lines) / cpu:,.0f} ev/s of CPU time ({len(lines) / wall:,.0f} of wall "
        f"time), {len(result.triggers)} triggers",
        flush=True,
    )


def checked(name: str, book: RuleBook, items: list[Any], until: int) -> dict[str, bytes]:
    """Every output of the workload, and every outcome of `process` and `fire_due` on the way."""
    log = OutcomeLog()
    # The replay calls them by their names in its module: wrapped there, every outcome shows.
    replay_module.process = log.wrap(process)
    replay_module.fire_due = log.wrap(fire_due)
    try:
        result = replay_items(items, book, until or None)
    finally:
        replay_module.process, replay_module.fire_due = process, fire_due
    files = outputs(result, log)
    digest = hashlib.sha256(b"".join(files.values())).hexdigest()[:16]
    print(
        f"{name}: {len(result.triggers)} triggers, {len(result.suppressed)} suppressed, "
        f"{result.timers_fired} timers fired, outputs {digest}",
        flush=True,
    )
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=Path, help="write every workload's outputs here")
    parser.add_argument("--check", type=Path, help="compare every workload's outputs with these")
    parser.add_argument("--all", action="store_true", help="add the equivalence workloads")
    parser.add_argument("--only", help="run only workloads whose name contains this")
    parser.add_argument("--repeat", type=int, default=3, help="timing: the best of this many")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kairos-decide-"))
    differ = []
    for name, book, items, until in workloads(workdir, args.all):
        if args.only and args.only not in name:
            continue
        if not (args.dump or args.check):
            timed(name, book, items, args.repeat)
            continue
        files = checked(name, book, items, until)
        if args.dump:
            (args.dump / name).mkdir(parents=True, exist_ok=True)
            for file, data in files.items():
                (args.dump / name / file).write_bytes(data)
        if args.check:
            for file, data in files.items():
                if (args.check / name / file).read_bytes() != data:
                    differ.append(f"{name}/{file}")
    if args.check:
        print("identical" if not differ else "DIFFERENT: " + ", ".join(differ))
        sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
