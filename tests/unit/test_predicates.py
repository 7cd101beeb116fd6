"""Compiled predicates (engine.predicates, engine.filters) decide as the conditions read as written.

The engine evaluates compiled closures on the hot path and builds explanations with
`engine.conditions.evaluate` only for triggers it publishes. These check both against the
reference: comparisons and lookups value by value, condition trees on random users, and a whole
replay against one whose rules evaluate (and explain) every condition as written, eagerly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from workloads import coverage_folder, mixed_items, replay_items

from app.rule_files import load_rulebook
from engine import windows
from engine.clock import DAY_MS, HOUR_MS, MINUTE_MS
from engine.conditions import Context, evaluate
from engine.filters import (
    MISSING,
    comparator,
    compare,
    counter_key,
    filters_test,
    lookup,
    matches,
    reader,
)
from engine.predicates import Predicates
from engine.profile import UserState, new_state
from engine.rules import CompiledRule, RuleBook
from schemas.rules import Condition, PropertyFilter

T0 = 1_714_557_600_000
CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)
OPS = ["eq", "ne", "in", "not_in", "contains", "gt", "gte", "lt", "lte", "exists", "not_exists"]

SCALARS: list[Any] = [None, True, False, 0, 1, 1.0, 2.5, -3, "", "a", "b", "pro", "10"]
POOL: list[Any] = [
    *SCALARS,
    [],
    [1],
    [True],
    ["a", 1],
    ["pro", "b"],
    [[1]],
    {"k": 1},
    {},
    [{"k": 1}],
]

scalars = st.sampled_from(SCALARS)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abk"), inner),
    max_leaves=5,
)


def test_a_comparator_answers_as_compare_for_every_operator_value_and_value_found() -> None:
    tried = 0
    for op in OPS:
        for expected in POOL:
            try:  # only what a rule file may hold
                PropertyFilter.model_validate({"property": "x", "op": op, "value": expected})
            except ValidationError:
                continue
            check = comparator(op, expected)
            for found in [*POOL, MISSING]:
                assert check(found) is compare(found, op, expected), (found, op, expected)
                tried += 1
    assert tried > 2000


paths = st.lists(st.sampled_from(["a", "b", "k", ""]), min_size=1, max_size=3).map(".".join)


@settings(max_examples=300, deadline=None)
@given(data=values, path=paths)
def test_a_reader_finds_what_lookup_finds(data: Any, path: str) -> None:
    assert reader(path)(data) is lookup(data, path)


filter_lists = st.lists(
    st.builds(
        lambda path, op, value: {"property": path, "op": op, "value": value},
        paths,
        st.sampled_from(OPS),
        values,
    ),
    max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(raw=filter_lists, props=st.dictionaries(st.sampled_from("abk"), values))
def test_a_filters_test_matches_as_matches(raw: list[dict[str, Any]], props: Any) -> None:
    try:
        filters = [PropertyFilter.model_validate(f) for f in raw]
    except ValidationError:
        assume(False)
    assert filters_test(filters)(props) is matches(props, filters)


# --- condition trees ----------------------------------------------------------------------------

COUNTS = [
    ("Product Viewed", [], "7d"),
    ("Product Viewed", [{"property": "a", "op": "eq", "value": "pro"}], "1h"),
    ("Order Completed", [], "90d"),
    ("Page Viewed", [{"property": "b", "op": "gt", "value": 1}], "3d"),
]
SEGMENTS = {
    "pro": {"trait": "plan", "op": "in", "value": ["pro", "team"]},
    "busy": {
        "any": [
            {"segment": "pro"},
            {"count": {"event": "Product Viewed", "within": "7d"}, "value": 2},
        ]
    },
}

SEGMENT_CONDITIONS = {sid: CONDITION.validate_python(c) for sid, c in SEGMENTS.items()}
SEGMENT_PREDICATES = Predicates(SEGMENT_CONDITIONS)


def _leaf(kind: str, draw: Any) -> dict[str, Any]:
    op, value = draw(st.sampled_from(OPS)), draw(values)
    if kind == "property":
        return {"property": draw(paths), "op": op, "value": value}
    if kind == "trait":
        name = draw(st.sampled_from(["plan", "seats", "address.city", "flag", "a.k", "gone"]))
        return {"trait": name, "op": op, "value": value}
    if kind == "count":
        event, where, within = draw(st.sampled_from(COUNTS))
        compare_op = draw(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]))
        spec = {"event": event, "where": where, "within": within}
        return {"count": spec, "op": compare_op, "value": draw(st.integers(0, 4))}
    if kind in ("first_seen", "last_seen"):
        bound = draw(st.sampled_from(["within", "older_than"]))
        return {kind: {bound: draw(st.sampled_from(["30s", "15m", "2h", "1d", "2w"]))}}
    if kind == "new_visitor":
        return {"new_visitor": draw(st.booleans())}
    if kind == "score":
        if draw(st.booleans()):
            return {"score": {"dropped_below": draw(st.sampled_from([0.5, 5, 10.0]))}}
        compare_op = draw(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]))
        return {"score": {"op": compare_op, "value": draw(st.sampled_from([0, 5, 7.25, 10]))}}
    return {"segment": draw(st.sampled_from(list(SEGMENTS)))}


LEAVES = ["property", "trait", "count", "first_seen", "last_seen", "new_visitor", "score"]


@st.composite
def conditions(draw: Any, depth: int = 0) -> dict[str, Any]:
    kind = draw(
        st.sampled_from([*LEAVES, "segment", "all", "any", "not"][: 8 if depth > 2 else 11])
    )
    if kind in ("all", "any"):
        return {kind: draw(st.lists(conditions(depth + 1), min_size=1, max_size=3))}
    if kind == "not":
        return {"not": draw(conditions(depth + 1))}
    return _leaf(kind, draw)


@st.composite
def contexts(draw: Any) -> Context:
    state: UserState = new_state("u1")
    for name in draw(st.lists(st.sampled_from(["plan", "seats", "address", "flag", "a"]))):
        state["traits"][name] = {"v": draw(values), "src": "crm", "at": T0}
    now = T0 + draw(st.integers(0, 30 * DAY_MS))
    for event, where, _ in COUNTS:
        key = counter_key(event, [PropertyFilter.model_validate(f) for f in where])
        for ago in draw(st.lists(st.sampled_from([0, MINUTE_MS, HOUR_MS, 2 * DAY_MS, 8 * DAY_MS]))):
            windows.add(state["counts"].setdefault(key, {}), now - ago, now)
    ages = st.sampled_from([0, MINUTE_MS, 15 * MINUTE_MS, 30 * MINUTE_MS, 2 * HOUR_MS, DAY_MS])
    if draw(st.booleans()):  # ages on the bounds of the durations conditions use, and off them
        state["first_seen"] = now - draw(ages | st.integers(0, 20 * DAY_MS))
    previous_score = draw(st.none() | st.sampled_from([0.0, 5.0, 9.99, 12.5]))
    return Context(
        state=state,
        properties=draw(st.dictionaries(st.sampled_from("abk"), values)),
        now_ms=now,
        score=draw(st.sampled_from([0.0, 4.99, 5.0, 7.25, 11.0])),
        previous_score=previous_score,
        previous_seen_ms=draw(st.none() | ages.map(lambda age: now - age)),
        segments=SEGMENT_CONDITIONS,
    )


@settings(max_examples=300, deadline=None)
@given(raw=conditions(), ctx=contexts())
def test_a_compiled_condition_holds_when_the_condition_as_written_does(
    raw: dict[str, Any], ctx: Context
) -> None:
    try:
        condition = CONDITION.validate_python(raw)
    except ValidationError:
        assume(False)
    compiled = SEGMENT_PREDICATES.condition(condition)
    assert compiled(ctx) is evaluate(condition, ctx).ok


def _on_bounds(ms: int) -> list[int]:
    return [ms - 1, ms, ms + 1]


def leaf_cases() -> list[tuple[dict[str, Any], Context]]:
    """Every leaf kind against values on and around its bounds, where a `<` for a `<=` shows."""
    cases: list[tuple[dict[str, Any], Context]] = []
    durations = {"30s": 30_000, "15m": 15 * MINUTE_MS, "2h": 2 * HOUR_MS, "1d": DAY_MS}
    ages = [None, 0, *(age for ms in durations.values() for age in _on_bounds(ms))]
    now = T0 + 10 * DAY_MS
    for text in durations:
        for bound in ("within", "older_than"):
            for age in ages:
                at = None if age is None else now - age
                state = new_state("u1")
                if at is not None:
                    state["first_seen"] = at
                first = {"first_seen": {bound: text}}
                last = {"last_seen": {bound: text}}
                cases.append((first, plain(state=state, now_ms=now)))
                cases.append((last, plain(now_ms=now, previous_seen_ms=at)))
    for age in [None, 0, *_on_bounds(30 * MINUTE_MS)]:
        state = new_state("u1")
        if age is not None:
            state["first_seen"] = now - age
        for expected in (True, False):
            cases.append(({"new_visitor": expected}, plain(state=state, now_ms=now)))
    for value in (0.0, 4.99, 5.0, 5.01, 10.0):
        for before in (None, 4.99, 5.0, 5.01):
            context = plain(score=value, previous_score=before)
            cases.append(({"score": {"dropped_below": 5}}, context))
            for op in ("eq", "ne", "gt", "gte", "lt", "lte"):
                cases.append(({"score": {"op": op, "value": 5}}, context))
    for events in range(4):
        state = new_state("u1")
        for ago in [0, HOUR_MS, DAY_MS, 3 * DAY_MS][:events]:
            windows.add(state["counts"].setdefault("Signed In", {}), now - ago, now)
        for op in ("eq", "ne", "gt", "gte", "lt", "lte"):
            for value in range(4):
                count = {"count": {"event": "Signed In", "within": "1d"}, "op": op, "value": value}
                cases.append((count, plain(state=state, now_ms=now)))
    for value in POOL:
        state = new_state("u1")
        state["traits"]["plan"] = {"v": value, "src": "crm", "at": T0}
        state["traits"]["address"] = {"v": {"city": value}, "src": "crm", "at": T0}
        for op in OPS:
            for expected in POOL:
                for trait in ("plan", "address.city", "plan.x", "gone"):
                    cases.append(
                        ({"trait": trait, "op": op, "value": expected}, plain(state=state))
                    )
    return cases


def plain(**fields: Any) -> Context:
    defaults: dict[str, Any] = {
        "state": new_state("u1"),
        "properties": {},
        "now_ms": T0,
        "score": 0.0,
        "previous_score": None,
        "previous_seen_ms": None,
        "segments": {},
    }
    return Context(**{**defaults, **fields})


def test_every_leaf_condition_compiled_holds_as_written_on_and_around_its_bounds() -> None:
    tried = 0
    for raw, ctx in leaf_cases():
        try:
            condition = CONDITION.validate_python(raw)
        except ValidationError:
            continue
        compiled = SEGMENT_PREDICATES.condition(condition)
        assert compiled(ctx) is evaluate(condition, ctx).ok, (raw, ctx)
        tried += 1
    assert tried > 3000


# --- a whole replay -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EagerRule(CompiledRule):
    """A rule evaluated as the engine did before compiling: the condition as written, explained
    when evaluated; the explanation published is the one made then."""

    made: dict[tuple[int, str], list[str]] = dataclasses.field(default_factory=dict)

    def explain(self, ctx: Context) -> list[str]:
        return self.made.pop((id(ctx), self.rule.id)) if self.rule.if_ is not None else []


def _eager(item: CompiledRule) -> CompiledRule:
    rule = item.rule
    made: dict[tuple[int, str], list[str]] = {}

    def condition(ctx: Context) -> bool:
        assert rule.if_ is not None
        verdict = evaluate(rule.if_, ctx)
        made[(id(ctx), rule.id)] = verdict.lines
        return verdict.ok

    fields = {f.name: getattr(item, f.name) for f in dataclasses.fields(CompiledRule)}
    fields["where"] = lambda props: matches(props, rule.when.where)
    if rule.unless is not None:
        unless = rule.unless
        fields["unless_where"] = lambda props: matches(props, unless.where)
    if rule.if_ is not None:
        fields["condition"] = condition
    return EagerRule(**fields, made=made)


def eager(book: RuleBook) -> RuleBook:
    """The same rule book, its rules swapped for `EagerRule`s wherever it holds them."""
    swap = {item.rule.id: _eager(item) for item in book.rules}

    def swapped(value: Any) -> Any:
        if isinstance(value, CompiledRule):
            return swap[value.rule.id]
        if isinstance(value, tuple):
            return tuple(swapped(v) for v in value)
        if isinstance(value, Mapping):
            return {k: swapped(v) for k, v in value.items()}
        return value

    fields = {f.name: getattr(book, f.name) for f in dataclasses.fields(RuleBook) if f.init}
    return RuleBook(**{name: swapped(value) for name, value in fields.items()})


def test_a_replay_decides_and_explains_as_evaluating_every_condition_as_written(
    tmp_path: Path,
) -> None:
    book = load_rulebook(coverage_folder(tmp_path), recent_items=5)
    items = list(mixed_items(1500, 30, seed=5))
    compiled = replay_items(items, book, until_ms=5 * DAY_MS)
    written = replay_items(items, eager(book), until_ms=5 * DAY_MS)
    assert len(compiled.triggers) > 500  # a workload where rules of every kind fire
    assert {t["data"]["rule_id"] for t in compiled.triggers} >= {
        item.rule.id for item in book.rules if item.rule.enabled and item.rule.id.startswith("cov_")
    } - {"cov_counts", "cov_exists"}
    assert orjson.dumps(compiled.triggers) == orjson.dumps(written.triggers)
    assert compiled.suppressed == written.suppressed
    assert orjson.dumps(compiled.states) == orjson.dumps(written.states)


def test_the_eager_reference_is_not_vacuous(tmp_path: Path) -> None:
    """Had the reference rules no effect, the replay comparison would prove nothing."""
    book = load_rulebook(coverage_folder(tmp_path), recent_items=5)
    reference = eager(book)
    assert all(isinstance(item, EagerRule) for item in reference.rules)
    assert all(isinstance(item, EagerRule) for item in reference.enabled.values())
    assert all(isinstance(i, EagerRule) for items in reference.by_event.values() for i in items)
