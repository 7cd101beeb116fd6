"""The engagement score: an exponentially decayed sum of event weights.

Stored as (value, as_of) and decayed on read: O(1) per event, exact at any instant, no sweep.
An event older than `as_of` (late, out of order) adds its weight already decayed to `as_of`, so
the score does not depend on the order events arrive in.
"""

from __future__ import annotations

import math

#: [value, as_of epoch ms]
Score = list[float]


def value_at(score: Score | None, now_ms: int, half_life_ms: int) -> float:
    """The score decayed to `now_ms` (a read before `as_of` gives the value at `as_of`)."""
    if not score:
        return 0.0
    value, as_of = score
    if now_ms <= as_of:
        return value
    return value * math.pow(0.5, (now_ms - as_of) / half_life_ms)


def add(score: Score | None, weight: float, at_ms: int, half_life_ms: int) -> Score:
    """The score after an event of `weight` at `at_ms`."""
    if not score:
        return [weight, float(at_ms)]
    value, as_of = score
    if at_ms >= as_of:
        return [value_at(score, at_ms, half_life_ms) + weight, float(at_ms)]
    return [value + weight * math.pow(0.5, (as_of - at_ms) / half_life_ms), as_of]
