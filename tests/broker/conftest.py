"""Broker-backed fixtures: one embedded broker per test run, Kairos workers as real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.broker import EmbeddedBroker
from tests.broker.harness import Kairos


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/broker" in str(item.path):
            item.add_marker(pytest.mark.broker)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log_file=log) as running:
        yield running


def deployment(broker: EmbeddedBroker, workdir: Path, prefix: str, workers: int) -> Kairos:
    kairos = Kairos(broker, prefix, workdir)
    kairos.create_topics()
    for _ in range(workers):
        kairos.add_worker()
    for worker in kairos.workers:
        worker.wait_ready()
    kairos.wait_settled()  # joins after the first moved partitions: all ready at once
    return kairos


@pytest.fixture(scope="session")
def kairos(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kairos]:
    """One worker of the app `kairos` with the HTTP API, shared by the tests of a run."""
    running = deployment(broker, tmp_path_factory.mktemp("kairos"), "kairos", workers=1)
    yield running
    running.stop()
