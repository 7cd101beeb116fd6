"""The `kairos` command: `kairos dev`, `kairos worker`, `kairos broker`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
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


def _worker(args: argparse.Namespace) -> int:
    """Run one Faust worker against KAIROS_BROKER (topics are created first unless told not to)."""
    from app.broker import ensure_topics
    from app.settings import get_settings
    from app.topics import all_topics

    settings = get_settings()
    if args.create_topics:
        ensure_topics(settings.broker_url, all_topics(settings))
    from faust.worker import Worker

    from app.worker import app

    level = {"warn": "warning"}.get(settings.log_level, settings.log_level)
    worker = Worker(app, loglevel=level, quiet=True)
    worker.execute_from_commandline()
    return 0


def _broker(args: argparse.Namespace) -> int:
    """Run the embedded broker in the foreground, with Kairos's topics created."""
    from app.broker import EmbeddedBroker, ensure_topics
    from app.settings import get_settings
    from app.topics import all_topics

    with EmbeddedBroker(port=args.port) as broker:
        ensure_topics(broker.url, all_topics(get_settings()))
        print(f"embedded broker on {broker.bootstrap} (KAIROS_BROKER={broker.url})", flush=True)
        print("memory only: stopping it loses every topic. Ctrl-C to stop.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while broker.process is not None and broker.process.poll() is None:
                time.sleep(0.5)
    return 0


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
    from app.settings import Settings
    from app.topics import all_topics

    started = time.monotonic()
    env = dict(os.environ)
    env.setdefault("KAIROS_WRITE_KEYS", DEV_WRITE_KEY)
    env.setdefault("KAIROS_ADMIN_TOKEN", DEV_ADMIN_TOKEN)
    env.setdefault("KAIROS_DATA_DIR", ".kairos/dev")
    env.setdefault("KAIROS_LOG_LEVEL", "warn")  # Faust's INFO lines would bury the useful output
    broker: EmbeddedBroker | None = None
    if not env.get("KAIROS_BROKER"):
        Path(".kairos").mkdir(exist_ok=True)
        broker = EmbeddedBroker(log_file=Path(".kairos/broker.log")).start()
        env["KAIROS_BROKER"] = broker.url
        env["KAIROS_BROKER_KIND"] = "tansu"
        # The embedded broker starts empty, so state kept from an earlier run would not match it.
        shutil.rmtree(env["KAIROS_DATA_DIR"], ignore_errors=True)
        print(f"embedded broker on {broker.bootstrap}", flush=True)
    settings = Settings.model_validate(_settings_from(env))
    ensure_topics(settings.broker_url, all_topics(settings))
    worker = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        env=env,
        start_new_session=True,  # Ctrl-C reaches `kairos dev`, which stops the worker in order
    )
    stop = _stopper(worker, broker)
    signal.signal(signal.SIGTERM, lambda *_: stop())
    try:
        if _wait_ready(settings.web_url, worker, timeout=60):
            _print_next_steps(settings, time.monotonic() - started)
        else:
            print("the worker did not become ready; see its log above", file=sys.stderr)
        worker.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop()
    return worker.returncode or 0


def _settings_from(env: dict[str, str]) -> dict[str, str]:
    from app.settings import Settings

    return {
        name: env[f"KAIROS_{name.upper()}"]
        for name in Settings.model_fields
        if f"KAIROS_{name.upper()}" in env
    }


def _stopper(worker: subprocess.Popen[bytes], broker: EmbeddedBroker | None) -> Callable[[], None]:
    def stop() -> None:
        if worker.poll() is None:
            print("\nstopping the worker...", flush=True)
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        if broker is not None:
            broker.stop()
            print("embedded broker stopped", flush=True)

    return stop


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
