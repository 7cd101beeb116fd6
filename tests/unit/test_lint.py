"""Specifications of the rule linter: each check finds what it should, and only that."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import orjson
import yaml

from app.rule_files import load_rulebook
from engine.lint import (
    Finding,
    SampleStats,
    check_disabled,
    check_event_names,
    check_missing_values,
    check_scope,
    check_unreachable,
    lint,
    sample_stats,
)
from engine.rules import RuleBook, compile_rulebook
from schemas.rules import RuleFile

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rules"


def book_of(*documents: str) -> RuleBook:
    files = [RuleFile.model_validate(yaml.safe_load(textwrap.dedent(d))) for d in documents]
    return compile_rulebook(files)


def rule(
    when: str = "event: Product Viewed",
    if_: str | None = None,
    content: str = "text: Hello",
    extra: str = "",
    rule_id: str = "r",
    fallback: str | None = None,
) -> str:
    """A rule file with one rule; each argument is YAML for its part."""
    lines = [
        "rules:",
        f"  - id: {rule_id}",
        "    when:",
        textwrap.indent(textwrap.dedent(when).strip(), " " * 6),
    ]
    if if_ is not None:
        lines += ["    if:", textwrap.indent(textwrap.dedent(if_).strip(), " " * 6)]
    lines += [
        "    then:",
        "      type: t",
        "      channel: email",
        "      content:",
        textwrap.indent(textwrap.dedent(content).strip(), " " * 8),
    ]
    if fallback is not None:
        lines += ["      fallback:", textwrap.indent(textwrap.dedent(fallback).strip(), " " * 8)]
    if extra:
        lines.append(textwrap.indent(textwrap.dedent(extra).strip(), " " * 4))
    return "\n".join(lines) + "\n"


def messages(findings: list[Finding]) -> list[str]:
    return [str(f) for f in findings]


def events(*items: dict[str, Any]) -> SampleStats:
    return sample_stats([orjson.dumps(item) for item in items])


def track(name: str, /, **props: Any) -> dict[str, Any]:
    return {"type": "track", "event": name, "properties": props}


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, messages(findings)
    return findings[0]


# --- findings and samples ----------------------------------------------------------------------


def test_a_finding_prints_its_severity_rule_and_message() -> None:
    assert str(Finding("error", "pricing", "if: broken")) == "error: rule pricing: if: broken"
    assert str(Finding("warning", None, "segment s: odd")) == "warning: segment s: odd"


def test_sample_stats_name_events_as_rules_do_and_collect_property_paths() -> None:
    stats = sample_stats(
        [
            orjson.dumps(track("Order Completed", total=3, cart={"items": 2, "coupon": None})),
            b'{"type": "page", "name": "Pricing", "properties": {"path": "/pricing"}}\n',
            b'{"type": "screen", "name": "Home"}',
            b'{"type": "identify", "userId": "u", "traits": {"plan": "pro"}}',
            b'{"batch": [{"type": "group", "groupId": "g"}, {"type": "alias", "userId": "u"}]}',
        ]
    )

    assert stats.event_names == {
        "Order Completed",
        "Page Viewed",
        "Screen Viewed",
        "Identify",
        "Group",
        "Alias",
    }
    assert stats.properties["Order Completed"] == {"total", "cart", "cart.items", "cart.coupon"}
    assert stats.properties["Page Viewed"] == {"path", "name"}


def test_sample_stats_skip_lines_that_are_not_events() -> None:
    stats = sample_stats(
        [b"not json", b"[1, 2]", b'{"batch": [3, {"type": "track"}]}', b'"text"', b"{}"]
    )

    assert stats == SampleStats(frozenset(), {})


# --- 1. scope ----------------------------------------------------------------------------------


def test_a_template_root_other_than_user_event_or_rule_is_an_error() -> None:
    book = book_of(rule(content="text: 'Hi {{ usr.name | default: \"x\" }}'"))

    finding = only(check_scope(book.rules[0], book, None))

    assert finding.severity == "error"
    assert str(finding) == (
        "error: rule r: then.content.text: references `usr.name`, which is not in scope "
        "(user, event, rule); start the path with one of them"
    )


def test_an_unknown_user_key_is_an_error_that_suggests_the_trait() -> None:
    book = book_of(rule(content="text: '{{ user.first_name }} {{ user.scor }}'"))

    findings = check_scope(book.rules[0], book, None)

    assert [f.severity for f in findings] == ["error", "error"]
    assert "did you mean `user.traits.first_name`?" in findings[0].message
    assert "did you mean `user.score`?" in findings[1].message


def test_user_event_and_rule_paths_are_in_scope() -> None:
    content = """
        a: "{{ user.id }} {{ user.score }} {{ user.events_total }} {{ user.first_seen }}"
        b: "{{ rule.id }} v{{ rule.version }} {{ event.type }} {{ event.context.ip }}"
        c: "{% for item in event.properties.items %}{{ item.sku }}{% endfor %}"
    """
    book = book_of(rule(content=content))

    assert check_scope(book.rules[0], book, None) == []


def test_fallback_templates_are_checked_too() -> None:
    book = book_of(rule(fallback="text: '{{ x }}'"))

    finding = only(check_scope(book.rules[0], book, None))

    assert finding.message.startswith("then.fallback.text: references `x`")


# --- 2. values that may be missing -------------------------------------------------------------


def test_an_unguarded_trait_is_a_warning_to_add_a_default() -> None:
    book = book_of(rule(content="text: 'Hi {{ user.traits.first_name }}'"))

    finding = only(check_missing_values(book.rules[0], book, None))

    assert finding.severity == "warning"
    assert finding.message.startswith("then.content.text: `user.traits.first_name` may be missing")
    assert "add a default filter" in finding.message


def test_a_trait_read_in_a_tag_is_a_warning_to_test_for_it_as_tags_take_no_filters() -> None:
    content = "text: '{% if user.traits.vip %}VIP{% endif %}'"
    book = book_of(rule(content=content))

    finding = only(check_missing_values(book.rules[0], book, None))

    assert finding.message == (
        "then.content.text: `user.traits.vip` may be missing (not every user has that trait): "
        "no default filter can go there (tags take no filters): test for it first, "
        'e.g. {% if user.traits contains "vip" %}'
    )


def test_an_event_property_read_in_a_tag_is_a_warning_without_a_default_filter() -> None:
    book = book_of(rule(content="text: '{% for i in event.properties.items %}{{ i }}{% endfor %}'"))

    finding = only(check_missing_values(book.rules[0], book, None))

    assert finding.message == (
        "then.content.text: `event.properties.items` may be missing: add a `when.where` filter "
        "that requires it (op: exists), or no default filter can go there (tags take no "
        'filters): test for it first, e.g. {% if event.properties contains "items" %}'
    )


def test_a_trait_guarded_by_default_or_required_by_the_rule_is_fine() -> None:
    book = book_of(
        rule(
            if_="all: [{trait: plan, op: in, value: [pro, team]}]",
            content="""
                a: "{{ user.traits.first_name | default: 'there' }}"
                b: "{{ user.traits.plan }}"
            """,
        )
    )

    assert check_missing_values(book.rules[0], book, None) == []


def test_an_unguarded_event_property_is_a_warning_without_a_sample() -> None:
    book = book_of(rule(content="text: '{{ event.properties.name }}'"))

    finding = only(check_missing_values(book.rules[0], book, None))

    assert finding.message == (
        "then.content.text: `event.properties.name` may be missing: add a default filter, "
        "or a `when.where` filter that requires it (op: exists)"
    )


def test_an_event_property_the_entry_filters_require_is_fine() -> None:
    when = """
        event: Product Viewed
        where: [{property: product_id, op: eq, value: A}, {property: cart.total, op: gt, value: 1}]
    """
    content = "text: '{{ event.properties.product_id }} {{ event.properties.cart.total }}'"
    book = book_of(rule(when=when, content=content))

    assert check_missing_values(book.rules[0], book, None) == []


def test_a_filter_that_passes_a_missing_property_does_not_guarantee_it() -> None:
    when = """
        event: Product Viewed
        where: [{property: product_id, op: ne, value: A}]
    """
    book = book_of(rule(when=when, content="text: '{{ event.properties.product_id }}'"))

    only(check_missing_values(book.rules[0], book, None))


def test_an_event_property_seen_in_the_sample_is_fine_and_one_never_seen_is_a_warning() -> None:
    content = "text: '{{ event.properties.name }} {{ event.properties.colour }}'"
    book = book_of(rule(content=content))
    sample = events(track("Product Viewed", name="Lamp"), track("Order Completed", colour="red"))

    finding = only(check_missing_values(book.rules[0], book, sample))

    assert "`event.properties.colour` may be missing (the sample never has it on Product " in (
        finding.message
    )


def test_a_rule_for_any_event_may_use_a_property_any_sampled_event_has() -> None:
    content = "text: '{{ event.properties.plan }} {{ event.properties.items[0].sku }}'"
    book = book_of(rule(when="event: '*'", content=content))
    sample = events(track("Signed Up", plan="pro"), track("Order Completed", items=[{"sku": 1}]))

    assert check_missing_values(book.rules[0], book, sample) == []


def test_a_page_name_is_not_among_the_properties_a_template_reads() -> None:
    when = """
        event: Page Viewed
        where: [{property: name, op: eq, value: Pricing}]
    """
    book = book_of(rule(when=when, content="text: '{{ event.properties.name }}'"))
    sample = events({"type": "page", "name": "Pricing", "properties": {"path": "/p"}})

    only(check_missing_values(book.rules[0], book, sample))


# --- 3. event names ----------------------------------------------------------------------------


def test_an_event_name_the_sample_never_has_is_a_warning_suggesting_the_closest() -> None:
    book = book_of(rule(when="event: Product Veiwed", rule_id="product_a_discount"))
    sample = events(track("Product Viewed"), track("Order Completed"))

    finding = only(check_event_names(book.rules[0], book, sample))

    assert str(finding) == (
        "warning: rule product_a_discount: event 'Product Veiwed' never occurs in the sample "
        "(did you mean 'Product Viewed'?)"
    )


def test_count_events_are_checked_and_names_without_a_close_match_get_no_suggestion() -> None:
    if_ = "count: {event: Checkout Started, within: 7d}\nvalue: 1"
    book = book_of(rule(if_=if_))
    sample = events(track("Product Viewed"))

    finding = only(check_event_names(book.rules[0], book, sample))

    assert finding.message == (
        "event 'Checkout Started' never occurs in the sample: check the name against your "
        "tracking plan"
    )


def test_the_unless_event_of_an_absence_rule_is_checked_against_the_sample() -> None:
    unless = "unless: {event: Order Complete, match: [cart_id]}\nwithin: 30m"
    book = book_of(rule(when="event: Product Added", extra=unless, rule_id="cart_abandoned"))
    sample = events(track("Product Added"), track("Order Completed"))

    finding = only(check_event_names(book.rules[0], book, sample))

    assert str(finding) == (
        "warning: rule cart_abandoned: event 'Order Complete' never occurs in the sample "
        "(did you mean 'Order Completed'?)"
    )


def test_known_names_any_event_and_traits_updated_are_fine() -> None:
    when = "event: ['*', Traits Updated, Product Viewed]"
    book = book_of(rule(when=when, if_="count: {event: Product Viewed, within: 7d}\nvalue: 2"))

    assert check_event_names(book.rules[0], book, events(track("Product Viewed"))) == []


def test_event_names_are_only_checked_against_a_sample() -> None:
    book = book_of(rule(when="event: Product Veiwed"))

    assert check_event_names(book.rules[0], book, None) == []


def test_segment_and_engagement_score_event_names_are_checked_against_the_sample() -> None:
    book = book_of(
        """
        segments:
          - id: buyers
            if: {count: {event: Order Complete, within: 30d}, value: 1}
        engagement_score:
          half_life: 7d
          weights: [{event: Product Viewed, weight: 1}, {event: Signed Up, weight: 5}]
        """
    )
    sample = events(track("Product Viewed"), track("Order Completed"))

    assert messages(lint(book, sample)) == [
        "warning: segment buyers: event 'Order Complete' never occurs in the sample "
        "(did you mean 'Order Completed'?)",
        "warning: engagement_score: event 'Signed Up' never occurs in the sample: check the "
        "name against your tracking plan",
    ]


# --- 4. unreachable conditions -----------------------------------------------------------------


def test_counting_no_entry_event_when_it_causes_the_rule_is_an_error() -> None:
    when = """
        event: Page Viewed
        where: [{property: path, op: eq, value: /pricing}]
    """
    for op, value in [("eq", 0), ("lt", 1), ("lte", 0)]:
        if_ = f"""
            all:
              - score: {{op: gt, value: 1}}
              - count:
                  event: Page Viewed
                  where: [{{property: path, op: eq, value: /pricing}}]
                  within: 1d
                op: {op}
                value: {value}
        """
        book = book_of(rule(when=when, if_=if_))

        finding = only(check_unreachable(book.rules[0], book, None))

        assert finding.severity == "error"
        assert finding.message.startswith(
            f"if.all[1]: count of 'Page Viewed' {op} {value} can never hold: the 'Page Viewed' "
            "event that causes this rule is counted too"
        )


def test_counting_no_events_of_another_name_or_of_a_narrower_filter_is_fine() -> None:
    never = "op: eq\nvalue: 0"
    cases = [
        ("event: Page Viewed", "count: {event: Signed Up, within: 90d}"),
        ("event: [Page Viewed, Signed Up]", "count: {event: Page Viewed, within: 90d}"),
        (
            "event: Page Viewed",
            "count: {event: Page Viewed, where: [{property: path, value: /p}], within: 1d}",
        ),
        ("event: Identify", "count: {event: Identify, within: 1d}"),
    ]
    for when, count in cases:
        book = book_of(rule(when=when, if_=f"{count}\n{never}"))

        assert check_unreachable(book.rules[0], book, None) == [], when


def test_a_count_below_zero_is_an_error() -> None:
    book = book_of(rule(if_="count: {event: Signed Up, within: 7d}\nop: lt\nvalue: 0"))

    finding = only(check_unreachable(book.rules[0], book, None))

    assert finding.message.startswith("if: count of 'Signed Up' lt 0 can never hold")


def test_one_property_or_trait_required_equal_to_two_values_is_an_error() -> None:
    when = """
        event: Product Viewed
        where: [{property: product_id, op: eq, value: A}]
    """
    if_ = """
        all:
          - {property: product_id, op: eq, value: B}
          - all: [{trait: plan, value: pro}, {trait: plan, value: team}]
    """
    book = book_of(rule(when=when, if_=if_))

    assert messages(check_unreachable(book.rules[0], book, None)) == [
        "error: rule r: if.all[0]: event property `product_id` eq 'B' contradicts when.where[0] "
        "(`product_id` eq 'A'): it cannot be both, so the rule never fires; remove one, or use "
        "op: in, value: ['A', 'B']",
        "error: rule r: if.all[1].all[1]: trait `plan` eq 'team' contradicts if.all[1].all[0] "
        "(`plan` eq 'pro'): it cannot be both, so the rule never fires; remove one, or use "
        "op: in, value: ['pro', 'team']",
    ]


def test_different_values_under_any_or_not_or_equal_values_are_fine() -> None:
    if_ = """
        all:
          - {trait: plan, value: pro}
          - {trait: plan, value: pro}
          - any: [{trait: plan, value: team}, {trait: plan, value: free}]
          - not: {trait: plan, value: free}
          - {trait: seats, value: 1}
          - {trait: seats, value: 1.0}
    """
    book = book_of(rule(if_=if_))

    assert check_unreachable(book.rules[0], book, None) == []


def test_a_new_visitor_first_seen_over_30_minutes_ago_is_an_error() -> None:
    if_ = """
        all:
          - new_visitor: true
          - first_seen: {older_than: 1h}
    """
    book = book_of(rule(if_=if_))

    finding = only(check_unreachable(book.rules[0], book, None))

    assert finding.message.startswith(
        "if.all[1]: first_seen older_than 1h contradicts if.all[0] (new_visitor: true"
    )


def test_a_new_visitor_first_seen_a_few_minutes_ago_is_fine() -> None:
    if_ = """
        all:
          - new_visitor: true
          - first_seen: {older_than: 10m}
          - any: [{first_seen: {older_than: 2h}}]
    """
    book = book_of(rule(if_=if_))

    assert check_unreachable(book.rules[0], book, None) == []


def test_contradictions_inside_a_required_segment_are_errors_of_the_rule() -> None:
    book = book_of(
        rule(if_="all: [{new_visitor: true}, {segment: veterans}]"),
        """
        segments:
          - id: veterans
            if: {first_seen: {older_than: 30d}}
        """,
    )

    finding = only(check_unreachable(book.rules[0], book, None))

    assert finding.message.startswith("segment veterans: if: first_seen older_than 30d")


# --- 5. disabled -------------------------------------------------------------------------------


def test_a_disabled_rule_is_a_warning() -> None:
    book = book_of(rule(extra="enabled: false"), rule(rule_id="enabled_rule"))

    assert messages(check_disabled(book.rules[0], book, None)) == [
        "warning: rule r: disabled: it is never evaluated; remove `enabled: false` when it is "
        "ready, or delete it"
    ]
    assert check_disabled(book.rules[1], book, None) == []


# --- the whole ---------------------------------------------------------------------------------


def test_findings_come_by_rule_then_by_check() -> None:
    second = rule(
        rule_id="second",
        when="event: Product Veiwed",
        if_="count: {event: Signed Up, within: 7d}\nop: lt\nvalue: 0",
        content="text: '{{ user.traits.name }} {{ customer.id }}'",
        extra="enabled: false",
    )
    book = book_of(rule(rule_id="first", content="text: '{{ user.traits.name }}'"), second)
    sample = events(track("Product Viewed"), track("Signed Up"))

    findings = lint(book, sample)

    assert [(f.rule_id, f.severity, f.message.split(":")[0]) for f in findings] == [
        ("first", "warning", "then.content.text"),
        ("second", "error", "then.content.text"),
        ("second", "warning", "then.content.text"),
        (
            "second",
            "warning",
            "event 'Product Veiwed' never occurs in the sample (did you mean 'Product Viewed'?)",
        ),
        ("second", "error", "if"),
        ("second", "warning", "disabled"),
    ]
    assert lint(book, sample) == findings


def test_the_example_rules_have_no_errors() -> None:
    findings = lint(load_rulebook(EXAMPLES))

    assert [str(f) for f in findings if f.severity == "error"] == []
