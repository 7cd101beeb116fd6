"""Every Kafka topic Kairos reads or writes: names and partition counts live here only.

Topic names are `<prefix>.<name>` (prefix `KAIROS_TOPIC_PREFIX`, default `kairos`). Every topic,
including Faust's changelog and assignor topics, has the same partition count
(`KAIROS_PARTITIONS`), because tables and streams are co-partitioned by user.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int


def topic_name(settings: Settings, short: str) -> str:
    return f"{settings.topic_prefix}.{short}"


def all_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic a worker needs before it starts: ours, the changelogs, Faust's assignor."""
    n = settings.partitions
    names = [topic_name(settings, short) for short in (*INPUTS, IDENTITY, USERS, DLQ, TRIGGERS)]
    names += [f"{settings.app_id}-{table}-changelog" for table in TABLES]
    names.append(f"{settings.app_id}-__assignor-__leader")
    return [TopicSpec(name, n) for name in names]
