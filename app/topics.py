"""Every Kafka topic Kairos reads or writes: names and partition counts live here only.

Topic names are `<prefix>.<name>` (prefix `KAIROS_TOPIC_PREFIX`, default `kairos`). Every topic,
including Faust's changelog and assignor topics, has the same partition count
(`KAIROS_PARTITIONS`), because tables and streams are co-partitioned by user.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from app.settings import Settings

#: Input: Segment-spec events (one event, or a `{"batch": [...]}` envelope, per record).
EVENTS = "events"
#: Input: CRM records (schemas/crm.py).
CRM = "crm"
#: Input: profile updates (schemas/crm.py).
PROFILES = "profiles"
#: Internal: validated events keyed by the identity they carry (anonymousId, else userId).
IDENTITY = "identity"
#: Internal: events, CRM records, profile updates and merges keyed by the resolved user.
USERS = "users"
#: Output: records that failed validation, with the reason (schemas/dlq.py).
DLQ = "dlq"
#: Output: triggers for messaging systems, CloudEvents keyed by user id (schemas/triggers.py).
TRIGGERS = "triggers"

INPUTS = (EVENTS, CRM, PROFILES)

#: Faust tables; each has a changelog topic `<app_id>-<table>-changelog`.
TABLE_IDENTITY = "identity"
TABLE_PROFILES = "profiles"
TABLE_TIMERS = "timers"
TABLES = (TABLE_IDENTITY, TABLE_PROFILES, TABLE_TIMERS)


#: The written-back changelogs hold many keys per record under keys unique per record
#: (docs/throughput.md): compaction would free nothing, and time-based deletion would lose state.
CHANGELOG_CONFIG: Mapping[str, str] = {"cleanup.policy": "delete", "retention.ms": "-1"}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    #: Topic configs to create it with (the broker's defaults for the rest).
    config: Mapping[str, str] = field(default_factory=dict)


def topic_name(settings: Settings, short: str) -> str:
    return f"{settings.topic_prefix}.{short}"


def all_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic a worker needs before it starts: ours, the changelogs, Faust's assignor."""
    n = settings.partitions
    names = [topic_name(settings, short) for short in (*INPUTS, IDENTITY, USERS, DLQ, TRIGGERS)]
    specs = [TopicSpec(name, n) for name in names]
    specs += [
        TopicSpec(f"{settings.app_id}-{table}-changelog", n, CHANGELOG_CONFIG) for table in TABLES
    ]
    specs.append(TopicSpec(f"{settings.app_id}-__assignor-__leader", n))
    return specs
