"""Specifications of rule content templates: strict rendering, compile-time errors, the render
bounds, the compile cache and the static references the rule linter reads."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.templates import (
    MAX_OUTPUT_BYTES,
    Content,
    Reference,
    RenderError,
    TemplateError,
    compile_content,
    references,
    render_content,
)

USER: dict[str, Any] = {
    "id": "u-1",
    "traits": {
        "name": "Ada",
        "plan": "pro",
        "vip": True,
        "tags": ["early", "beta"],
        "address": {"city": "Zürich"},
        "age": 36,
        "nickname": None,
        "title": "",
        "key": "price",
    },
    "score": 12.5,
    "counts": {"Order Completed": 3},
    "first_seen": "2024-01-02T03:04:05.000Z",
    "last_seen": "2024-03-01T00:00:00.000Z",
}
EVENT: dict[str, Any] = {
    "type": "track",
    "event": "Product Viewed",
    "properties": {
        "name": "Café crème",
        "price": 4.5,
        "product id": "p-9",
        "items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}],
        "nested": {"deep": {"value": 7}},
        "big": list(range(50_000)),
    },
    "context": {"locale": "fr-CH"},
}
RULE: dict[str, Any] = {"id": "welcome", "version": 3, "description": "Greets new users"}
SCOPE: dict[str, Any] = {"user": USER, "event": EVENT, "rule": RULE}


def render(source: str, scope: Mapping[str, Any] = SCOPE) -> str:
    return render_content(compile_content({"body": source}), scope)["body"]


def render_error(source: str) -> RenderError:
    with pytest.raises(RenderError) as caught:
        render(source)
    return caught.value


def template_error(source: str) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        compile_content({"subject": source})
    return caught.value


# --- rendering -------------------------------------------------------------------------------


def test_every_field_renders_with_user_event_and_rule_in_scope() -> None:
    content = compile_content(
        {
            "subject": "Hi {{ user.traits.name }}",
            "body": "{{ event.event }} by {{ user.id }} ({{ rule.id }} v{{ rule.version }})",
        }
    )

    assert render_content(content, SCOPE) == {
        "subject": "Hi Ada",
        "body": "Product Viewed by u-1 (welcome v3)",
    }


def test_a_missing_trait_without_default_fails_the_render_naming_the_field() -> None:
    content = compile_content({"subject": "Hi {{ user.traits.first_name }}", "body": "ok"})

    with pytest.raises(RenderError) as caught:
        render_content(content, SCOPE)

    err = caught.value
    assert err.field == "content.subject"
    assert "user.traits.first_name is undefined" in err.reason
    assert str(err) == "content.subject: user.traits.first_name is undefined on line 1"


def test_default_filter_renders_a_missing_trait() -> None:
    assert render('Hi {{ user.traits.first_name | default: "there" }}') == "Hi there"


def test_default_guards_every_level_of_a_missing_path() -> None:
    assert render('{{ user.traits.billing.address.zip | default: "-" }}') == "-"
    assert render('{{ account.name | default: "none" }}') == "none"


def test_default_also_replaces_present_but_nil_or_empty_values() -> None:
    assert render('{{ user.traits.nickname | default: "friend" }}') == "friend"
    assert render('{{ user.traits.title | default: "Dr" }}') == "Dr"
    assert render('{{ user.traits.name | default: "friend" }}') == "Ada"


def test_a_present_nil_value_renders_empty_without_default() -> None:
    # Only a missing key is undefined; an explicit null is a value.
    assert render("[{{ user.traits.nickname }}]") == "[]"


def test_default_only_guards_when_it_is_the_first_filter() -> None:
    err = render_error('{{ user.traits.first_name | upcase | default: "X" }}')

    assert "user.traits.first_name is undefined" in err.reason


def test_a_missing_value_tested_by_if_is_a_render_error() -> None:
    err = render_error("{% if user.traits.first_name %}Hi{% endif %}")

    assert "user.traits.first_name is undefined" in err.reason


def test_contains_tests_for_a_trait_without_failing_the_render() -> None:
    source = (
        '{% if user.traits contains "first_name" %}{{ user.traits.first_name }}'
        "{% else %}Hi{% endif %}"
    )

    assert render(source) == "Hi"


def test_the_first_failing_field_is_reported_in_declaration_order() -> None:
    content = compile_content({"a": "ok", "b": "{{ user.nope }}", "c": "{{ event.nope }}"})

    with pytest.raises(RenderError) as caught:
        render_content(content, SCOPE)

    assert caught.value.field == "content.b"


def test_fallback_errors_are_named_by_where() -> None:
    content = compile_content({"body": "{{ user.nope }}"}, where="fallback")

    with pytest.raises(RenderError) as caught:
        render_content(content, SCOPE)

    assert caught.value.field == "fallback.body"


def test_render_errors_name_the_line() -> None:
    err = render_error("Hello,\n\n{{ event.properties.colour }}")

    assert err.line == 3
    assert str(err).endswith("on line 3")


def test_nested_properties_and_bracket_notation_resolve() -> None:
    source = (
        "{{ event.properties.nested.deep.value }} "
        '{{ event.properties["product id"] }} '
        "{{ event.properties.items[1].sku }} "
        "{{ event.properties.items.first.qty }} "
        "{{ event.properties[user.traits.key] }} "
        "{{ user.traits.address.city }} "
        '{{ user.counts["Order Completed"] }}'
    )

    assert render(source) == "7 p-9 B 2 4.5 Zürich 3"


def test_an_index_past_the_end_of_a_list_is_undefined() -> None:
    assert "out of range" in render_error("{{ event.properties.items[5].sku }}").reason
    assert render('{{ event.properties.items[5].sku | default: "?" }}') == "?"


def test_numbers_render_as_liquid_prints_them() -> None:
    assert render("{{ user.traits.age }} {{ user.score }} {{ event.properties.price }}") == (
        "36 12.5 4.5"
    )
    assert render("{{ event.properties.price | times: 2 }}") == "9.0"
    assert render("{{ event.properties.price | times: 3 | round: 1 }}") == "13.5"
    assert render("{{ user.traits.age | plus: 1 }} {{ 7 | divided_by: 2 }}") == "37 3"
    assert render("{{ user.traits.vip }} {{ false }}") == "true false"


def test_lists_render_concatenated_unless_joined() -> None:
    assert render("{{ user.traits.tags }}") == "earlybeta"
    assert render('{{ user.traits.tags | join: ", " }}') == "early, beta"
    assert render("{{ user.traits.tags | size }}") == "2"
    source = "{% for item in event.properties.items %}{{ item.sku }}x{{ item.qty }};{% endfor %}"
    assert render(source) == "Ax2;Bx1;"
    assert render('{{ event.properties.items | map: "sku" | join: "/" }}') == "A/B"


def test_unicode_in_templates_and_data_round_trips() -> None:
    source = "☕ {{ event.properties.name | upcase }} — {{ user.traits.address.city }} ✓"

    assert render(source) == "☕ CAFÉ CRÈME — Zürich ✓"


def test_rendering_is_deterministic() -> None:
    source = (
        "{% for item in event.properties.items %}{{ forloop.index }}:{{ item.sku }} {% endfor %}"
        "{{ user.traits | size }} {{ event.properties.nested }}"
    )

    first = render_content(compile_content({"body": source}), SCOPE)
    second = render_content(compile_content({"body": source}), SCOPE)

    assert first == second


def test_filter_failures_are_render_errors() -> None:
    err = render_error("{{ user.traits.age | divided_by: 0 }}")

    assert err.field == "content.body"
    assert "divide by 0" in err.reason
    # python-liquid's `sum` lets decimal.InvalidOperation escape; it is still a RenderError.
    assert "InvalidOperation" in render_error("{{ 'abc' | sum }}").reason


def test_a_failing_scope_object_is_a_render_error_not_its_own_exception() -> None:
    class Exploding(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("boom")

        def __iter__(self) -> Iterator[str]:
            return iter(())

        def __len__(self) -> int:
            return 1

    with pytest.raises(RenderError) as caught:
        render("{{ user.traits.name }}", {**SCOPE, "user": Exploding()})

    assert caught.value.reason == "RuntimeError: boom"


def test_an_empty_content_renders_to_an_empty_dict() -> None:
    assert render_content(compile_content({}), SCOPE) == {}


# --- compiling -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("Hi {{ user.traits.name %}", "expected '}}'"),
        ("{% if user.traits.vip %}VIP", "endif"),
        ("{% endif %}", "unexpected tag 'endif'"),
        ("{{ user.traits.name | }}", "expected word"),
        ("{% frobnicate %}", "unexpected tag 'frobnicate'"),
        ("{{ user.traits.name == 'x' }}", "expected end of expression"),
    ],
)
def test_syntax_error_is_reported_at_compile_time_with_the_field(source: str, reason: str) -> None:
    err = template_error(source)

    assert err.field == "content.subject"
    assert reason in err.reason
    assert str(err).startswith(f"content.subject: {err.reason}")


def test_syntax_errors_name_their_line() -> None:
    err = template_error("Hello\n{{ user.id }}\n{% if %}")

    assert err.line == 3
    assert str(err).endswith("on line 3")


def test_an_unknown_filter_is_a_compile_error() -> None:
    err = template_error("Hi\n{{ user.traits.name | shout }}")

    assert err.reason == "unknown filter 'shout'"
    assert err.line == 2


@pytest.mark.parametrize("source", ["{% include 'footer' %}", "{% render 'footer' %}"])
def test_partials_are_compile_errors_because_content_is_self_contained(source: str) -> None:
    assert "unexpected tag" in template_error(source).reason


def test_a_non_string_field_is_a_template_error() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_content({"subject": 42})  # type: ignore[dict-item]

    assert caught.value.field == "content.subject"


def test_compile_errors_are_named_by_where() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_content({"body": "{{"}, where="fallback")

    assert caught.value.field == "fallback.body"


def test_compiled_templates_are_reused_for_the_same_source() -> None:
    source = "Hi {{ user.traits.name }} — reuse"

    first = compile_content({"subject": source})
    second = compile_content({"body": source}, where="fallback")

    assert isinstance(first, Content)
    assert first.fields["subject"] is second.fields["body"]
    assert render_content(first, SCOPE) == {"subject": "Hi Ada — reuse"}


# --- bounds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{% for i in (1..1000000000) %}x{% endfor %}", "range literal"),
        ("{% for i in (1..5000) %}{% for j in (1..5000) %}x{% endfor %}{% endfor %}", "loop"),
        ("{% for i in event.properties.big %}{% endfor %}", "loop iteration limit"),
        ("{{ (1..1000000000000) | sum }}", "range literal"),
        ("{% for i in (1..1000000000) offset: 999999990 %}{{ i }}{% endfor %}", "range literal"),
        ("{% for i in (1..9000) %}0123456789{% endfor %}", "output stream limit"),
        (
            "{% capture c %}{% for i in (1..9000) %}0123456789{% endfor %}{% endcapture %}",
            "output stream limit",
        ),
        (
            "{% assign s = 'abcdefgh' %}"
            "{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}",
            "local namespace limit",
        ),
        (
            "{% assign n = 99 %}{% for i in (1..60) %}{% assign n = n | times: n %}{% endfor %}",
            "local namespace limit",
        ),
        (
            "{% for i in (1..1000) %}{% assign n = event.properties.big | sort | size %}"
            "{% endfor %}",
            "work limit",
        ),
    ],
)
def test_a_runaway_template_is_a_render_error_not_a_hang(source: str, reason: str) -> None:
    started = time.perf_counter()

    err = render_error(source)

    assert reason in err.reason
    assert time.perf_counter() - started < 5


def test_output_under_the_limit_renders() -> None:
    out = render("{% for i in (1..6000) %}0123456789{% endfor %}")

    assert len(out) == 60_000 < MAX_OUTPUT_BYTES


# --- references ------------------------------------------------------------------------------


def test_references_lists_output_paths_with_guarded_flags() -> None:
    source = 'Hi {{ user.traits.first_name | default: "there" }}, {{ event.properties.name }}'

    assert references(source) == [
        Reference(path="user.traits.first_name", guarded=True, line=1),
        Reference(path="event.properties.name", guarded=False, line=1),
    ]


def test_references_in_tags_are_unguarded_unless_a_default_is_assigned() -> None:
    source = (
        "{% if user.traits.vip %}VIP{% endif %}\n"
        "{% unless event.properties.sale %}full price{% endunless %}\n"
        "{% case user.traits.plan %}{% when 'pro' %}Pro{% endcase %}\n"
        '{% assign greeting = user.traits.greeting | default: "Hello" %}{{ greeting }}\n'
        "{% for item in event.properties.items %}{{ item.sku }}{% endfor %}"
    )

    assert [(ref.path, ref.guarded, ref.line) for ref in references(source)] == [
        ("user.traits.vip", False, 1),
        ("event.properties.sale", False, 2),
        ("user.traits.plan", False, 3),
        ("user.traits.greeting", True, 4),
        ("event.properties.items", False, 5),
    ]


def test_references_say_whether_a_filter_can_follow_them_where_they_are_read() -> None:
    source = (
        "{% if user.traits.vip %}{{ user.traits.a }}{% endif %}"
        "{% assign b = user.traits.b %}{{ event.properties[user.traits.k] }}"
    )

    assert [(ref.path, ref.filterable) for ref in references(source)] == [
        ("user.traits.vip", False),
        ("user.traits.a", True),
        ("user.traits.b", True),
        ("event.properties[user.traits.k]", True),
        ("user.traits.k", False),
    ]


def test_a_default_after_another_filter_or_as_an_argument_is_no_guard() -> None:
    source = (
        '{{ user.traits.a | upcase | default: "x" }}{{ user.traits.b | default: user.traits.c }}'
    )

    assert [(ref.path, ref.guarded) for ref in references(source)] == [
        ("user.traits.a", False),
        ("user.traits.b", True),
        ("user.traits.c", False),
    ]


def test_references_skip_names_the_template_binds_itself() -> None:
    source = (
        "{% assign n = user.traits.name %}{{ n }}"
        "{% capture c %}{{ rule.id }}{% endcapture %}{{ c }}"
        "{% for t in user.traits.tags %}{{ forloop.index }}{{ t }}{% endfor %}"
        "{% increment counter %}{{ counter }}"
    )

    assert [ref.path for ref in references(source)] == [
        "user.traits.name",
        "rule.id",
        "user.traits.tags",
    ]


def test_references_write_bracketed_keys_as_json_strings() -> None:
    source = (
        '{{ event.properties["product id"] }}{{ event.properties.items[0].sku }}'
        "{{ event.properties[user.traits.key] }}{{ user.counts['Order Completed'] }}"
    )

    assert [ref.path for ref in references(source)] == [
        'event.properties["product id"]',
        "event.properties.items[0].sku",
        "event.properties[user.traits.key]",
        "user.traits.key",
        'user.counts["Order Completed"]',
    ]


def test_references_report_every_occurrence_with_its_line_and_root() -> None:
    source = "{{ customer.name }}\n\n{{ user.id }} {{ user.id }}"

    refs = references(source)

    assert [(ref.root, ref.path, ref.line) for ref in refs] == [
        ("customer", "customer.name", 1),
        ("user", "user.id", 3),
        ("user", "user.id", 3),
    ]


def test_references_of_a_broken_template_raise_template_error() -> None:
    with pytest.raises(TemplateError) as caught:
        references("{% if %}", where="content.subject")

    assert caught.value.field == "content.subject"


def test_references_of_plain_text_are_empty() -> None:
    assert references("Nothing to see here") == []


# --- robustness ------------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(
    [
        "{{", "}}", "{%", "%}", "{{-", "-}}", " ", "\n", "user", "event", "rule", ".", "traits",
        "name", "first_name", "properties", "items", "[", "]", "0", "'x'", '"y"', "|", ":", ",",
        "default", "upcase", "size", "join", "times", "sum", "sort", "append", "if", "elsif",
        "else", "endif", "unless", "endunless", "for", "in", "endfor", "(", ")", "..", "(1..3)",
        "(1..99999999)", "assign", "capture", "endcapture", "=", "==", "contains", "and", "or",
        "x", "liquid", "echo", "raw", "endraw", "comment", "endcomment", "#", "nil", "true",
        "break", "continue", "case", "when", "endcase", "cycle", "tablerow", "endtablerow",
    ]
)  # fmt: skip
_VALUES = st.sampled_from(
    [
        "user.traits.name", "user.traits.first_name", "user.traits.tags", "user.score",
        "event.properties.items", "event.properties.big", "event.properties.price",
        "event.properties.nested", "rule.version", "x", "(1..5)", "(1..99999)", "'abc'", "3",
        "-2.5", "nil", "true",
    ]
)  # fmt: skip
_FILTERS = st.sampled_from(
    [
        "default: 'd'", "upcase", "size", "join: ','", "times: 2", "divided_by: 0", "sort",
        "first", "last", "sum", "append: 'z'", "split: ''", "date: '%Y'", "round: 2",
        "map: 'sku'", "slice: 1, 2", "truncate: 3", "uniq", "reverse", "plus: x", "at_least: 1",
    ]
)  # fmt: skip
_OUTPUTS = st.builds(
    lambda value, filters: "{{ " + " | ".join([value, *filters]) + " }}",
    _VALUES,
    st.lists(_FILTERS, max_size=4),
)
_BLOCKS = st.builds(
    lambda tag, value, body: f"{{% {tag} {value} %}}{body}{{% end{tag} %}}",
    st.sampled_from(["if", "unless"]),
    _VALUES,
    _OUTPUTS,
) | st.builds(
    lambda value, body: f"{{% for v in {value} %}}{body}{{% endfor %}}", _VALUES, _OUTPUTS
)
_TEMPLATES = st.one_of(
    st.text(max_size=80),
    st.lists(_FRAGMENTS, max_size=30).map("".join),
    st.lists(st.one_of(_OUTPUTS, _BLOCKS, _FRAGMENTS, st.text(max_size=5)), max_size=6).map(
        "".join
    ),
)


@settings(max_examples=400, deadline=None)
@given(_TEMPLATES)
def test_any_text_compiles_or_is_a_template_error_and_renders_or_is_a_render_error(
    source: str,
) -> None:
    try:
        content = compile_content({"body": source})
    except TemplateError as err:
        assert err.field == "content.body"
        return

    try:
        rendered = render_content(content, SCOPE)
    except RenderError as err:
        assert err.field == "content.body"
    else:
        assert isinstance(rendered["body"], str)
    assert all(isinstance(ref, Reference) for ref in references(source))


PLAIN = ["", "getting-started", "  two  spaces \n\t and a newline ", "10% off", "a } b %} #}", "é"]


@pytest.mark.parametrize("source", PLAIN)
def test_a_field_of_plain_text_renders_as_liquid_renders_it(source: str) -> None:
    content = compile_content({"text": source})
    assert "text" in content.text  # rendered once, when compiled
    assert render_content(content, {}) == {"text": content.fields["text"].render({})}


def test_a_plain_text_field_too_long_to_render_still_fails_when_rendered() -> None:
    content = compile_content({"ok": "short", "long": "x" * (MAX_OUTPUT_BYTES + 1)})
    assert "long" not in content.text
    with pytest.raises(RenderError, match=r"content\.long"):
        render_content(content, {})
