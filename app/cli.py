"""The `kairos` command: `kairos dev`, `kairos worker`, `kairos broker`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.broker import EmbeddedBroker
    from app.settings import Settings

DEV_WRITE_KEY = "kairos-dev-write-key"
DEV_ADMIN_TOKEN = "kairos-dev-admin-token"
#: How long `kairos dev` gives its worker and trigger printer to stop before killing them.
STOP_SECONDS = 20.0


def _worker(args: argparse.Namespace) -> int:
    """Run one Faust worker against KAIROS_BROKER (topics are created first unless told not to)."""
    from app.broker import ensure_topics
    from app.settings import get_settings
    from app.topics import all_topics

    settings = get_settings()
    _check_port_free(settings.web_host, settings.web_port)
    if args.create_topics:
        ensure_topics(settings.broker_url, all_topics(settings))
    from faust.worker import Worker

    from app.worker import app

    level = {"warn": "warning"}.get(settings.log_level, settings.log_level)
    worker = Worker(app, loglevel=level, quiet=True)
    # Faust's start-up spinner hangs a DEBUG handler on the root logger and lowers it to DEBUG
    # whenever the level is WARN or above: every debug line of Faust and aiokafka was then built
    # and dropped, ~4 % of a busy worker's time.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


def _broker(args: argparse.Namespace) -> int:
    """Run the embedded broker in the foreground, with Kairos's topics created."""
    from app.broker import EmbeddedBroker, ensure_topics
    from app.settings import get_settings
    from app.topics import all_topics

    # As `kairos dev`: Ctrl-C works even when a shell started it in the background.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    with EmbeddedBroker(port=args.port) as broker:
        ensure_topics(broker.url, all_topics(get_settings()))
        print(f"embedded broker on {broker.bootstrap} (KAIROS_BROKER={broker.url})", flush=True)
        print("memory only: stopping it loses every topic. Ctrl-C to stop.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while broker.process is not None and broker.process.poll() is None:
                time.sleep(0.5)
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Stop with a clear message when the HTTP port is taken: otherwise the worker dies on it
    with a traceback, and `kairos dev` would even take the other process's /health for its own."""
    from app.settings import SettingsError

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As aiohttp binds: a port left in TIME_WAIT by a stopped worker is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SettingsError(
                f"KAIROS_WEB_PORT: port {port} on {host} is taken ({exc.strerror}); "
                "stop what holds it (another kairos dev or worker?) or choose another port"
            ) from None


def _wait_ready(url: str, worker: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                health = json.load(answer)
            if health.get("assigned_partitions") and not health.get("rebalancing"):
                return True
        time.sleep(0.2)
    return False


def _dev(args: argparse.Namespace) -> int:
    """Broker (unless KAIROS_BROKER is set), topics, a worker and the HTTP API; Ctrl-C stops all."""
    from app.broker import EmbeddedBroker, ensure_topics
    from app.settings import read_settings
    from app.topics import all_topics

    started = time.monotonic()
    env = dict(os.environ)
    env.setdefault("KAIROS_WRITE_KEYS", DEV_WRITE_KEY)
    env.setdefault("KAIROS_ADMIN_TOKEN", DEV_ADMIN_TOKEN)
    env.setdefault("KAIROS_DATA_DIR", ".kairos/dev")
    env.setdefault("KAIROS_LOG_LEVEL", "warn")  # Faust's INFO lines would bury the useful output
    # Invalid settings, or a port already taken, stop it before anything starts.
    checked = read_settings(_settings_from(env))
    _check_port_free(checked.web_host, checked.web_port)
    broker: EmbeddedBroker | None = None
    if not env.get("KAIROS_BROKER"):
        Path(".kairos").mkdir(exist_ok=True)
        broker = EmbeddedBroker(log_file=Path(".kairos/broker.log")).start()
        env["KAIROS_BROKER"] = broker.url
        env["KAIROS_BROKER_KIND"] = "tansu"
        # The embedded broker starts empty, so state kept from an earlier run would not match it.
        shutil.rmtree(env["KAIROS_DATA_DIR"], ignore_errors=True)
        print(f"embedded broker on {broker.bootstrap} (KAIROS_BROKER={broker.url})", flush=True)
    settings = read_settings(_settings_from(env))
    ensure_topics(settings.broker_url, all_topics(settings))
    worker = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        env=env,
        start_new_session=True,  # Ctrl-C reaches `kairos dev`, which stops the worker in order
    )
    # Every published trigger is printed as it happens, by `kairos triggers` on the same broker.
    printer = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "triggers"], env=env, start_new_session=True
    )
    stop = _stopper([printer, worker], broker)
    # SIGTERM unwinds like Ctrl-C, and `finally` stops everything: stopping inside the handler
    # waited on the worker inside the `worker.wait()` it interrupted, which holds the wait's lock,
    # so the second wait never returned and the worker and the broker were left running. Ctrl-C
    # gets the same handler, set here: a shell that starts a command in the background (`make
    # run &`, a CI runner) starts it with SIGINT ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        if _wait_ready(settings.web_url, worker, timeout=60):
            _print_next_steps(settings, time.monotonic() - started)
        else:
            print("the worker did not become ready; see its log above", file=sys.stderr)
        worker.wait()
    except KeyboardInterrupt:
        pass
    finally:
        # Already stopping: a second Ctrl-C must not cut the stop short and leave the worker.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop()
    return worker.returncode or 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _settings_from(env: dict[str, str]) -> dict[str, str]:
    from app.settings import Settings

    return {
        name: env[f"KAIROS_{name.upper()}"]
        for name in Settings.model_fields
        if f"KAIROS_{name.upper()}" in env
    }


def _stopper(
    children: list[subprocess.Popen[bytes]], broker: EmbeddedBroker | None
) -> Callable[[], None]:
    def stop() -> None:
        running = [child for child in children if child.poll() is None]
        if running:
            print("\nstopping the worker...", flush=True)
        # All at once, under one deadline: one after the other, two slow stops added up.
        for child in running:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in running:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{_name(child)} did not stop within {STOP_SECONDS:g} s: killed", flush=True)
                child.kill()
                child.wait()
        if broker is not None:
            broker.stop()
            print("embedded broker stopped", flush=True)

    return stop


def _name(child: subprocess.Popen[bytes]) -> str:
    args = child.args
    return f"kairos {args[-1]}" if isinstance(args, list) else str(args)


def _print_next_steps(settings: Settings, seconds: float) -> None:
    url = settings.web_url
    key = settings.write_keys[0] if settings.write_keys else "<write key>"
    token = settings.admin_token or "<admin token>"
    print(
        f"""
Kairos is ready ({seconds:.1f}s): HTTP API on {url}
  write key   {key}
  admin token {token}

Send an event (Segment's HTTP API):
  curl -u {key}: {url}/v1/track \\
    -d '{{"userId":"ada","event":"Product Viewed","properties":{{"product_id":"A"}}}}'
Read the profile:
  curl -H 'Authorization: Bearer {token}' {url}/users/ada
Metrics: {url}/metrics    Health: {url}/health
Ctrl-C stops the worker and the broker.
""",
        flush=True,
    )


def _rules_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of rule files (committed as docs/rules.schema.json)."""
    from schemas.rules import rule_file_schema

    print(json.dumps(rule_file_schema(), indent=2))
    return 0


def _rules_check(args: argparse.Namespace) -> int:
    """Validate and lint rules; exit 1 on errors (and on warnings with --strict)."""
    from app.rule_files import load_rulebook
    from app.settings import get_settings
    from engine.lint import lint, sample_stats
    from engine.rules import RuleSetError

    path = args.path or get_settings().rules
    try:
        book = load_rulebook(path)
    except RuleSetError as exc:
        print(f"{exc}", file=sys.stderr)
        print("rules check: invalid", file=sys.stderr)
        return 1
    stats = sample_stats(_jsonl(args.sample)) if args.sample else None
    findings = lint(book, stats)
    sources = {item.rule.id: item.source for item in book.rules}
    for finding in findings:
        print(f"{sources.get(finding.rule_id or '', '') or path}: {finding}")
    errors = [f for f in findings if f.severity == "error"]
    warnings = [f for f in findings if f.severity == "warning"]
    print(
        f"rules check: {_many(len(book.rules), 'rule')}, {_many(len(errors), 'error')}, "
        f"{_many(len(warnings), 'warning')}",
        file=sys.stderr,
    )
    return 1 if errors or (args.strict and warnings) else 0


def _jsonl(path: Path) -> list[bytes]:
    """Every line of the file, blank ones too: replay numbers lines as the file does, so that
    a rejected line is reported where an editor shows it (the readers skip blank lines)."""
    with open(path, "rb") as lines:
        return list(lines)


def _replay(args: argparse.Namespace) -> int:
    """Run the rules over a JSONL file of Segment events offline, on event time."""
    from app.replay import diff, replay
    from app.rule_files import load_rulebook
    from app.settings import get_settings
    from engine.rules import RuleSetError
    from schemas.triggers import trigger_line

    rules = args.rules or get_settings().rules
    lines = _jsonl(args.events)
    try:
        book = load_rulebook(rules)
        other = load_rulebook(args.diff) if args.diff else None
    except RuleSetError as exc:
        print(exc, file=sys.stderr)
        return 1
    progress = _progress(len(lines)) if sys.stderr.isatty() and len(lines) >= 1000 else None
    try:
        until = _until(args.until)
    except ValueError as exc:
        print(f"--until: {exc}", file=sys.stderr)
        return 2
    result = replay(lines, book, progress, until)
    if progress is not None:
        progress(len(lines))
        print(file=sys.stderr)
    if other is not None:
        added, removed = diff(result, replay(lines, other, until=until))
        for trigger in added:
            print(f"+ {trigger_line(trigger)}")
        for trigger in removed:
            print(f"- {trigger_line(trigger)}")
        print(f"diff: {len(added)} added, {len(removed)} removed by {args.diff}", file=sys.stderr)
        return 0
    for trigger in result.triggers:
        print(orjson_line(trigger) if args.json else trigger_line(trigger))
        if args.explain and not args.json:
            for line in trigger["data"]["explanation"]["conditions"]:
                print(f"    {line}")
    for held in result.suppressed:
        if args.json:  # stdout holds CloudEvents only, as `kairos triggers --json` prints them
            print(json.dumps({"suppressed": held.as_dict()}), file=sys.stderr)
        else:
            print(
                f"suppressed ({held.reason})  {held.type}  user={held.user_id}  rule={held.rule_id}"
            )
    for number, reason in result.rejected:
        print(f"line {number}: rejected: {reason}", file=sys.stderr)
    print(
        f"replay: {_many(result.events, 'event')}, {_many(len(result.triggers), 'trigger')}, "
        f"{len(result.suppressed)} suppressed, {len(result.rejected)} rejected, "
        f"{_many(result.timers_fired, 'timer')} fired, "
        f"{_many(result.timers_pending, 'timer')} pending",
        file=sys.stderr,
    )
    return 0


def _many(count: int, noun: str) -> str:
    """`1 trigger`, `2 triggers`: a count in a summary line."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _until(text: str | None) -> Callable[[int], int] | None:
    """`--until`: `+30m` (after the last event), or an ISO 8601 time."""
    from engine.clock import parse_duration_ms, parse_iso_ms

    if text is None:
        return None
    if text.startswith("+"):
        ahead = parse_duration_ms(text[1:])
        return lambda last: last + ahead
    try:
        moment = parse_iso_ms(text)
    except ValueError:
        raise ValueError(_until_hint(text)) from None
    return lambda last: max(last, moment)


def _until_hint(text: str) -> str:
    """What `--until` takes, for a value that is neither: a bare duration is the usual slip."""
    from engine.clock import parse_duration_ms

    try:
        parse_duration_ms(text)
    except ValueError:
        example = "+1d"
    else:
        example = f"+{text.strip()}"
    return (
        f"{text!r} is neither +DURATION, after the last event (e.g. {example}), "
        "nor an ISO 8601 time (e.g. 2026-01-31T09:00:00Z)"
    )


def orjson_line(value: object) -> str:
    import orjson

    return orjson.dumps(value).decode()


def _progress(total: int) -> Callable[[int], None]:
    def show(done: int) -> None:
        width = 30
        filled = int(width * done / total)
        bar = "#" * filled + "." * (width - filled)
        print(f"\r[{bar}] {done}/{total} lines", end="", file=sys.stderr, flush=True)

    return show


def _triggers(args: argparse.Namespace) -> int:
    """Print triggers as they are published on kairos.triggers (Ctrl-C stops)."""
    import asyncio

    from app.settings import get_settings
    from app.trigger_tail import BrokerUnreachable, tail

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(tail(get_settings(), from_beginning=args.from_beginning, as_json=args.json))
    except BrokerUnreachable as exc:
        print(f"kairos: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kairos", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="embedded broker + one worker + HTTP API (make run)")
    dev.set_defaults(run=_dev)
    worker = commands.add_parser("worker", help="a Faust worker against KAIROS_BROKER")
    worker.add_argument(
        "--no-create-topics",
        dest="create_topics",
        action="store_false",
        help="do not create missing topics before starting",
    )
    worker.set_defaults(run=_worker)
    broker = commands.add_parser("broker", help="only the embedded broker, with the topics")
    broker.add_argument("--port", type=int, default=9092)
    broker.set_defaults(run=_broker)

    rules = commands.add_parser("rules", help="rule files: JSON Schema, validation and lint")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True)
    schema = rules_commands.add_parser("schema", help="print the JSON Schema of rule files")
    schema.set_defaults(run=_rules_schema)
    check = rules_commands.add_parser("check", help="validate and lint rules (exit 1 on errors)")
    check.add_argument("path", nargs="?", type=Path, help="rule file or folder (KAIROS_RULES)")
    check.add_argument("--sample", type=Path, help="JSONL of Segment events to lint against")
    check.add_argument("--strict", action="store_true", help="warnings fail the check too")
    check.set_defaults(run=_rules_check)

    replay = commands.add_parser("replay", help="run the rules over a JSONL file of events")
    replay.add_argument("events", type=Path, help="JSONL: one Segment event (or batch) per line")
    replay.add_argument("--rules", type=Path, help="rule file or folder (KAIROS_RULES)")
    replay.add_argument("--explain", action="store_true", help="print each condition's value")
    replay.add_argument("--json", action="store_true", help="print triggers as CloudEvents JSON")
    replay.add_argument(
        "--until",
        metavar="+DURATION|TIME",
        help="after the last event, move the clock on (e.g. +1d, or an ISO time) so pending "
        "timers fire",
    )
    replay.add_argument(
        "--diff", type=Path, metavar="OTHER_RULES", help="show what OTHER_RULES adds or removes"
    )
    replay.set_defaults(run=_replay)

    triggers = commands.add_parser("triggers", help="print triggers as they are published")
    triggers.add_argument("--from-beginning", action="store_true", help="from the first trigger")
    triggers.add_argument("--json", action="store_true", help="print the CloudEvents JSON")
    triggers.set_defaults(run=_triggers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from app.settings import SettingsError
    from engine.rules import RuleSetError

    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (SettingsError, RuleSetError) as exc:
        # What the user must fix, without a traceback: each line names a variable, or a rule
        # file, rule and field.
        print(f"kairos: cannot start:\n{exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:  # a file named on the command line
        print(f"kairos: no such file: {exc.filename}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`kairos triggers | head`): stop quietly, as Unix tools do. The
        # flush at exit would raise again: stdout goes to /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
