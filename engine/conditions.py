"""Condition evaluators: one small function per condition kind, each explaining what it saw.

`evaluate(condition, ctx)` returns a `Verdict`: whether the condition holds and, for the trigger's
explanation, one line per leaf condition with the value it saw, e.g.
`count(Product Viewed where product_id eq 'A', 7d) = 2 gte 1: true`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine import windows
from engine.clock import MINUTE_MS, parse_duration_ms
from engine.filters import compare, counter_key, describe_filters, lookup, show
from engine.profile import UserState
from schemas.rules import (
    AllCondition,
    AnyCondition,
    Condition,
    CountCondition,
    FirstSeenCondition,
    LastSeenCondition,
    NewVisitorCondition,
    NotCondition,
    PropertyCondition,
    RecencySpec,
    ScoreCondition,
    SegmentCondition,
    TraitCondition,
)

#: A visitor is new while their first activity is at most this far behind the causing event.
NEW_VISITOR_MS = 30 * MINUTE_MS


@dataclass(frozen=True)
class Context:
    """Everything a condition may look at, as of the causing event (after it was applied)."""

    state: UserState
    properties: Mapping[str, Any]
    now_ms: int
    score: float
    previous_score: float | None  # at the user's previous event, before this one
    previous_seen_ms: int | None  # the user's last activity before this event
    segments: Mapping[str, Condition]


@dataclass
class Verdict:
    ok: bool
    lines: list[str] = field(default_factory=list)


def _leaf(ok: bool, text: str) -> Verdict:
    return Verdict(ok, [f"{text}: {'true' if ok else 'false'}"])


def _all(c: AllCondition, ctx: Context) -> Verdict:
    parts = [evaluate(child, ctx) for child in c.all]
    return Verdict(all(p.ok for p in parts), [line for p in parts for line in p.lines])


def _any(c: AnyCondition, ctx: Context) -> Verdict:
    parts = [evaluate(child, ctx) for child in c.any]
    return Verdict(any(p.ok for p in parts), [line for p in parts for line in p.lines])


def _not(c: NotCondition, ctx: Context) -> Verdict:
    inner = evaluate(c.not_, ctx)
    return Verdict(not inner.ok, [f"not ({line})" for line in inner.lines])


def _property(c: PropertyCondition, ctx: Context) -> Verdict:
    found = lookup(ctx.properties, c.property)
    text = f"event.{c.property} = {show(found)} {c.op} {show(c.value)}"
    return _leaf(compare(found, c.op, c.value), text)


def _trait(c: TraitCondition, ctx: Context) -> Verdict:
    traits = {name: t["v"] for name, t in ctx.state.get("traits", {}).items()}
    found = lookup(traits, c.trait)
    text = f"trait.{c.trait} = {show(found)} {c.op} {show(c.value)}"
    return _leaf(compare(found, c.op, c.value), text)


def _count(c: CountCondition, ctx: Context) -> Verdict:
    spec = c.count
    counter = ctx.state.get("counts", {}).get(counter_key(spec.event, spec.where))
    seen = windows.count(counter, parse_duration_ms(spec.within), ctx.now_ms)
    where = f" where {describe_filters(spec.where)}" if spec.where else ""
    text = f"count({spec.event}{where}, {spec.within}) = {seen} {c.op} {c.value}"
    return _leaf(compare(seen, c.op, c.value), text)


def _recency(label: str, at: int | None, spec: RecencySpec, now: int) -> Verdict:
    if at is None:
        return _leaf(False, f"{label} = never")
    age = now - at
    if spec.within is not None:
        return _leaf(age <= parse_duration_ms(spec.within), f"{label} within {spec.within}")
    assert spec.older_than is not None
    return _leaf(age > parse_duration_ms(spec.older_than), f"{label} older than {spec.older_than}")


def _first_seen(c: FirstSeenCondition, ctx: Context) -> Verdict:
    return _recency("first_seen", ctx.state.get("first_seen"), c.first_seen, ctx.now_ms)


def _last_seen(c: LastSeenCondition, ctx: Context) -> Verdict:
    return _recency("previous activity", ctx.previous_seen_ms, c.last_seen, ctx.now_ms)


def _new_visitor(c: NewVisitorCondition, ctx: Context) -> Verdict:
    first = ctx.state.get("first_seen")
    is_new = first is not None and ctx.now_ms - first <= NEW_VISITOR_MS
    return _leaf(is_new == c.new_visitor, f"new visitor = {'yes' if is_new else 'no'}")


def _score(c: ScoreCondition, ctx: Context) -> Verdict:
    spec = c.score
    if spec.dropped_below is not None:
        before = ctx.previous_score
        ok = before is not None and before >= spec.dropped_below > ctx.score
        shown = "none" if before is None else show(before)
        text = f"score dropped from {shown} to {show(ctx.score)} below {show(spec.dropped_below)}"
        return _leaf(ok, text)
    assert spec.op is not None
    text = f"score = {show(ctx.score)} {spec.op} {show(spec.value)}"
    return _leaf(compare(ctx.score, spec.op, spec.value), text)


def _segment(c: SegmentCondition, ctx: Context) -> Verdict:
    inner = evaluate(ctx.segments[c.segment], ctx)
    return Verdict(inner.ok, [f"segment {c.segment}: {'true' if inner.ok else 'false'}"])


_EVALUATORS: dict[type[Any], Callable[[Any, Context], Verdict]] = {
    AllCondition: _all,
    AnyCondition: _any,
    NotCondition: _not,
    PropertyCondition: _property,
    TraitCondition: _trait,
    CountCondition: _count,
    FirstSeenCondition: _first_seen,
    LastSeenCondition: _last_seen,
    NewVisitorCondition: _new_visitor,
    ScoreCondition: _score,
    SegmentCondition: _segment,
}


def evaluate(condition: Condition, ctx: Context) -> Verdict:
    return _EVALUATORS[type(condition)](condition, ctx)
