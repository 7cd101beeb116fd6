"""engine.templates: simple templates render without Liquid, to exactly what Liquid renders.

Liquid is the definition; `_render_simple` is an optimization of it for templates made of text
and `{{ path }}` / `{{ path | default: 'text' }}` outputs. For any scope, where the fast render
gives a text Liquid must give the same text, and where it steps aside Liquid decides.
"""

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import json_values

from engine.templates import (
    Content,
    RenderError,
    _compiled,
    _render_simple,
    _simple_parts,
    compile_content,
    render_content,
)

#: Keys of the random scopes; `size` is there because Liquid gives it a meaning of its own.
KEYS = ["name", "first_name", "traits", "properties", "product_id", "score", "size", "id", "x_1"]
PATH_KEYS = [key for key in KEYS if key != "size"]

json_value = json_values(
    strings=st.sampled_from(["", " ", "Ann", "0", "false", "<b>", "é"]) | st.text(max_size=5),
    keys=st.sampled_from(KEYS),
    max_leaves=12,
)
scopes = st.fixed_dictionaries(
    {
        "user": st.dictionaries(st.sampled_from(KEYS), json_value, max_size=4),
        "event": st.dictionaries(st.sampled_from(KEYS), json_value, max_size=4),
        "rule": st.dictionaries(st.sampled_from(KEYS), json_value, max_size=3),
    }
)


@st.composite
def outputs(draw: st.DrawFn) -> str:
    root = draw(st.sampled_from(["user", "event", "rule"]))
    path = ".".join([root, *draw(st.lists(st.sampled_from(PATH_KEYS), max_size=3))])
    spaces = draw(st.sampled_from(["", " ", "  "]))
    default = draw(st.one_of(st.none(), st.sampled_from(["''", "'friend'", '"x y"', "'0'"])))
    filters = f"{spaces}| default: {default}" if default is not None else ""
    return f"{{{{{spaces}{path}{spaces}{filters}{spaces}}}}}"


@st.composite
def templates(draw: st.DrawFn) -> str:
    texts = st.sampled_from(["", "Hi ", ", ", "!", " and\n", "}", "10% off "])
    pieces = [draw(texts)]
    for _ in range(draw(st.integers(1, 3))):
        pieces += [draw(outputs()), draw(texts)]
    return "".join(pieces)


def by_liquid(source: str, scope: dict[str, Any]) -> str | type[Exception]:
    try:
        return _compiled(source).render(dict(scope))
    except Exception as err:  # the kind is enough: every failure becomes a RenderError
        return type(err)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(templates(), scopes)
def test_a_simple_render_is_liquids_render(source: str, scope: dict[str, Any]) -> None:
    parts = _simple_parts(source)
    assert parts is not None, source
    fast = _render_simple(parts, scope)
    liquid = by_liquid(source, scope)
    if fast is not None:
        assert fast == liquid
    else:
        assert not isinstance(liquid, str)  # the fast render steps aside only for errors here


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(templates(), scopes)
def test_render_content_is_the_same_with_and_without_the_fast_path(
    source: str, scope: dict[str, Any]
) -> None:
    content = compile_content({"f": source})
    slow = Content(fields=content.fields, where=content.where, text=content.text)

    def render(c: Content) -> dict[str, str] | str:
        try:
            return render_content(c, scope)
        except RenderError as err:
            return str(err)

    assert render(content) == render(slow)


@pytest.mark.parametrize(
    "source",
    [
        "Welcome, {{ user.traits.name | default: 'friend' }}! Take the 2-minute tour.",
        "{{ user.traits.first_name | default: 'Hello' }}, 10% off "
        "{{ event.properties.name | default: 'product A' }}",
        "{{ event.properties.product_id }}",
        "{{ user.score }}",
        "{{ event.properties.cart_id | default: '' }}",
    ],
)
def test_the_example_rules_templates_are_simple(source: str) -> None:
    assert _simple_parts(source) is not None


@pytest.mark.parametrize(
    "source",
    [
        "{{ user.traits.name | upcase }}",
        "{{ user.traits.tags.size }}",
        "{{ user.traits.tags.first | default: 'x' }}",
        "{% if user.score > 3 %}hi{% endif %}",
        "{{- user.id -}}",
        "{{ user.traits['name'] }}",
        "{{ user.traits.name | default: 'a\\'b' }}",
        "{{ other.name }}",
        "{{ user.id }} {# note #}",
        "plain text",
    ],
)
def test_everything_else_is_left_to_liquid(source: str) -> None:
    assert _simple_parts(source) is None


def test_outputs_near_the_limits_are_left_to_liquid() -> None:
    parts = _simple_parts("{{ event.text }}{{ event.text }}")
    assert parts is not None
    assert _render_simple(parts, {"event": {"text": "x" * 5000}}) is not None
    assert _render_simple(parts, {"event": {"text": "x" * 9000}}) is None
