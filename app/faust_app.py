"""The Faust app and its topics, configured from the settings.

Importing this module builds the app; `app.worker` imports the agents, tables and web views that
register themselves on it.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import sys

import faust

from app import topics
from app.broker import bootstrap_of
from app.consumer_gaps import (
    END_OFFSETS_SECONDS,
    answered,
    deliver_in_order,
    new_stall,
    resume_stalled,
    stalled_partitions,
    stream_partitions,
    unanswered,
    watch_gaps,
)
from app.fetch_wait import limit_fetch_wait
from app.metrics import CONSUMER_STALLS
from app.partition_pause import pause_in_client
from app.rule_files import load_rulebook
from app.settings import get_settings

log = logging.getLogger(__name__)
settings = get_settings()
settings.data_dir.mkdir(parents=True, exist_ok=True)
#: The rules, validated and compiled once at start: a worker with invalid rules does not start.
rulebook = load_rulebook(settings.rules, recent_items=settings.recent_items)

_tansu = settings.broker_kind == "tansu"
limit_fetch_wait(settings.fetch_max_wait_ms or (20 if _tansu else 1500))
watch_gaps(expected=settings.processing_guarantee == "exactly_once")
deliver_in_order()
pause_in_client()

app = faust.App(
    settings.app_id,
    broker=f"kafka://{bootstrap_of(settings.broker_url)}",
    store="rocksdb://",  # rocksdb:// is backed by rocksdict
    datadir=str(settings.data_dir),
    topic_partitions=settings.partitions,
    processing_guarantee=settings.processing_guarantee,
    # Group joins take session_timeout / 2; Faust's 60 s default makes every start wait 30 s.
    broker_session_timeout=6,
    broker_heartbeat_interval=2,
    broker_rebalance_timeout=20,
    # The embedded broker's end-offset bug (one record per batch needed for exact recovery) is
    # handled where changelogs are written (tables/written_back.py): the rest is batched.
    producer_max_batch_size=16384,
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_bind=settings.web_host,
    canonical_url=settings.web_url,
    # The collector answers 413 itself up to this size; aiohttp refuses anything larger.
    web_application_options={"client_max_size": 4 * 1024 * 1024},
    # Faust's /table/{table}/{key}/ would serve any user's profile, and the identity links, to
    # anyone: user data is read through GET /users/{id} and its admin token only. (/router stays:
    # it says which worker owns a key, which GET /users needs to forward a request.)
    web_tables_enabled=False,
    autodiscover=False,
    topic_disable_leader=False,
)


def _topic(short: str, key_serializer: str) -> faust.TopicT:
    return app.topic(
        topics.topic_name(settings, short),
        key_type=str if key_serializer == "json" else bytes,
        value_type=bytes,
        key_serializer=key_serializer,
        value_serializer="raw",
        partitions=settings.partitions,
    )


# Inputs accept any key: Kairos re-keys what it reads.
events_topic = _topic(topics.EVENTS, "raw")
crm_topic = _topic(topics.CRM, "raw")
profiles_topic = _topic(topics.PROFILES, "raw")
dlq_topic = _topic(topics.DLQ, "raw")
triggers_topic = _topic(topics.TRIGGERS, "raw")
# Internal topics are keyed with the tables' JSON key serializer, so that `table_route` finds a
# user's owner from the same bytes the producer partitioned by.
identity_topic = _topic(topics.IDENTITY, "json")
users_topic = _topic(topics.USERS, "json")


#: A worker whose event loop has not turned for this long prints every thread's stack to its
#: standard error ("Timeout (0:00:30)!"): nothing in the loop can report a loop that is stuck.
LOOP_STUCK_SECONDS = 30


@app.timer(interval=2.0)  # type: ignore[untyped-decorator]
async def report_stalls() -> None:
    """A worker whose consumer delivers nothing while records wait says so (docs/guarantees.md)."""
    consumer = app.consumer
    partitions = stream_partitions(consumer)
    if not partitions:
        return
    stalled = {}
    try:
        # The broker's end offsets: the client's cached ones stop moving with a partition that
        # is not fetched any more.
        ends = await asyncio.wait_for(consumer.highwaters(*partitions), END_OFFSETS_SECONDS)
    except Exception as exc:  # the client thread does not answer: that is a stall of its own
        report = unanswered(consumer, partitions, exc)
    else:
        answered(consumer)
        try:
            stalled = stalled_partitions(consumer, dict(ends))
            report = new_stall(consumer, stalled)
        except Exception:  # a crash here would stop the whole app: a report is not worth that
            log.exception("the stall report failed")
            return
    if report is not None:
        CONSUMER_STALLS.inc()
        log.warning("consumer stalled: %s", report)
    await resume_stalled(consumer, stalled)


@app.timer(interval=1.0)  # type: ignore[untyped-decorator]
async def watch_the_loop() -> None:
    """Re-arms faulthandler's watchdog, a thread of its own that fires only if this stops."""
    # The process's own standard error: the worker's `sys.stderr` is a logging proxy without a
    # file descriptor, which faulthandler needs.
    if sys.__stderr__ is not None:
        faulthandler.dump_traceback_later(LOOP_STUCK_SECONDS, file=sys.__stderr__)
