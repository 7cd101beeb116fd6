"""Specifications of engine.rules: compile a rule set, then decide per record what to publish."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from engine.clock import DAY_MS, HOUR_MS, MINUTE_MS, iso
from engine.profile import UserState
from engine.records import EventRecord, TraitsRecord, UserRecord
from engine.rules import (
    RENDER_FAILED,
    Outcome,
    RuleBook,
    RuleSetError,
    compile_rulebook,
    entry_name,
    process,
    trigger_id,
)
from schemas.rules import Rule, RuleFile
from schemas.triggers import Trigger

T0 = 1_714_557_600_000  # 2024-05-01T10:00:00.000Z
USER = "u1"


# --- builders -----------------------------------------------------------------------------------


def rule_file(text: str) -> RuleFile:
    return RuleFile.model_validate(yaml.safe_load(text))


def book(*texts: str) -> RuleBook:
    return compile_rulebook([rule_file(text) for text in texts])


def call(rid: str, ts: int, kind: str, user: str = USER, **fields: Any) -> EventRecord:
    event = {"type": kind, "userId": user, "messageId": rid, **fields}
    return {"kind": "event", "key": user, "id": rid, "ts": ts, "ingested": ts, "event": event}


def track(rid: str, ts: int, name: str, /, user: str = USER, **props: Any) -> EventRecord:
    return call(rid, ts, "track", user, event=name, properties=props)


def page(rid: str, ts: int, path: str = "/", **fields: Any) -> EventRecord:
    return call(rid, ts, "page", properties={"path": path}, **fields)


def identify(rid: str, ts: int, **traits: Any) -> EventRecord:
    return call(rid, ts, "identify", traits=traits)


def traits(rid: str, ts: int, values: dict[str, Any], source: str = "hubspot") -> TraitsRecord:
    return {
        "kind": "traits",
        "key": USER,
        "id": rid,
        "ts": ts,
        "ingested": ts,
        "source": source,
        "set": values,
        "unset": [],
        "origin": "crm",
    }


def run(
    rules: RuleBook, records: list[UserRecord], state: UserState | None = None
) -> list[Outcome]:
    """Process records in turn for one user, threading the state."""
    outcomes = []
    for record in records:
        outcome = process(state, record, rules)
        state = outcome.state
        outcomes.append(outcome)
    return outcomes


def fired(outcome: Outcome) -> list[str]:
    return [t["data"]["rule_id"] for t in outcome.triggers]


def suppressed(outcome: Outcome) -> list[tuple[str, str]]:
    return [(s.rule_id, s.reason) for s in outcome.suppressed]


def simple_rule(rid: str, event: str, channel: str = "in_app", **extra: Any) -> dict[str, Any]:
    return {"id": rid, "when": {"event": event}, "then": {"type": rid, "channel": channel}, **extra}


def book_of(*rules: dict[str, Any], **top: Any) -> RuleBook:
    return book(yaml.safe_dump({"rules": list(rules), **top}))


# --- entry: which rules an event evaluates -------------------------------------------------------


def test_only_rules_whose_entry_event_matches_are_candidates() -> None:
    rules = book_of(
        simple_rule("on_view", "Product Viewed"),
        simple_rule("on_order", "Order Completed"),
        simple_rule("on_any", "*"),
    )
    assert [c.rule.id for c in rules.candidates("Product Viewed", True)] == ["on_view", "on_any"]
    assert [c.rule.id for c in rules.candidates("Signed Up", True)] == ["on_any"]
    assert [c.rule.id for c in rules.candidates("Identify", False)] == []


def test_a_rule_fires_only_on_its_entry_event() -> None:
    rules = book_of(simple_rule("on_view", "Product Viewed"))
    assert fired(process(None, track("e1", T0, "Clicked"), rules)) == []
    assert fired(process(None, track("e2", T0, "Product Viewed"), rules)) == ["on_view"]


def test_a_rule_may_list_several_entry_events() -> None:
    rules = book_of(
        {
            "id": "admin",
            "when": {"event": ["Traits Updated", "Identify"]},
            "if": {"trait": "role", "op": "eq", "value": "admin"},
            "then": {"type": "admin", "channel": "email"},
        }
    )
    assert fired(process(None, identify("i1", T0, role="admin"), rules)) == ["admin"]
    assert fired(process(None, traits("t1", T0, {"role": "admin"}), rules)) == ["admin"]


@pytest.mark.parametrize(
    "record",
    [
        track("e1", T0, "Clicked"),
        page("p1", T0, "/home"),
        call("s1", T0, "screen", name="Cart"),
    ],
)
def test_the_any_entry_matches_every_behavioural_event(record: EventRecord) -> None:
    rules = book_of(simple_rule("any", "*"))
    assert fired(process(None, record, rules)) == ["any"]


@pytest.mark.parametrize(
    "record",
    [
        identify("i1", T0, plan="pro"),
        call("g1", T0, "group", groupId="acme"),
        call("a1", T0, "alias", previousId="x"),
        traits("t1", T0, {"plan": "pro"}),
    ],
)
def test_the_any_entry_does_not_match_identify_group_alias_or_traits(record: UserRecord) -> None:
    rules = book_of(simple_rule("any", "*"))
    assert fired(process(None, record, rules)) == []


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (track("e1", T0, "Clicked"), ("Clicked", True)),
        (page("p1", T0), ("Page Viewed", True)),
        (call("s1", T0, "screen"), ("Screen Viewed", True)),
        (identify("i1", T0), ("Identify", False)),
        (call("g1", T0, "group"), ("Group", False)),
        (call("a1", T0, "alias"), ("Alias", False)),
        (traits("t1", T0, {}), ("Traits Updated", False)),
        (call("x1", T0, "track"), (None, False)),  # a track without an event name
        ({"kind": "merge", "key": "anon:a", "id": "m", "into": USER}, (None, False)),
    ],
)
def test_entry_names_of_records(record: UserRecord, expected: tuple[str | None, bool]) -> None:
    assert entry_name(record) == expected


def test_entry_where_filters_the_causing_events_properties() -> None:
    rules = book_of(
        {
            **simple_rule("pricing", "Page Viewed"),
            "when": {"event": "Page Viewed", "where": [{"property": "path", "value": "/pricing"}]},
        }
    )
    assert fired(process(None, page("p1", T0, "/docs"), rules)) == []
    assert fired(process(None, page("p2", T0, "/pricing"), rules)) == ["pricing"]


def test_entry_where_sees_a_pages_name_and_category_as_properties() -> None:
    rules = book_of(
        {
            **simple_rule("docs", "Page Viewed"),
            "when": {"event": "Page Viewed", "where": [{"property": "category", "value": "Docs"}]},
        }
    )
    assert fired(process(None, page("p1", T0, category="Docs"), rules)) == ["docs"]


def test_a_rule_without_if_fires_on_its_entry_and_says_so() -> None:
    rules = book_of(simple_rule("welcome", "Signed Up"))
    (trigger,) = process(None, track("e1", T0, "Signed Up"), rules).triggers
    explanation = trigger["data"]["explanation"]
    assert explanation["conditions"] == []
    assert explanation["summary"] == "Signed Up (no conditions)"


def test_a_disabled_rule_never_fires() -> None:
    rules = book_of({**simple_rule("off", "Signed Up"), "enabled": False})
    assert process(None, track("e1", T0, "Signed Up"), rules).triggers == []
    assert rules.candidates("Signed Up", True) == []


def test_a_rule_whose_conditions_fail_publishes_and_suppresses_nothing() -> None:
    rules = book_of(
        {**simple_rule("pro", "Clicked"), "if": {"property": "plan", "value": "pro"}},
    )
    outcome = process(None, track("e1", T0, "Clicked", plan="free"), rules)
    assert (outcome.triggers, outcome.suppressed) == ([], [])


def test_the_state_is_updated_even_when_no_rule_fires() -> None:
    outcome = process(None, track("e1", T0, "Clicked"), book_of(simple_rule("x", "Other")))
    assert outcome.state["events"] == 1
    assert outcome.state["last_seen"] == T0


# --- conditions through process -----------------------------------------------------------------

PRICING = """
rules:
  - id: pricing_tooltip
    when:
      event: Page Viewed
      where: [{property: path, op: eq, value: /pricing}]
    if:
      count:
        event: Page Viewed
        where: [{property: path, op: eq, value: /pricing}]
        within: 1d
      op: gte
      value: 3
    then: {type: pricing_tooltip, channel: in_app}
"""


def test_a_filtered_count_in_a_rule_is_kept_and_reaches_three_on_the_third_view() -> None:
    rules = book(PRICING)
    assert [spec.event for spec in rules.profile.counters] == ["Page Viewed"]
    outcomes = run(
        rules,
        [
            page("p1", T0, "/pricing"),
            page("p2", T0 + HOUR_MS, "/docs"),
            page("p3", T0 + 2 * HOUR_MS, "/pricing"),
            page("p4", T0 + 3 * HOUR_MS, "/pricing"),
        ],
    )
    assert [fired(o) for o in outcomes] == [[], [], [], ["pricing_tooltip"]]
    explanation = outcomes[-1].triggers[0]["data"]["explanation"]
    assert explanation["conditions"] == [
        "count(Page Viewed where path eq '/pricing', 1d) = 3 gte 3: true"
    ]


def test_counters_are_kept_for_counts_inside_segments_too() -> None:
    rules = book(
        """
        segments:
          - id: viewed_a
            if:
              count: {event: Product Viewed, where: [{property: product_id, value: A}], within: 7d}
              op: gte
              value: 2
        rules:
          - id: offer
            when: {event: Product Viewed}
            if: {segment: viewed_a}
            then: {type: offer, channel: email}
        """
    )
    outcomes = run(
        rules,
        [
            track("e1", T0, "Product Viewed", product_id="A"),
            track("e2", T0 + 1, "Product Viewed", product_id="B"),
            track("e3", T0 + 2, "Product Viewed", product_id="A"),
        ],
    )
    assert [fired(o) for o in outcomes] == [[], [], ["offer"]]
    assert outcomes[-1].triggers[0]["data"]["explanation"]["conditions"] == [
        "segment viewed_a: true"
    ]


def test_last_seen_is_the_activity_before_the_causing_event() -> None:
    rules = book_of(
        {**simple_rule("welcome_back", "Clicked"), "if": {"last_seen": {"older_than": "7d"}}}
    )
    outcomes = run(
        rules,
        [
            track("e1", T0, "Clicked"),
            track("e2", T0 + DAY_MS, "Clicked"),
            track("e3", T0 + 9 * DAY_MS, "Clicked"),
        ],
    )
    assert [fired(o) for o in outcomes] == [[], [], ["welcome_back"]]


def test_a_new_visitor_is_new_for_30_minutes_after_the_first_event() -> None:
    rules = book_of({**simple_rule("tour", "Page Viewed"), "if": {"new_visitor": True}})
    outcomes = run(
        rules, [page("p1", T0), page("p2", T0 + 30 * MINUTE_MS), page("p3", T0 + HOUR_MS)]
    )
    assert [fired(o) for o in outcomes] == [["tour"], ["tour"], []]


SCORING = """
engagement_score:
  half_life: 7d
  weights:
    - {event: Order Completed, weight: 20}
    - {event: Page Viewed, weight: 1}
"""


def test_score_conditions_see_the_score_decayed_to_the_causing_event() -> None:
    rules = book(
        SCORING,
        yaml.safe_dump(
            {"rules": [{**simple_rule("vip", "*"), "if": {"score": {"op": "gte", "value": 15}}}]}
        ),
    )
    outcomes = run(
        rules,
        [
            track("o1", T0, "Order Completed"),
            page("p1", T0 + 7 * DAY_MS),  # 20 halves to 10, plus 1
        ],
    )
    assert [fired(o) for o in outcomes] == [["vip"], []]
    assert outcomes[0].triggers[0]["data"]["explanation"]["engagement_score"] == 20.0


DROPPED = (
    SCORING
    + """
rules:
  - id: reengage
    when: {event: "*"}
    if: {score: {dropped_below: 6}}
    then: {type: reengage, channel: email}
"""
)


def test_dropped_below_fires_when_the_score_has_decayed_below_the_threshold() -> None:
    outcomes = run(
        book(DROPPED),
        [track("o1", T0, "Order Completed"), track("c1", T0 + 14 * DAY_MS, "Clicked")],
    )
    assert [fired(o) for o in outcomes] == [[], ["reengage"]]
    assert outcomes[1].triggers[0]["data"]["explanation"]["conditions"] == [
        "score dropped from 20 to 5 below 6: true"
    ]


def test_dropped_below_fires_once_on_the_crossing_not_again_while_still_below() -> None:
    outcomes = run(
        book(DROPPED),
        [
            track("o1", T0, "Order Completed"),  # 20
            track("c1", T0 + 14 * DAY_MS, "Clicked"),  # 5: crossed below 6
            track("c2", T0 + 21 * DAY_MS, "Clicked"),  # 2.5: was already below at c1
        ],
    )
    assert [fired(o) for o in outcomes] == [[], ["reengage"], []]


def test_without_a_score_setup_the_score_is_zero_and_dropped_below_never_holds() -> None:
    rules = book_of({**simple_rule("r", "*"), "if": {"score": {"dropped_below": 1}}})
    outcomes = run(rules, [track("e1", T0, "Clicked"), track("e2", T0 + DAY_MS, "Clicked")])
    assert [fired(o) for o in outcomes] == [[], []]


# --- priorities, cooldowns and caps -------------------------------------------------------------


def test_the_higher_priority_rule_wins_a_channel_and_the_lower_is_suppressed() -> None:
    rules = book_of(
        {**simple_rule("low", "Clicked", "email"), "priority": 1},
        {**simple_rule("high", "Clicked", "email"), "priority": 10},
        {**simple_rule("push", "Clicked", "push"), "priority": 0},
    )
    outcome = process(None, track("e1", T0, "Clicked"), rules)
    assert fired(outcome) == ["high", "push"]
    assert suppressed(outcome) == [("low", "lower_priority")]
    (lost,) = outcome.suppressed
    assert (lost.channel, lost.type, lost.user_id, lost.time) == ("email", "low", USER, iso(T0))
    assert lost.trigger_id == trigger_id(
        Rule.model_validate(simple_rule("low", "Clicked")), USER, "e1"
    )


def test_rules_of_equal_priority_are_ordered_by_id() -> None:
    rules = book_of(simple_rule("zeta", "Clicked"), simple_rule("alpha", "Clicked"))
    outcome = process(None, track("e1", T0, "Clicked"), rules)
    assert fired(outcome) == ["alpha"]
    assert suppressed(outcome) == [("zeta", "lower_priority")]


def test_per_event_allows_several_triggers_per_channel_by_priority() -> None:
    rules = book_of(
        {**simple_rule("a", "Clicked"), "priority": 3},
        {**simple_rule("b", "Clicked"), "priority": 2},
        {**simple_rule("c", "Clicked"), "priority": 1},
        contact_policy={"per_event": 2},
    )
    outcome = process(None, track("e1", T0, "Clicked"), rules)
    assert fired(outcome) == ["a", "b"]
    assert suppressed(outcome) == [("c", "lower_priority")]


def test_a_cooldown_suppresses_the_second_trigger_until_it_ends() -> None:
    rules = book_of(
        {
            **simple_rule("nudge", "Clicked"),
            "then": {"type": "nudge", "channel": "in_app", "cooldown": "1d"},
        }
    )
    outcomes = run(
        rules,
        [
            track("e1", T0, "Clicked"),
            track("e2", T0 + HOUR_MS, "Clicked"),
            track("e3", T0 + DAY_MS, "Clicked"),
        ],
    )
    assert [fired(o) for o in outcomes] == [["nudge"], [], ["nudge"]]
    assert suppressed(outcomes[1]) == [("nudge", "cooldown")]
    assert outcomes[-1].state["fired"] == {"nudge": T0 + DAY_MS}


def test_a_higher_priority_rule_in_cooldown_leaves_the_channel_to_the_next() -> None:
    rules = book_of(
        {
            **simple_rule("high", "Clicked"),
            "priority": 5,
            "then": {"type": "high", "channel": "in_app", "cooldown": "1d"},
        },
        simple_rule("low", "Clicked"),
    )
    outcomes = run(rules, [track("e1", T0, "Clicked"), track("e2", T0 + 1, "Clicked")])
    assert fired(outcomes[0]) == ["high"]
    assert fired(outcomes[1]) == ["low"]
    assert suppressed(outcomes[1]) == [("high", "cooldown")]


def test_a_channel_cap_applies_across_rules_and_events() -> None:
    rules = book_of(
        simple_rule("a", "Clicked", "email"),
        simple_rule("b", "Signed Up", "email"),
        simple_rule("c", "Clicked", "push"),
        contact_policy={"caps": [{"channel": "email", "max": 1, "within": "1d"}]},
    )
    outcomes = run(
        rules,
        [
            track("e1", T0, "Clicked"),
            track("e2", T0 + HOUR_MS, "Signed Up"),
            track("e3", T0 + 2 * HOUR_MS, "Clicked"),
            track("e4", T0 + DAY_MS, "Signed Up"),
        ],
    )
    assert [fired(o) for o in outcomes] == [["a", "c"], [], ["c"], ["b"]]
    assert suppressed(outcomes[1]) == [("b", "channel_cap")]
    assert suppressed(outcomes[2]) == [("a", "channel_cap")]


# --- the trigger --------------------------------------------------------------------------------

OFFER = """
rules:
  - id: product_a_discount
    version: 3
    description: Viewed product A → a discount.
    priority: 10
    when:
      event: Product Viewed
      where: [{property: product_id, op: eq, value: A}]
    if:
      all:
        - count:
            event: Product Viewed
            where: [{property: product_id, op: eq, value: A}]
            within: 7d
          op: gte
          value: 1
        - trait: plan
          op: ne
          value: enterprise
    then:
      type: discount_offer
      channel: email
      cooldown: 7d
      content:
        subject: "{{ user.traits.first_name | default: 'Hi' }}, 10% off {{ event.properties.name }}"
        rule: "{{ rule.id }} v{{ rule.version }}: {{ rule.description }}"
        user: "{{ user.id }} score={{ user.score }} events={{ user.events_total }}"
        code: KAIROS10
"""


def offer_outcome(**props: Any) -> Outcome:
    rules = book(SCORING, OFFER)
    state = process(None, identify("i1", T0 - DAY_MS, first_name="Ada", plan="pro"), rules).state
    view = {"product_id": "A", "name": "Lamp", **props}
    return process(state, track("e1", T0, "Product Viewed", **view), rules)


def test_a_trigger_is_a_cloudevents_1_0_event() -> None:
    (trigger,) = offer_outcome().triggers
    parsed = Trigger.model_validate(trigger)
    assert parsed.specversion == "1.0"
    assert parsed.datacontenttype == "application/json"
    assert parsed.source == "/kairos/rules/product_a_discount"
    assert parsed.type == "kairos.trigger.discount_offer"
    assert parsed.subject == USER
    assert parsed.time == iso(T0) == "2024-05-01T10:00:00.000Z"
    assert (parsed.data.rule_id, parsed.data.rule_version) == ("product_a_discount", 3)
    assert (parsed.data.user_id, parsed.data.channel) == (USER, "email")


def test_the_trigger_id_is_a_uuid_derived_from_rule_version_user_and_cause() -> None:
    (trigger,) = offer_outcome().triggers
    assert str(uuid.UUID(trigger["id"])) == trigger["id"]
    rule = rule_file(OFFER).rules[0]
    assert trigger["id"] == trigger_id(rule, USER, "e1")
    assert trigger_id(rule, USER, "e1") == trigger_id(rule, USER, "e1")
    assert trigger_id(rule, USER, "e2") != trigger["id"]
    assert trigger_id(rule, "u2", "e1") != trigger["id"]
    newer = rule.model_copy(update={"version": 4})
    assert trigger_id(newer, USER, "e1") != trigger["id"]


def test_the_same_state_and_record_give_the_same_trigger_id_and_state() -> None:
    rules = book(SCORING, OFFER)
    state = process(None, identify("i1", T0 - DAY_MS, plan="pro"), rules).state
    record = track("e1", T0, "Product Viewed", product_id="A", name="Lamp")
    first = process(copy.deepcopy(state), record, rules)
    second = process(copy.deepcopy(state), record, rules)
    assert first.triggers == second.triggers
    assert first.state == second.state


def test_a_new_rule_version_gives_a_new_trigger_id() -> None:
    record = track("e1", T0, "Product Viewed", product_id="A", name="Lamp")
    v3 = process(None, record, book(OFFER)).triggers[0]["id"]
    v4 = process(None, record, book(OFFER.replace("version: 3", "version: 4"))).triggers[0]["id"]
    assert v3 != v4


def test_the_explanation_lists_conditions_with_values_score_and_version() -> None:
    (trigger,) = offer_outcome().triggers
    explanation = trigger["data"]["explanation"]
    lines = [
        "count(Product Viewed where product_id eq 'A', 7d) = 1 gte 1: true",
        "trait.plan = 'pro' ne 'enterprise': true",
    ]
    assert explanation == {
        "summary": " and ".join(lines),
        "conditions": lines,
        "engagement_score": 0.0,
        "rule_version": 3,
        "cause": {"id": "e1", "event": "Product Viewed"},
        "content_source": "content",
    }


def test_the_explanation_shows_the_score_at_the_causing_event() -> None:
    rules = book(SCORING, OFFER)
    outcomes = run(
        rules,
        [
            track("o1", T0 - 7 * DAY_MS, "Order Completed"),
            track("e1", T0, "Product Viewed", product_id="A", name="Lamp"),
        ],
    )
    assert outcomes[-1].triggers[0]["data"]["explanation"]["engagement_score"] == 10.0


def test_content_is_rendered_with_user_event_and_rule_in_scope() -> None:
    (trigger,) = offer_outcome().triggers
    assert trigger["data"]["content"] == {
        "subject": "Ada, 10% off Lamp",
        "rule": "product_a_discount v3: Viewed product A → a discount.",
        "user": "u1 score=0.0 events=1",
        "code": "KAIROS10",
    }


def test_a_default_filter_covers_a_missing_trait() -> None:
    rules = book(OFFER)
    (trigger,) = process(
        None, track("e1", T0, "Product Viewed", product_id="A", name="Lamp"), rules
    ).triggers
    assert trigger["data"]["content"]["subject"] == "Hi, 10% off Lamp"


FALLBACK = """
rules:
  - id: greet
    when: {event: Clicked}
    then:
      type: greet
      channel: push
      cooldown: 1d
      content:
        title: "Hi {{ user.traits.first_name }}"
        body: "About {{ event.properties.topic | default: 'us' }}"
      fallback:
        title: Hi there
        body: "About {{ event.properties.topic | default: 'us' }}"
"""


def test_a_missing_value_without_default_falls_back_to_the_fallback_content() -> None:
    outcome = process(None, track("e1", T0, "Clicked", topic="pricing"), book(FALLBACK))
    (trigger,) = outcome.triggers
    assert trigger["data"]["content"] == {"title": "Hi there", "body": "About pricing"}
    source = trigger["data"]["explanation"]["content_source"]
    assert source.startswith("fallback")
    assert "content.title" in source
    assert outcome.render_fallbacks == 1
    Trigger.model_validate(trigger)


def test_the_content_is_used_when_it_renders() -> None:
    state = process(None, identify("i1", T0 - 1, first_name="Ada"), book(FALLBACK)).state
    outcome = process(state, track("e1", T0, "Clicked"), book(FALLBACK))
    assert outcome.triggers[0]["data"]["content"] == {"title": "Hi Ada", "body": "About us"}
    assert outcome.triggers[0]["data"]["explanation"]["content_source"] == "content"
    assert outcome.render_fallbacks == 0


NO_FALLBACK = """
rules:
  - id: greet
    priority: 5
    when: {event: Clicked}
    then:
      type: greet
      channel: push
      cooldown: 1d
      content: {title: "Hi {{ user.traits.first_name }}"}
  - id: generic
    when: {event: Clicked}
    then: {type: generic, channel: push, content: {title: Hello}}
"""


def test_without_fallback_a_failed_render_is_suppressed_and_uses_no_cooldown_or_budget() -> None:
    rules = book(NO_FALLBACK)
    first = process(None, track("e1", T0, "Clicked"), rules)
    assert suppressed(first) == [("greet", RENDER_FAILED)]
    assert fired(first) == ["generic"]  # the failed render left the push budget
    assert first.state["fired"] == {"generic": T0}
    later = run(
        rules,
        [
            identify("i1", T0 + MINUTE_MS, first_name="Ada"),
            track("e2", T0 + 2 * MINUTE_MS, "Clicked"),  # within greet's 1d cooldown
        ],
        first.state,
    )
    assert fired(later[1]) == ["greet"]
    assert suppressed(later[1]) == [("generic", "lower_priority")]


def test_a_fallback_that_also_fails_suppresses_the_trigger() -> None:
    text = FALLBACK.replace("title: Hi there", 'title: "{{ user.traits.last_name }}"')
    outcome = process(None, track("e1", T0, "Clicked"), book(text))
    assert outcome.triggers == []
    assert suppressed(outcome) == [("greet", RENDER_FAILED)]
    assert outcome.render_fallbacks == 0


# --- records ------------------------------------------------------------------------------------


def test_a_duplicate_record_produces_no_second_trigger() -> None:
    rules = book_of(simple_rule("any", "*"))
    record = track("e1", T0, "Clicked")
    first, again = run(rules, [record, copy.deepcopy(record)])
    assert fired(first) == ["any"]
    assert again.applied.duplicate
    assert (again.triggers, again.suppressed) == ([], [])
    assert again.state["events"] == 1


def test_traits_updated_fires_on_traits_records_with_the_set_traits_as_properties() -> None:
    rules = book(
        """
        rules:
          - id: became_admin
            when:
              event: Traits Updated
              where: [{property: role, op: eq, value: admin}]
            if: {trait: role, op: eq, value: admin}
            then:
              type: admin_onboarding
              channel: email
              content: {subject: "{{ event.source }}: {{ event.properties.role }}"}
        """
    )
    outcomes = run(
        rules,
        [traits("t1", T0, {"role": "member"}), traits("t2", T0 + 1, {"role": "admin"})],
    )
    assert [fired(o) for o in outcomes] == [[], ["became_admin"]]
    trigger = outcomes[1].triggers[0]
    assert trigger["data"]["content"] == {"subject": "hubspot: admin"}
    assert trigger["data"]["explanation"]["cause"] == {"id": "t2", "event": "Traits Updated"}
    assert trigger["data"]["explanation"]["conditions"] == ["trait.role = 'admin' eq 'admin': true"]


def test_a_traits_rule_does_not_fire_on_behavioural_events() -> None:
    rules = book_of(simple_rule("crm", "Traits Updated"))
    assert fired(process(None, track("e1", T0, "Clicked"), rules)) == []
    assert fired(process(None, identify("i1", T0, plan="pro"), rules)) == []


def test_records_for_a_merged_profile_are_forwarded_not_evaluated() -> None:
    rules = book_of(simple_rule("any", "*"))
    redirect: UserState = {"key": "anon:a1", "merged_into": USER}
    record = track("e1", T0, "Clicked", user="anon:a1")
    outcome = process(redirect, record, rules)
    assert outcome.triggers == []
    assert [r["key"] for r in outcome.applied.forward] == [USER]


# --- compile_rulebook ---------------------------------------------------------------------------


def problems(*texts: str) -> list[str]:
    with pytest.raises(RuleSetError) as caught:
        book(*texts)
    return str(caught.value).splitlines()


def test_duplicate_rule_ids_are_a_problem_even_across_files() -> None:
    one = yaml.safe_dump({"rules": [simple_rule("r1", "A")]})
    assert problems(one, one) == ["rule r1: declared more than once"]


def test_an_unknown_segment_is_a_problem() -> None:
    text = yaml.safe_dump(
        {"rules": [{**simple_rule("r1", "A"), "if": {"not": {"segment": "ghost"}}}]}
    )
    assert problems(text) == ["rule r1: unknown segment 'ghost'"]


def test_an_unknown_segment_inside_a_segment_is_a_problem() -> None:
    text = "segments: [{id: a, if: {any: [{segment: ghost}]}}]"
    assert problems(text) == ["segment a: unknown segment 'ghost'"]


def test_a_segment_cycle_is_a_problem_for_each_segment_in_it() -> None:
    text = """
    segments:
      - {id: a, if: {segment: b}}
      - {id: b, if: {not: {segment: a}}}
      - {id: s, if: {all: [{segment: s}]}}
    """
    assert problems(text) == [
        "segment a: refers to itself through other segments",
        "segment b: refers to itself through other segments",
        "segment s: refers to itself through other segments",
    ]


def test_a_segment_that_only_refers_to_a_cycle_is_not_said_to_refer_to_itself() -> None:
    text = """
    segments:
      - {id: a, if: {segment: b}}
      - {id: b, if: {segment: a}}
      - {id: c, if: {segment: a}}
    """
    assert "segment c: refers to itself through other segments" not in problems(text)


def test_two_engagement_scores_or_contact_policies_are_problems() -> None:
    score = "engagement_score: {half_life: 7d, weights: [{event: A, weight: 1}]}"
    policy = "contact_policy: {per_event: 1}"
    assert problems(score, score, policy, policy) == [
        "engagement_score: declared more than once; keep one",
        "contact_policy: declared more than once; keep one",
    ]


def test_a_template_that_does_not_compile_is_a_problem_of_its_rule() -> None:
    rule = {
        **simple_rule("r1", "A"),
        "then": {"type": "t", "channel": "email", "content": {"x": "{{ a | nope }}"}},
    }
    (problem,) = problems(yaml.safe_dump({"rules": [rule]}))
    assert problem.startswith("rule r1: then.content.x: ")


def test_every_problem_of_a_rule_set_is_listed_one_per_line() -> None:
    text = """
    engagement_score: {half_life: 7d, weights: [{event: A, weight: 1}]}
    segments:
      - {id: a, if: {segment: b}}
      - {id: b, if: {segment: a}}
    rules:
      - {id: r1, when: {event: X}, if: {segment: nope}, then: {type: t, channel: email}}
      - {id: r1, when: {event: X}, then: {type: t, channel: email}}
    """
    score = "engagement_score: {half_life: 1d, weights: [{event: B, weight: 2}]}"
    assert problems(text, score) == [
        "rule r1: declared more than once",
        "engagement_score: declared more than once; keep one",
        "rule r1: unknown segment 'nope'",
        "segment a: refers to itself through other segments",
        "segment b: refers to itself through other segments",
    ]


def test_a_valid_rule_set_compiles_its_score_and_policy() -> None:
    rules = book(
        SCORING,
        "contact_policy: {per_event: 2, caps: [{channel: email, max: 3, within: 1d}]}",
        OFFER,
    )
    assert rules.score_half_life_ms == 7 * DAY_MS
    assert rules.caps.per_event == 2
    assert rules.caps.windows == {"email": [(3, DAY_MS)]}
    assert [r.rule.id for r in rules.rules] == ["product_a_discount"]
    assert rules.rules[0].cooldown_ms == 7 * DAY_MS


def test_a_rule_listing_an_entry_twice_is_evaluated_once_per_event() -> None:
    rules = book_of(
        {**simple_rule("r", "Clicked"), "when": {"event": ["*", "Clicked"]}},
        contact_policy={"per_event": 2},
    )
    outcome = process(None, track("e1", T0, "Clicked"), rules)
    assert len(outcome.triggers) == 1
    assert outcome.suppressed == []


def test_a_zero_half_life_is_refused_when_the_rules_load() -> None:
    text = "engagement_score: {half_life: 0s, weights: [{event: Clicked, weight: 1}]}"
    with pytest.raises((ValidationError, RuleSetError)):
        book(text)
