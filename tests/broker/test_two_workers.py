"""Two workers of one app split the partitions, and either answers for any user."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.broker import EmbeddedBroker
from tests.broker.conftest import deployment
from tests.broker.harness import Kairos


@pytest.fixture(scope="module")
def pair(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kairos]:
    running = deployment(broker, tmp_path_factory.mktemp("pair"), "pair", workers=2)
    yield running
    running.stop()


def test_two_workers_split_the_partitions(pair: Kairos) -> None:
    owned = [worker.health() or {} for worker in pair.workers]
    users_topic = pair.topic("users")
    per_worker = [health["partitions_by_topic"].get(users_topic, 0) for health in owned]
    assert all(count > 0 for count in per_worker)
    assert sum(per_worker) == 8  # each partition of the users topic has exactly one owner


def test_either_worker_returns_the_profile_of_any_user(pair: Kairos) -> None:
    users = [f"split-user-{i}" for i in range(16)]
    for i, user in enumerate(users):
        front = pair.workers[i % 2].url
        answer = pair.collect("/v1/track", {"userId": user, "event": "Visited"}, url=front)
        assert answer.status_code == 200
    for user in users:
        for worker in pair.workers:
            profile = pair.wait_profile(user, url=worker.url)
            assert profile["user_id"] == user
            assert profile["counts"]["Visited"]["1h"] == 1
