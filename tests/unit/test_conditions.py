"""Specifications of engine.conditions: each condition kind, its composition and its explanation."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from engine.clock import DAY_MS, HOUR_MS, MINUTE_MS
from engine.conditions import NEW_VISITOR_MS, Context, Verdict, evaluate
from engine.filters import MISSING, compare, counter_key, lookup
from engine.profile import CounterSpec, ProfileConfig, UserState, apply_record, new_state
from engine.records import EventRecord, TraitsRecord
from schemas.rules import Condition, PropertyFilter

T0 = 1_714_557_600_000  # 2024-05-01T10:00:00.000Z
USER = "u1"
CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)


# --- builders -----------------------------------------------------------------------------------


def cond(text: str) -> Condition:
    """A condition written as in a rule file (YAML)."""
    return CONDITION.validate_python(yaml.safe_load(text))


def filters(text: str) -> list[PropertyFilter]:
    return [PropertyFilter.model_validate(f) for f in yaml.safe_load(text)]


def track(rid: str, ts: int, name: str, **props: Any) -> EventRecord:
    event = {"type": "track", "event": name, "properties": props, "userId": USER, "messageId": rid}
    return {"kind": "event", "key": USER, "id": rid, "ts": ts, "ingested": ts, "event": event}


def page(rid: str, ts: int, path: str) -> EventRecord:
    event = {"type": "page", "properties": {"path": path}, "userId": USER, "messageId": rid}
    return {"kind": "event", "key": USER, "id": rid, "ts": ts, "ingested": ts, "event": event}


def traits_record(
    rid: str, ts: int, values: dict[str, Any], source: str = "hubspot"
) -> TraitsRecord:
    return {
        "kind": "traits",
        "key": USER,
        "id": rid,
        "ts": ts,
        "ingested": ts,
        "source": source,
        "set": values,
        "unset": [],
    }


def counting(*specs: tuple[str, str]) -> ProfileConfig:
    """A profile config keeping filtered counters: (event name, YAML list of filters)."""
    counters = []
    for event, where_text in specs:
        where = filters(where_text)
        counters.append(CounterSpec(counter_key(event, where), event, tuple(where)))
    return ProfileConfig(counters=tuple(counters))


def build(records: list[Any], config: ProfileConfig | None = None) -> UserState:
    state: UserState | None = None
    for record in records:
        state = apply_record(state, record, config or ProfileConfig()).state
    assert state is not None
    return state


def ctx(
    state: UserState | None = None,
    properties: dict[str, Any] | None = None,
    now: int = T0,
    score: float = 0.0,
    previous_score: float | None = None,
    previous_seen: int | None = None,
    segments: dict[str, str] | None = None,
) -> Context:
    return Context(
        state=state if state is not None else new_state(USER),
        properties=properties or {},
        now_ms=now,
        score=score,
        previous_score=previous_score,
        previous_seen_ms=previous_seen,
        segments={sid: cond(text) for sid, text in (segments or {}).items()},
    )


def holds(text: str, context: Context) -> bool:
    return evaluate(cond(text), context).ok


PROPS: dict[str, Any] = {
    "plan": "pro",
    "path": "/pricing/enterprise",
    "price": 49.5,
    "quantity": 3,
    "tags": ["sale", "new"],
    "signup_date": "2024-04-15T08:00:00Z",
    "trial": True,
    "coupon": None,
    "cart": {"total": 120, "currency": "EUR", "items": [{"sku": "A"}]},
}


# --- filters: lookup and compare ----------------------------------------------------------------


def test_lookup_follows_dotted_paths_into_nested_mappings() -> None:
    assert lookup(PROPS, "cart.total") == 120
    assert lookup(PROPS, "cart.currency") == "EUR"


def test_lookup_of_a_path_that_leads_nowhere_is_missing_not_null() -> None:
    assert lookup(PROPS, "nope") is MISSING
    assert lookup(PROPS, "cart.nope") is MISSING
    assert lookup(PROPS, "plan.tier") is MISSING  # a step through a string
    assert lookup(PROPS, "cart.items.0") is MISSING  # lists are not indexed
    assert lookup(PROPS, "coupon") is None


FOUND = [MISSING, None, True, 1, 1.5, "a", "2024-05-01", [1, "a"], {"k": [1]}, [{"y": 1}]]
EXPECTED = [0, 2.5, "a", "2024-05-01", True, ["a", 1], [], [{"k": 1}], {"k": 1}, None]
OPS = ["eq", "ne", "in", "not_in", "contains", "gt", "gte", "lt", "lte", "exists", "not_exists"]


def test_compare_never_raises_whatever_the_types_of_the_values() -> None:
    tried = 0
    for op in OPS:
        for expected in EXPECTED:
            try:  # only the op/value pairs a rule file may hold
                PropertyFilter.model_validate({"property": "x", "op": op, "value": expected})
            except ValueError:
                continue
            for found in FOUND:
                assert isinstance(compare(found, op, expected), bool), (found, op, expected)
                tried += 1
    assert tried > 500


# --- property -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{property: plan, op: eq, value: pro}", True),
        ("{property: plan, op: eq, value: free}", False),
        ("{property: plan, value: pro}", True),  # eq is the default op
        ("{property: plan, op: ne, value: free}", True),
        ("{property: plan, op: ne, value: pro}", False),
        ("{property: quantity, op: eq, value: 3.0}", True),  # 3 and 3.0 are the same number
        ("{property: plan, op: in, value: [pro, team]}", True),
        ("{property: plan, op: in, value: [free, team]}", False),
        ("{property: plan, op: not_in, value: [free, team]}", True),
        ("{property: plan, op: not_in, value: [pro]}", False),
    ],
)
def test_a_property_compares_for_equality_and_membership(condition: str, expected: bool) -> None:
    assert holds(condition, ctx(properties=PROPS)) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{property: path, op: contains, value: pricing}", True),
        ("{property: path, op: contains, value: checkout}", False),
        ("{property: tags, op: contains, value: sale}", True),
        ("{property: tags, op: contains, value: old}", False),
        ("{property: tags, op: contains, value: sal}", False),  # list items match whole
        ("{property: quantity, op: contains, value: '3'}", False),  # a number contains nothing
        ("{property: path, op: contains, value: 3}", False),  # a string holds only strings
    ],
)
def test_contains_finds_a_substring_in_a_string_or_an_item_in_a_list(
    condition: str, expected: bool
) -> None:
    assert holds(condition, ctx(properties=PROPS)) is expected


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("gt", 49, True),
        ("gt", 49.5, False),
        ("gte", 49.5, True),
        ("gte", 50, False),
        ("lt", 50, True),
        ("lt", 49.5, False),
        ("lte", 49.5, True),
        ("lte", 49, False),
    ],
)
def test_ordering_ops_compare_numbers(op: str, value: float, expected: bool) -> None:
    text = f"{{property: price, op: {op}, value: {value}}}"
    assert holds(text, ctx(properties=PROPS)) is expected


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("gt", "2024-04-01", True),
        ("gt", "2024-05-01T00:00:00Z", False),
        ("gte", "2024-04-15T08:00:00Z", True),
        ("lt", "2024-04-15T08:00:01Z", True),
        ("lt", "2024-04-15", False),
        ("lte", "2024-04-15T08:00:00Z", True),
        ("lte", "2024-04-14T23:59:59Z", False),
    ],
)
def test_ordering_ops_compare_iso_dates_as_strings(op: str, value: str, expected: bool) -> None:
    text = f"{{property: signup_date, op: {op}, value: '{value}'}}"
    assert holds(text, ctx(properties=PROPS)) is expected


@pytest.mark.parametrize(
    "condition",
    [
        "{property: plan, op: gt, value: 3}",  # a string is not ordered against a number
        "{property: price, op: gt, value: '10'}",  # nor a number against a string
        "{property: trial, op: gte, value: 0}",  # a boolean is not a number
        "{property: tags, op: lt, value: 5}",
        "{property: cart, op: lte, value: 5}",
        "{property: coupon, op: gt, value: 0}",
        "{property: cart, op: contains, value: total}",  # a mapping contains nothing
        "{property: tags, op: eq, value: sale}",
    ],
)
def test_a_type_mismatch_is_false_and_never_raises(condition: str) -> None:
    assert holds(condition, ctx(properties=PROPS)) is False


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{property: plan, op: exists}", True),
        ("{property: cart.total, op: exists}", True),
        ("{property: nope, op: exists}", False),
        ("{property: coupon, op: exists}", False),  # a null value does not exist
        ("{property: plan, op: not_exists}", False),
        ("{property: nope, op: not_exists}", True),
        ("{property: coupon, op: not_exists}", True),
        ("{property: trial, op: exists}", True),
    ],
)
def test_exists_and_not_exists_treat_a_null_as_absent(condition: str, expected: bool) -> None:
    assert holds(condition, ctx(properties=PROPS)) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{property: cart.total, op: gte, value: 100}", True),
        ("{property: cart.currency, op: in, value: [EUR, USD]}", True),
        ("{property: cart.total.amount, op: eq, value: 120}", False),
    ],
)
def test_a_dotted_path_reaches_into_nested_properties(condition: str, expected: bool) -> None:
    assert holds(condition, ctx(properties=PROPS)) is expected


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "x", False),
        ("ne", "x", True),
        ("in", ["x"], False),
        ("not_in", ["x"], True),
        ("contains", "x", False),
        ("gt", 0, False),
        ("gte", 0, False),
        ("lt", 0, False),
        ("lte", 0, False),
    ],
)
def test_a_missing_path_matches_only_ne_and_not_in(op: str, value: Any, expected: bool) -> None:
    condition = cond(yaml.safe_dump({"property": "cart.missing", "op": op, "value": value}))
    assert evaluate(condition, ctx(properties=PROPS)).ok is expected


def test_a_property_line_shows_the_value_found_and_the_comparison() -> None:
    verdict = evaluate(cond("{property: cart.total, op: gte, value: 100}"), ctx(properties=PROPS))
    assert verdict == Verdict(True, ["event.cart.total = 120 gte 100: true"])
    missing = evaluate(cond("{property: plan_id, op: eq, value: pro}"), ctx(properties=PROPS))
    assert missing.lines == ["event.plan_id = missing eq 'pro': false"]


# --- trait --------------------------------------------------------------------------------------


def test_a_trait_set_by_a_crm_record_is_compared() -> None:
    state = build([traits_record("t1", T0, {"role": "admin", "plan": "enterprise", "seats": 40})])
    context = ctx(state)
    assert holds("{trait: role, op: eq, value: admin}", context)
    assert holds("{trait: plan, op: in, value: [team, enterprise]}", context)
    assert holds("{trait: seats, op: gt, value: 25}", context)
    assert not holds("{trait: role, op: eq, value: member}", context)


def test_a_trait_set_by_identify_is_compared() -> None:
    body = {"type": "identify", "userId": USER, "traits": {"plan": "pro"}, "messageId": "i1"}
    record = {"kind": "event", "key": USER, "id": "i1", "ts": T0, "ingested": T0, "event": body}
    assert holds("{trait: plan, op: eq, value: pro}", ctx(build([record])))


def test_a_dotted_trait_path_reaches_into_an_object_trait() -> None:
    state = build([traits_record("t1", T0, {"company": {"name": "Acme", "size": 250}})])
    assert holds("{trait: company.size, op: gte, value: 100}", ctx(state))
    assert holds("{trait: company.name, op: eq, value: Acme}", ctx(state))


def test_an_unknown_or_unset_trait_does_not_exist() -> None:
    state = build([traits_record("t1", T0, {"role": "admin"})])
    state = apply_record(
        state,
        {**traits_record("t2", T0 + 1, {}), "unset": ["role"]},
        ProfileConfig(),
    ).state
    context = ctx(state)
    assert holds("{trait: role, op: not_exists}", context)
    assert holds("{trait: plan, op: not_exists}", context)
    assert not holds("{trait: role, op: eq, value: admin}", context)
    assert holds("{trait: plan, op: ne, value: pro}", context)


def test_a_trait_line_shows_the_trait_value() -> None:
    state = build([traits_record("t1", T0, {"plan": "pro"})])
    verdict = evaluate(cond("{trait: plan, op: eq, value: pro}"), ctx(state))
    assert verdict.lines == ["trait.plan = 'pro' eq 'pro': true"]


# --- count --------------------------------------------------------------------------------------

VIEWED_A = ("Product Viewed", "[{property: product_id, op: eq, value: A}]")
PRICING = ("Page Viewed", "[{property: path, op: eq, value: /pricing}]")
COUNT_A = """
count: {event: Product Viewed, where: [{property: product_id, op: eq, value: A}], within: 7d}
op: gte
value: 1
"""


def test_a_filtered_count_counts_only_the_matching_events_in_its_window() -> None:
    state = build(
        [
            track("e1", T0 - 10 * DAY_MS, "Product Viewed", product_id="A"),  # outside 7d
            track("e2", T0 - 2 * DAY_MS, "Product Viewed", product_id="A"),
            track("e3", T0 - DAY_MS, "Product Viewed", product_id="B"),
            track("e4", T0, "Product Viewed", product_id="A"),
        ],
        counting(VIEWED_A),
    )
    verdict = evaluate(cond(COUNT_A), ctx(state))
    assert verdict == Verdict(
        True, ["count(Product Viewed where product_id eq 'A', 7d) = 2 gte 1: true"]
    )


def test_an_unfiltered_count_counts_every_event_of_that_name() -> None:
    state = build(
        [
            track("e1", T0 - DAY_MS, "Product Viewed", product_id="A"),
            track("e2", T0, "Product Viewed", product_id="B"),
        ]
    )
    verdict = evaluate(
        cond("{count: {event: Product Viewed, within: 7d}, op: eq, value: 2}"), ctx(state)
    )
    assert verdict.lines == ["count(Product Viewed, 7d) = 2 eq 2: true"]


def test_a_count_of_an_event_never_seen_is_zero() -> None:
    verdict = evaluate(
        cond("{count: {event: Order Completed, within: 30d}, op: eq, value: 0}"), ctx()
    )
    assert verdict == Verdict(True, ["count(Order Completed, 30d) = 0 eq 0: true"])


def test_a_filtered_count_without_its_counter_kept_is_zero() -> None:
    state = build([track("e1", T0, "Product Viewed", product_id="A")])  # no CounterSpec
    assert not holds(COUNT_A, ctx(state))


def test_the_pricing_count_reaches_three_on_the_third_view_within_a_day() -> None:
    rule = """
    count: {event: Page Viewed, where: [{property: path, op: eq, value: /pricing}], within: 1d}
    op: gte
    value: 3
    """
    config = counting(PRICING)
    records = [
        page("p1", T0, "/pricing"),
        page("p2", T0 + HOUR_MS, "/docs"),
        page("p3", T0 + 2 * HOUR_MS, "/pricing"),
        page("p4", T0 + 3 * HOUR_MS, "/pricing"),
    ]
    results = []
    state: UserState | None = None
    for record in records:
        state = apply_record(state, record, config).state
        results.append(evaluate(cond(rule), ctx(state, now=record["ts"])).ok)
    assert results == [False, False, False, True]


def test_views_older_than_the_window_stop_counting() -> None:
    config = counting(PRICING)
    state = build([page("p1", T0, "/pricing"), page("p2", T0 + 1, "/pricing")], config)
    rule = """
    count: {event: Page Viewed, where: [{property: path, op: eq, value: /pricing}], within: 1d}
    op: eq
    value: 2
    """
    assert holds(rule, ctx(state, now=T0 + HOUR_MS))
    assert not holds(rule, ctx(state, now=T0 + 3 * DAY_MS))


@pytest.mark.parametrize(("op", "value", "expected"), [("lt", 3, True), ("gt", 2, False)])
def test_a_count_compares_with_any_compare_op(op: str, value: int, expected: bool) -> None:
    state = build([track(f"e{i}", T0 + i, "Clicked") for i in range(2)])
    text = f"{{count: {{event: Clicked, within: 1h}}, op: {op}, value: {value}}}"
    assert holds(text, ctx(state, now=T0 + 10)) is expected


# --- first_seen, last_seen, new_visitor ---------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "age", "expected"),
    [
        ("{within: 7d}", 7 * DAY_MS, True),
        ("{within: 7d}", 7 * DAY_MS + 1, False),
        ("{older_than: 30d}", 30 * DAY_MS + 1, True),
        ("{older_than: 30d}", 30 * DAY_MS, False),
        ("{within: 1h}", 0, True),
    ],
)
def test_first_seen_is_measured_back_from_the_causing_event(
    spec: str, age: int, expected: bool
) -> None:
    state = build([track("e1", T0 - age, "Signed Up")])
    verdict = evaluate(cond(f"first_seen: {spec}"), ctx(state, now=T0))
    assert verdict.ok is expected
    bound = yaml.safe_load(spec)
    label = (
        f"within {bound['within']}" if "within" in bound else f"older than {bound['older_than']}"
    )
    assert verdict.lines == [f"first_seen {label}: {'true' if expected else 'false'}"]


def test_first_seen_of_a_user_never_seen_is_false_either_way() -> None:
    state = new_state(USER)
    assert evaluate(cond("first_seen: {within: 1d}"), ctx(state)) == Verdict(
        False, ["first_seen = never: false"]
    )
    assert not holds("first_seen: {older_than: 1d}", ctx(state))


@pytest.mark.parametrize(
    ("spec", "previous", "expected"),
    [
        ("{older_than: 7d}", T0 - 8 * DAY_MS, True),  # came back after more than a week
        ("{older_than: 7d}", T0 - HOUR_MS, False),
        ("{within: 1h}", T0 - HOUR_MS, True),
        ("{within: 1h}", T0 - HOUR_MS - 1, False),
    ],
)
def test_last_seen_is_the_previous_activity_before_the_causing_event(
    spec: str, previous: int, expected: bool
) -> None:
    # The state already holds the causing event (last_seen == now): only previous_seen_ms counts.
    state = build([track("e0", previous, "Clicked"), track("e1", T0, "Clicked")])
    assert state["last_seen"] == T0
    assert holds(f"last_seen: {spec}", ctx(state, now=T0, previous_seen=previous)) is expected


def test_last_seen_of_a_first_event_is_never() -> None:
    state = build([track("e1", T0, "Clicked")])
    verdict = evaluate(cond("last_seen: {older_than: 7d}"), ctx(state, previous_seen=None))
    assert verdict == Verdict(False, ["previous activity = never: false"])


@pytest.mark.parametrize(
    ("first_age", "is_new"),
    [(0, True), (NEW_VISITOR_MS, True), (NEW_VISITOR_MS + 1, False), (DAY_MS, False)],
)
def test_a_new_visitor_was_first_seen_at_most_30_minutes_before(
    first_age: int, is_new: bool
) -> None:
    assert NEW_VISITOR_MS == 30 * MINUTE_MS
    state = build([track("e0", T0 - first_age, "Clicked"), track("e1", T0, "Clicked")])
    context = ctx(state, now=T0)
    assert holds("new_visitor: true", context) is is_new
    assert holds("new_visitor: false", context) is not is_new
    shown = "yes" if is_new else "no"
    verdict = evaluate(cond("new_visitor: true"), context)
    assert verdict.lines == [f"new visitor = {shown}: {'true' if is_new else 'false'}"]


def test_a_user_never_seen_is_not_a_new_visitor() -> None:
    assert not holds("new_visitor: true", ctx(new_state(USER)))
    assert holds("new_visitor: false", ctx(new_state(USER)))


# --- score --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{op: gte, value: 50}", True),
        ("{op: gte, value: 50.01}", False),
        ("{op: gt, value: 49.99}", True),
        ("{op: lt, value: 50}", False),
        ("{op: lte, value: 50}", True),
        ("{op: eq, value: 50}", True),
        ("{op: ne, value: 50}", False),
    ],
)
def test_a_score_compares_the_decayed_score_of_the_context(text: str, expected: bool) -> None:
    assert holds(f"score: {text}", ctx(score=50.0)) is expected


def test_a_score_line_shows_the_score_rounded() -> None:
    verdict = evaluate(cond("score: {op: gte, value: 10}"), ctx(score=12.3456))
    assert verdict.lines == ["score = 12.35 gte 10: true"]


@pytest.mark.parametrize(
    ("previous", "now", "expected"),
    [
        (25.0, 15.0, True),  # crossed below 20
        (20.0, 19.99, True),  # was exactly at the threshold
        (25.0, 20.0, False),  # still at the threshold
        (19.0, 10.0, False),  # was already below
        (10.0, 30.0, False),  # went up
        (None, 5.0, False),  # no previous score
    ],
)
def test_dropped_below_holds_when_the_score_crosses_the_threshold(
    previous: float | None, now: float, expected: bool
) -> None:
    context = ctx(score=now, previous_score=previous)
    assert holds("score: {dropped_below: 20}", context) is expected


def test_a_dropped_below_line_shows_both_scores() -> None:
    verdict = evaluate(cond("score: {dropped_below: 20}"), ctx(score=12.5, previous_score=24))
    assert verdict.lines == ["score dropped from 24 to 12.5 below 20: true"]
    first = evaluate(cond("score: {dropped_below: 20}"), ctx(score=12.5))
    assert first.lines == ["score dropped from none to 12.5 below 20: false"]


# --- segment ------------------------------------------------------------------------------------


def test_a_segment_holds_when_its_condition_tree_holds() -> None:
    state = build([traits_record("t1", T0, {"plan": "enterprise"})])
    segments = {"enterprise": "{trait: plan, op: eq, value: enterprise}"}
    verdict = evaluate(cond("segment: enterprise"), ctx(state, segments=segments))
    assert verdict == Verdict(True, ["segment enterprise: true"])
    free = build([traits_record("t1", T0, {"plan": "free"})])
    assert evaluate(cond("segment: enterprise"), ctx(free, segments=segments)) == Verdict(
        False, ["segment enterprise: false"]
    )


def test_segments_may_refer_to_other_segments() -> None:
    state = build([traits_record("t1", T0, {"plan": "enterprise", "role": "admin"})])
    segments = {
        "enterprise": "{trait: plan, op: eq, value: enterprise}",
        "admins": "{trait: role, op: eq, value: admin}",
        "enterprise_admins": "{all: [{segment: enterprise}, {segment: admins}]}",
    }
    assert holds("segment: enterprise_admins", ctx(state, segments=segments))
    member = build([traits_record("t1", T0, {"plan": "enterprise", "role": "member"})])
    assert not holds("segment: enterprise_admins", ctx(member, segments=segments))


# --- all / any / not ----------------------------------------------------------------------------

YES = "{property: plan, op: eq, value: pro}"
NO = "{property: plan, op: eq, value: free}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"all: [{YES}, {YES}]", True),
        (f"all: [{YES}, {NO}]", False),
        (f"any: [{NO}, {YES}]", True),
        (f"any: [{NO}, {NO}]", False),
        (f"not: {NO}", True),
        (f"not: {YES}", False),
        (f"all: [{YES}, {{any: [{NO}, {{not: {NO}}}]}}]", True),
        (f"not: {{all: [{YES}, {NO}]}}", True),
    ],
)
def test_all_any_and_not_compose_conditions(text: str, expected: bool) -> None:
    assert holds(text, ctx(properties={"plan": "pro"})) is expected


def test_composite_conditions_explain_every_leaf_in_order() -> None:
    text = f"all: [{YES}, {{any: [{NO}, {{not: {NO}}}]}}]"
    verdict = evaluate(cond(text), ctx(properties={"plan": "pro"}))
    assert verdict.lines == [
        "event.plan = 'pro' eq 'pro': true",
        "event.plan = 'pro' eq 'free': false",
        "not (event.plan = 'pro' eq 'free': false)",
    ]


def test_a_rule_like_tree_explains_counts_traits_and_segments_together() -> None:
    config = counting(VIEWED_A)
    state = build(
        [
            traits_record("t1", T0 - DAY_MS, {"plan": "free"}),
            track("e1", T0 - DAY_MS, "Product Viewed", product_id="A"),
            track("e2", T0, "Product Viewed", product_id="A"),
        ],
        config,
    )
    text = """
    all:
      - count:
          event: Product Viewed
          where: [{property: product_id, op: eq, value: A}]
          within: 7d
        op: gte
        value: 1
      - not: {segment: paying}
    """
    segments = {"paying": "{trait: plan, op: in, value: [pro, enterprise]}"}
    verdict = evaluate(cond(text), ctx(state, now=T0, segments=segments))
    assert verdict == Verdict(
        True,
        [
            "count(Product Viewed where product_id eq 'A', 7d) = 2 gte 1: true",
            "not (segment paying: false)",
        ],
    )
