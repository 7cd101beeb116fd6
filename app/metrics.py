"""Prometheus metrics of a worker. Labels name kinds of things, never users."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_INGESTED = Counter(
    "kairos_events_ingested_total",
    "Valid input records accepted by the ingest stage, by Segment type (or crm / profile)",
    ["type"],
)
EVENTS_PROCESSED = Counter(
    "kairos_events_processed_total",
    "Records applied to a user's profile, by Segment type (or crm / profile)",
    ["type"],
)
EVENTS_DUPLICATE = Counter(
    "kairos_events_duplicate_total",
    "Records dropped because the user's profile had already applied their id",
)
EVENTS_INVALID = Counter(
    "kairos_events_invalid_total",
    "Input rejected (HTTP 4xx) or dead-lettered, by reason and where it came from",
    ["reason", "source"],
)
PROCESSING_SECONDS = Histogram(
    "kairos_event_processing_seconds",
    "Seconds from ingestion (HTTP or input topic) until the event is applied to the profile",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_SECONDS = Histogram(
    "kairos_batch_duration_seconds",
    "Seconds an agent spends on one batch of records, by stage",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CONSUMER_GAPS = Counter(
    "kairos_consumer_gaps_total",
    "Gaps Faust's consumer recorded: runs of offsets committed without being read again "
    "(at rebalances; and with exactly_once, at every transaction marker)",
    ["topic"],
)
CONSUMER_STALLS = Counter(
    "kairos_consumer_stalls_total",
    "Times a stream partition delivered no record for 8 s while records were waiting "
    "(logged at WARNING with the consumer's state; the partition is fetched again)",
)
CONSUMER_REFETCHES = Counter(
    "kairos_consumer_refetches_total",
    "Times a partition was fetched again from an offset a fetch jumped over (a record held "
    "across a rebalance; the embedded broker's fetches sometimes skip a record being written)",
    ["topic"],
)
IDENTITY_LINKS = Counter(
    "kairos_identity_links_total", "anonymousId → userId links made or changed"
)
PROFILE_MERGES = Counter(
    "kairos_profile_merges_total", "Anonymous profiles merged into a known user"
)
TRIGGERS_PUBLISHED = Counter(
    "kairos_triggers_published_total",
    "Triggers published, by rule and channel",
    ["rule", "channel"],
)
TRIGGERS_SUPPRESSED = Counter(
    "kairos_triggers_suppressed_total",
    "Triggers a rule fired but the contact policy or a failed template held back, by reason",
    ["rule", "reason"],
)
TEMPLATE_FALLBACKS = Counter(
    "kairos_template_fallbacks_total",
    "Triggers published with the rule's fallback content because a template failed",
    ["rule"],
)
TIMERS_PENDING = Gauge(
    "kairos_timers_pending",
    "Timers pending in the partitions this worker owns (recounted each minute)",
)
TIMERS_FIRED = Counter("kairos_timers_fired_total", "Timers that came due and fired", ["kind"])
TIMERS_CANCELLED = Counter(
    "kairos_timers_cancelled_total", "Absence timers cancelled by their `unless` event"
)
TIMER_LATENESS = Histogram(
    "kairos_timer_lateness_seconds",
    "Seconds between a timer's due time and the moment it fired (wall clock)",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 5, 10, 30, 60),
)
TIMER_TICK_SECONDS = Histogram(
    "kairos_timer_tick_seconds",
    "Seconds one tick of one partition spent finding and firing due timers",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
HTTP_REQUESTS = Counter(
    "kairos_http_requests_total",
    "Collector requests by endpoint and status",
    ["endpoint", "status"],
)
