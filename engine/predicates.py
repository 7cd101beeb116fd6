"""Predicates: conditions compiled, once when a rule set is loaded, into functions that only
answer yes or no.

Every record evaluates every rule its entry name may fire, so this is the engine's hot path.
Compiling does once what evaluating the condition tree as written (`engine.conditions.evaluate`)
does every time: parse durations, name counters, split dotted paths, pick the evaluator of each
condition kind and specialize each comparison to its operator and value.

A predicate builds no text and stops at the first child that decides an `all` or `any`: a
condition reads the user's state and the event and changes nothing, so evaluating fewer children
cannot change the verdict. The explanation of a rule that fires is built afterwards, by
`evaluate`, from every leaf as written. The two must agree on every verdict;
tests/unit/test_predicates.py checks that they do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from engine import windows
from engine.clock import parse_duration_ms
from engine.conditions import NEW_VISITOR_MS, Context
from engine.filters import MISSING, comparator, counter_key, reader, walk_path
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

#: Whether a condition holds for a user as of a record.
Predicate = Callable[[Context], bool]


class Predicates:
    """Compiles the conditions of one rule set, whose segments it is given."""

    def __init__(self, segments: Mapping[str, Condition]) -> None:
        # A segment's predicate is looked up when evaluated, not when compiled: compiling needs
        # no order among segments, and never recurses, even through a segment cycle (the rule
        # set is refused for it; see engine.rules).
        self.segments: dict[str, Predicate] = {}
        for segment_id, condition in segments.items():
            self.segments[segment_id] = self.condition(condition)

    def condition(self, c: Condition) -> Predicate:
        if isinstance(c, AllCondition):
            return _all_of(tuple(self.condition(child) for child in c.all))
        if isinstance(c, AnyCondition):
            return _any_of(tuple(self.condition(child) for child in c.any))
        if isinstance(c, NotCondition):
            inner = self.condition(c.not_)
            return lambda ctx: not inner(ctx)
        if isinstance(c, SegmentCondition):
            segments, name = self.segments, c.segment
            return lambda ctx: segments[name](ctx)
        return _leaf(c)


def _all_of(tests: tuple[Predicate, ...]) -> Predicate:
    # One and two children, the most common, without the cost of a generator.
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda ctx: first(ctx) and second(ctx)
    return lambda ctx: all(test(ctx) for test in tests)


def _any_of(tests: tuple[Predicate, ...]) -> Predicate:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda ctx: first(ctx) or second(ctx)
    return lambda ctx: any(test(ctx) for test in tests)


def _leaf(c: Condition) -> Predicate:
    if isinstance(c, PropertyCondition):
        return _property(c)
    if isinstance(c, TraitCondition):
        return _trait(c)
    if isinstance(c, CountCondition):
        return _count(c)
    if isinstance(c, FirstSeenCondition):
        return _recency(lambda ctx: ctx.state.get("first_seen"), c.first_seen)
    if isinstance(c, LastSeenCondition):
        return _recency(lambda ctx: ctx.previous_seen_ms, c.last_seen)
    if isinstance(c, NewVisitorCondition):
        return _new_visitor(c.new_visitor)
    if isinstance(c, ScoreCondition):
        return _score(c)
    raise TypeError(f"not a leaf condition: {type(c).__name__}")


def _property(c: PropertyCondition) -> Predicate:
    read, check = reader(c.property), comparator(c.op, c.value)
    return lambda ctx: check(read(ctx.properties))


def _trait(c: TraitCondition) -> Predicate:
    # As looking the path up in {trait name: value}, without building that dict.
    name, *rest = c.trait.split(".")
    inner = tuple(rest)
    check = comparator(c.op, c.value)

    unknown = check(MISSING)  # what a trait the user does not have gives, decided once

    def trait(ctx: Context) -> bool:
        held = ctx.state.get("traits", {}).get(name)
        if held is None:
            return unknown
        return check(walk_path(held["v"], inner) if inner else held["v"])

    return trait


def _count(c: CountCondition) -> Predicate:
    key = counter_key(c.count.event, c.count.where)
    window_ms = parse_duration_ms(c.count.within)
    tier = windows.tier_for(window_ms)
    check = comparator(c.op, c.value)

    never = check(0)  # what a user who never did the event gives, decided once

    def count(ctx: Context) -> bool:
        counter = ctx.state.get("counts", {}).get(key)
        if not counter:
            return never
        return check(windows.count_in(tier, counter, window_ms, ctx.now_ms))

    return count


def _recency(at: Callable[[Context], int | None], spec: RecencySpec) -> Predicate:
    if spec.within is not None:
        within = parse_duration_ms(spec.within)

        def recent(ctx: Context) -> bool:
            moment = at(ctx)
            return moment is not None and ctx.now_ms - moment <= within

        return recent
    assert spec.older_than is not None
    older_than = parse_duration_ms(spec.older_than)

    def old(ctx: Context) -> bool:
        moment = at(ctx)
        return moment is not None and ctx.now_ms - moment > older_than

    return old


def _new_visitor(expected: bool) -> Predicate:
    def new_visitor(ctx: Context) -> bool:
        first = ctx.state.get("first_seen")
        is_new = first is not None and ctx.now_ms - first <= NEW_VISITOR_MS
        return is_new == expected

    return new_visitor


def _score(c: ScoreCondition) -> Predicate:
    spec = c.score
    if spec.dropped_below is not None:
        threshold = spec.dropped_below

        def dropped(ctx: Context) -> bool:
            before = ctx.previous_score
            return before is not None and before >= threshold > ctx.score

        return dropped
    assert spec.op is not None
    check = comparator(spec.op, spec.value)
    return lambda ctx: check(ctx.score)
