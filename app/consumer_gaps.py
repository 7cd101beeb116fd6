"""Make Faust's consumer gaps visible: offsets it will commit without having delivered them.

Faust's consumer (faust-streaming 0.15.3, `Consumer._drain_messages`) takes a record whose offset
is more than one past the last one it read for the end of a gap (compacted records, transaction
markers) and commits the offsets in between as if they had been processed. Kairos's topics have
no compacted records, and transaction markers only with `exactly_once`; yet gaps are recorded at
rebalances, when a record prefetched before the seek to the committed offset is delivered after
it (faust-streaming issues #216 and #221). The records in such a gap are not read again: those
the worker had processed before the rebalance are fine (their effects are in the state), those
it had not are lost. Kairos cannot tell which from here; it counts every gap and, at
`at_least_once`, logs it, so that a loss is never silent (docs/guarantees.md).
"""

from __future__ import annotations

import logging
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP

from app.metrics import CONSUMER_GAPS

log = logging.getLogger(__name__)


def watch_gaps(expected: bool) -> None:
    """Count (and, unless gaps are `expected`, log) every gap Faust's consumers record."""
    original = getattr(Consumer, "_kairos_original_add_gap", Consumer._add_gap)

    async def add_gap(self: Any, tp: TP, offset_from: int, offset_to: int) -> None:
        # Faust records only the offsets after the committed one (already committed ones are
        # done): report exactly those, and nothing when none are left.
        committed = self._committed_offset[tp]
        first = offset_from if committed is None else max(offset_from, committed + 1)
        if first <= offset_to:
            CONSUMER_GAPS.labels(topic=tp.topic).inc()
            if not expected:
                log.warning(
                    "consumer gap on %s[%d]: offsets %d to %d will be committed without being "
                    "read again (see docs/guarantees.md)",
                    tp.topic,
                    tp.partition,
                    first,
                    offset_to,
                )
        await original(self, tp, offset_from, offset_to)

    # Set with setattr: a monkeypatch of a class mypy knows the methods of.
    setattr(Consumer, "_kairos_original_add_gap", original)  # noqa: B010
    setattr(Consumer, "_add_gap", add_gap)  # noqa: B010
