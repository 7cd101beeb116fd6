"""A gap Faust's consumer records (offsets it will commit unread) is counted and logged."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from types import SimpleNamespace

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree
from prometheus_client import REGISTRY

from app.consumer_gaps import watch_gaps

TOPIC = "gaps-test.users"


def _gaps() -> float:
    value = REGISTRY.get_sample_value("kairos_consumer_gaps_total", {"topic": TOPIC})
    return value or 0.0


def _consumer() -> SimpleNamespace:
    """What Faust's `Consumer._add_gap` reads and writes: committed offsets and gaps."""
    return SimpleNamespace(
        _committed_offset=defaultdict(lambda: None), _gap=defaultdict(IntervalTree)
    )


def test_a_gap_is_counted_logged_and_still_recorded_by_faust(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch_gaps(expected=False)
    consumer, tp, before = _consumer(), TP(TOPIC, 3), _gaps()
    with caplog.at_level(logging.WARNING, logger="app.consumer_gaps"):
        asyncio.run(Consumer._add_gap(consumer, tp, 41, 49))
    assert _gaps() == before + 1
    assert f"consumer gap on {TOPIC}[3]: offsets 41 to 49 will be committed" in caplog.text
    # Faust's own bookkeeping goes on unchanged: the offsets count as acknowledged for commits.
    assert sorted((i.begin, i.end) for i in consumer._gap[tp]) == [(41, 50)]


def test_only_offsets_after_the_committed_one_are_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch_gaps(expected=False)
    consumer, tp, before = _consumer(), TP(TOPIC, 5), _gaps()
    consumer._committed_offset[tp] = 44
    with caplog.at_level(logging.WARNING, logger="app.consumer_gaps"):
        asyncio.run(Consumer._add_gap(consumer, tp, 41, 49))
        asyncio.run(Consumer._add_gap(consumer, tp, 30, 40))  # all committed already: no gap
    assert _gaps() == before + 1
    assert f"consumer gap on {TOPIC}[5]: offsets 45 to 49 will be committed" in caplog.text
    assert "offsets 30 to 40" not in caplog.text
    assert sorted((i.begin, i.end) for i in consumer._gap[tp]) == [(45, 50)]


def test_expected_gaps_are_counted_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    watch_gaps(expected=True)
    try:
        consumer, tp, before = _consumer(), TP(TOPIC, 0), _gaps()
        with caplog.at_level(logging.WARNING, logger="app.consumer_gaps"):
            asyncio.run(Consumer._add_gap(consumer, tp, 7, 7))
        assert _gaps() == before + 1
        assert "consumer gap" not in caplog.text
    finally:
        watch_gaps(expected=False)
