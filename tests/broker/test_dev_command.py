"""`kairos dev` (what `make run` runs): broker, worker, API; Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from app.broker import EmbeddedBroker, free_port
from app.cli import DEV_ADMIN_TOKEN, DEV_WRITE_KEY


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


#: What each `kairos dev` started by a test printed, line by line, read as it comes: a pipe
#: nobody reads fills up and blocks whoever writes to it (the worker and trigger printer too).
PRINTED: dict[int, tuple[list[str], threading.Thread]] = {}


def start_dev(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], str, float]:
    port = free_port()
    environment = {**os.environ, "KAIROS_WEB_PORT": str(port), **env}
    for name in ("KAIROS_WRITE_KEYS", "KAIROS_ADMIN_TOKEN"):
        environment.pop(name, None)
    started = time.monotonic()
    dev = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "dev"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal gives a command
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert dev.stdout is not None
        for line in dev.stdout:
            lines.append(line)
            if "Ctrl-C stops the worker and the broker" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    PRINTED[dev.pid] = (lines, reader)
    if ready.wait(90):
        return dev, "".join(lines), time.monotonic() - started
    kill_everything(dev, tmp_path)
    raise AssertionError("kairos dev never became ready:\n" + "".join(lines[-40:]))


def kill_everything(dev: subprocess.Popen[str], workdir: Path) -> None:
    """SIGKILL `kairos dev` and whatever it started (they run in its working directory)."""
    dev.kill()
    dev.wait()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")).is_relative_to(workdir):
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                continue


def stop_with(dev: subprocess.Popen[str], workdir: Path, signum: int = signal.SIGINT) -> str:
    """Ctrl-C by default: SIGINT to the whole process group, as a terminal sends it (whatever
    `kairos dev` started in that group gets it too); another signal to `kairos dev` alone. It must
    have exited within 40 s. What it printed after it was ready."""
    printed, reader = PRINTED[dev.pid]
    before = len(printed)
    if signum == signal.SIGINT:
        os.killpg(dev.pid, signal.SIGINT)
    else:
        dev.send_signal(signum)
    try:
        dev.wait(timeout=40)
    except subprocess.TimeoutExpired:
        kill_everything(dev, workdir)
        rest = "".join(printed[before:])[-4000:]
        raise AssertionError(f"kairos dev still running 40 s after {signum!r}:\n{rest}") from None
    reader.join(timeout=5)  # its children are gone with it: the output ends
    return "".join(printed[before:])


def test_dev_starts_broker_and_worker_prints_credentials_and_ctrl_c_stops_everything(
    tmp_path: Path,
) -> None:
    dev, output, seconds = start_dev(tmp_path)
    try:
        broker_address = re.search(r"embedded broker on (127\.0\.0\.1:\d+)", output)
        assert broker_address, output
        url = re.search(r"HTTP API on (http://\S+)", output)
        assert url, output
        assert DEV_WRITE_KEY in output and DEV_ADMIN_TOKEN in output
        print(f"kairos dev ready in {seconds:.1f}s")

        event = {"userId": "dev-user", "event": "Tried Kairos"}
        answer = httpx.post(f"{url[1]}/v1/track", json=event, auth=(DEV_WRITE_KEY, ""))
        assert answer.status_code == 200
        headers = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
        deadline = time.monotonic() + 15
        while httpx.get(f"{url[1]}/users/dev-user", headers=headers).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        rest = stop_with(dev, tmp_path)
    # The broker outlives the worker's stop: no connection errors, no worker killed at 20 s.
    assert "[ERROR]" not in rest and "did not stop" not in rest, rest

    host, port = broker_address[1].split(":")
    with socket.socket() as probe:
        assert probe.connect_ex((host, int(port))) != 0, "the broker still listens"
    assert processes_mentioning(f"tcp://{broker_address[1]}") == []
    assert dev.returncode == 0


def test_dev_with_kairos_broker_set_spawns_no_broker_and_sigterm_stops_it(
    tmp_path: Path,
) -> None:
    with EmbeddedBroker() as external:
        dev, output, _ = start_dev(
            tmp_path,
            KAIROS_BROKER=external.url,
            KAIROS_BROKER_KIND="tansu",
            KAIROS_DATA_DIR=str(tmp_path / "data"),
        )
        try:
            assert "embedded broker on" not in output
        finally:
            rest = stop_with(dev, tmp_path, signal.SIGTERM)
        assert "stopping the worker" in rest
        assert dev.returncode == 0
        assert external.process is not None and external.process.poll() is None
