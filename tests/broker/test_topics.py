"""Topics a worker creates: every one the app needs, the changelogs with the configs they need."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from app.broker import EmbeddedBroker, bootstrap_of, ensure_topics
from app.settings import Settings
from app.topics import CHANGELOG_CONFIG, all_topics


async def configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics]
        [answer] = await admin.describe_configs(resources)
    finally:
        await admin.close()
    return {
        name: {entry[0]: entry[1] for entry in entries}
        for _, _, _, name, entries in answer.resources
    }


def test_the_written_back_changelogs_are_created_to_keep_every_record(
    broker: EmbeddedBroker,
) -> None:
    """Kafka's default retention (7 days) would delete the only copy of old users' state."""
    run = uuid.uuid4().hex[:8]
    settings = Settings(app_id=f"topics-{run}", topic_prefix=f"topics-{run}")
    specs = all_topics(settings)
    ensure_topics(broker.url, specs)
    changelogs = [spec.name for spec in specs if spec.name.endswith("-changelog")]
    assert len(changelogs) == 3
    found = asyncio.run(configs(bootstrap_of(broker.url), changelogs))
    for name in changelogs:
        assert {k: found[name].get(k) for k in CHANGELOG_CONFIG} == dict(CHANGELOG_CONFIG), name
