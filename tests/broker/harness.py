"""Running Kairos for real in tests: workers as `kairos worker` processes on the session broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.broker import EmbeddedBroker, ensure_topics, free_port
from app.settings import Settings
from app.topics import all_topics, topic_name

ROOT = Path(__file__).resolve().parents[2]
#: The rules of the test deployments: the shipped examples and a few test-only rules.
RULE_SOURCES = (ROOT / "examples" / "rules", Path(__file__).resolve().parent / "rules")
WRITE_KEY = "test-write-key"
ADMIN_TOKEN = "test-admin-token"


@dataclass
class Worker:
    """One `kairos worker` process."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['KAIROS_WEB_PORT']}"

    def start(self) -> Worker:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the process writes to it until it stops
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--no-create-topics"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return self

    def health(self) -> dict[str, Any] | None:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            answer = httpx.get(f"{self.url}/health", timeout=1)
            if answer.status_code == 200:
                return dict(answer.json())
        return None

    def ready(self) -> bool:
        health = self.health()
        return bool(health and health["assigned_partitions"] and not health["rebalancing"])

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL the worker, as a crash would: its data directory (RocksDB state) is kept."""
        self.stop(signal.SIGKILL)

    def restart(self) -> Worker:
        """Start the worker again with the same settings and data directory."""
        assert self.process is None or self.process.poll() is not None, "still running"
        return self.start()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Kairos:
    """A Kairos deployment on the test broker: its settings, workers and clients."""

    broker: EmbeddedBroker
    prefix: str
    workdir: Path
    workers: list[Worker] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings(
            broker=self.broker.url, app_id=self.prefix, topic_prefix=self.prefix, partitions=8
        )

    def topic(self, short: str) -> str:
        return topic_name(self.settings, short)

    def create_topics(self) -> None:
        ensure_topics(self.broker.url, all_topics(self.settings))

    @property
    def rules_dir(self) -> Path:
        """The deployment's rule folder: copies of every rule file of RULE_SOURCES."""
        folder = self.workdir / "rules"
        if not folder.exists():
            folder.mkdir(parents=True)
            for source in RULE_SOURCES:
                for file in source.glob("*.yaml"):
                    shutil.copy(file, folder / file.name)
        return folder

    def add_worker(self, **extra_env: str) -> Worker:
        index = len(self.workers)
        env = {
            **os.environ,
            "KAIROS_BROKER": self.broker.url,
            "KAIROS_BROKER_KIND": "tansu",
            "KAIROS_APP_ID": self.prefix,
            "KAIROS_TOPIC_PREFIX": self.prefix,
            "KAIROS_PARTITIONS": "8",
            "KAIROS_WEB_PORT": str(free_port()),
            "KAIROS_DATA_DIR": str(self.workdir / f"worker-{index}"),
            "KAIROS_WRITE_KEYS": WRITE_KEY,
            "KAIROS_ADMIN_TOKEN": ADMIN_TOKEN,
            "KAIROS_LOG_LEVEL": "info",
            "KAIROS_RULES": str(self.rules_dir),
            **extra_env,
        }
        worker = Worker(env, self.workdir / f"worker-{index}.log").start()
        self.workers.append(worker)
        return worker

    @property
    def url(self) -> str:
        return self.workers[0].url

    def wait_settled(self, timeout: float = 60) -> None:
        """Every running worker owns partitions and none is rebalancing."""
        deadline = time.monotonic() + timeout
        running = [w for w in self.workers if w.alive]
        while not all(w.ready() for w in running):
            assert time.monotonic() < deadline, "the workers never settled:\n" + "\n".join(
                w.log_tail(20) for w in running
            )
            time.sleep(0.2)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    # --- clients -------------------------------------------------------------------------

    def collect(
        self,
        path: str,
        body: Any,
        *,
        key: str | None = WRITE_KEY,
        url: str | None = None,
    ) -> httpx.Response:
        """POST a Segment payload to the collector (of the first worker unless `url` says)."""
        auth = (key, "") if key is not None else None
        return httpx.post(f"{url or self.url}{path}", json=body, auth=auth, timeout=10)

    def profile(self, user_id: str, url: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return httpx.get(f"{url or self.url}/users/{user_id}", headers=headers, timeout=10)

    def wait_profile(
        self,
        user_id: str,
        until: Callable[[dict[str, Any]], bool] = lambda _: True,
        timeout: float = 15,
        url: str | None = None,
    ) -> dict[str, Any]:
        """The user's profile once `until` holds for it (fails after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            answer = self.profile(user_id, url)
            if answer.status_code == 200:
                last = answer.json()
                if until(last):
                    return dict(last)
            time.sleep(0.05)
        raise AssertionError(f"profile {user_id!r} never matched; last seen: {last}")

    def produce(self, short_topic: str, values: list[bytes], key: bytes | None = None) -> None:
        async def send() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.broker.bootstrap, linger_ms=5)
            await producer.start()
            try:
                # In order, pipelined: all sent before any is awaited, like a real producer.
                sent = [await producer.send(self.topic(short_topic), v, key=key) for v in values]
                for delivery in sent:
                    await delivery
            finally:
                await producer.stop()

        asyncio.run(send())

    def produce_to(self, short_topic: str, records: list[tuple[int, bytes]]) -> None:
        """Write (partition, value) records in order, each to its partition, without keys."""

        async def send() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.broker.bootstrap, linger_ms=5)
            await producer.start()
            try:
                topic = self.topic(short_topic)
                sent = [await producer.send(topic, v, partition=p) for p, v in records]
                for delivery in sent:
                    await delivery
            finally:
                await producer.stop()

        asyncio.run(send())

    def wait_triggers(
        self, users: set[str], until: Callable[[list[dict[str, Any]]], bool], timeout: float = 20
    ) -> list[dict[str, Any]]:
        """The triggers published for `users` once `until` holds for them."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.read_topic("triggers", idle=0.3)
            mine = [
                {"key": r.key.decode(), **orjson.loads(r.value)}
                for r in records
                if r.key is not None and r.key.decode() in users
            ]
            if until(mine) or time.monotonic() > deadline:
                return mine
            time.sleep(0.2)

    def metric(self, name: str, **labels: str) -> float:
        """A metric's value on the first worker (0 when it has no such series yet)."""
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        series = f"{name}{{{wanted}}}" if labels else name
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            head, _, value = line.rpartition(" ")
            if head == series or (labels and _same_series(head, name, labels)):
                return float(value)
        return 0.0

    def read_topic(self, short_topic: str, idle: float = 1.0) -> list[Any]:
        """Every record of a topic so far, in partition and offset order."""
        return read_all(self.broker.bootstrap, self.topic(short_topic), idle)


def read_all(bootstrap: str, topic: str, idle: float = 1.0) -> list[Any]:
    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
            records: list[Any] = []
            while True:
                batch = await consumer.getmany(timeout_ms=int(idle * 1000))
                if not batch:
                    return records
                for messages in batch.values():
                    records.extend(messages)
        finally:
            await consumer.stop()

    return asyncio.run(read())


def json_values(records: list[Any]) -> list[Any]:
    return [orjson.loads(record.value) for record in records]


def _same_series(head: str, name: str, labels: dict[str, str]) -> bool:
    if not head.startswith(name + "{"):
        return False
    found = dict(part.split("=", 1) for part in head[len(name) + 1 : -1].split(",") if part)
    return {k: v.strip('"') for k, v in found.items()} == labels
