"""Rule content as Liquid templates: compiling, rendering and static analysis.

A rule's action carries `content` (and optionally `fallback`): a mapping of field name to a
Liquid template string. This module holds

* `compile_content` — parse every field once (syntax errors and unknown filters surface here, as
  `TemplateError` naming the field) into a `Content`; parsed templates are cached by source;
* `render_content` — render a `Content` against a scope of `user`, `event` and `rule`; every
  failure, whatever its cause, is a `RenderError` naming the field;
* `references` — the variable paths a template reads and whether a `default` filter guards each,
  for the rule linter.

Templates render strictly: a path that does not resolve is an error unless a `default` filter is
applied to it directly (`{{ user.traits.first_name | default: "there" }}`). Rendering is bounded:
loop iterations, output size, local variable size, range literal length and the work done by
lookups and filters are all capped, so a hostile or careless template fails instead of hanging.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from liquid import BoundTemplate, Environment, RenderContext, StrictDefaultUndefined, Token
from liquid.ast import Node
from liquid.builtin.expressions import (
    Filter,
    FilteredExpression,
    Path,
    TernaryFilteredExpression,
)
from liquid.builtin.expressions.primitive import RangeLiteral
from liquid.builtin.filters.misc import default as default_filter
from liquid.exceptions import LiquidError, LiquidValueError, ResourceLimitError
from liquid.expression import Expression
from liquid.static_analysis import Segments
from liquid.stringify import to_liquid_string
from liquid.undefined import UNDEFINED, Undefined

#: Largest rendered field, in UTF-8 bytes.
MAX_OUTPUT_BYTES: Final = 64 * 1024
#: Most loop iterations per render, nested loops multiplied.
MAX_LOOP_ITERATIONS: Final = 10_000
#: Largest local namespace (`assign`/`capture`), as liquid measures it with `sys.getsizeof`.
MAX_LOCALS_BYTES: Final = 64 * 1024
#: Longest range literal, `(1..n)`.
MAX_RANGE_LENGTH: Final = MAX_LOOP_ITERATIONS
#: Work units per render: one per variable lookup, one per filter call plus the length of the
#: string or collection it is applied to.
MAX_RENDER_WORK: Final = 2_000_000
#: Distinct template sources kept parsed.
CACHE_SIZE: Final = 4096

# Identifier-like keys print with a dot; any other key is bracketed (see `_format_path`).
_RE_PROPERTY = re.compile(r"[\u0080-\uFFFFa-zA-Z_][\u0080-\uFFFFa-zA-Z0-9_-]*")
_RE_ROOT = re.compile(r"[^.\[]*")
_SIZED = (str, bytes, list, tuple, dict, range)


class _FieldError(ValueError):
    """An error of one content field; `str()` names the field, the reason and the line."""

    def __init__(self, field: str, reason: str, line: int | None = None) -> None:
        # All state in args so that the error pickles and copies faithfully.
        super().__init__(field, reason, line)
        self.field = field
        self.reason = reason
        self.line = line

    def __str__(self) -> str:
        return _describe(self.field, self.reason, self.line)


class TemplateError(_FieldError):
    """A template that does not compile."""


class RenderError(_FieldError):
    """A template that failed to render."""


@dataclass(frozen=True)
class Content:
    """Compiled content fields, in their declared order; `where` prefixes error field names."""

    fields: Mapping[str, BoundTemplate]
    where: str = "content"
    #: What the fields that are plain text (no `{`: no output, tag or comment) render to, rendered
    #: once when compiled: nothing in them reads the scope, and a render costs a render context.
    text: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Fields made only of text and `{{ path }}` or `{{ path | default: 'text' }}` outputs (most
    #: rules' content), as the parts `_render_simple` renders without Liquid.
    simple: Mapping[str, SimpleParts] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Reference:
    """A variable path a template reads from its scope.

    `path` is dotted for identifier-like keys and bracketed otherwise: `user.traits.first_name`,
    `event.properties["product id"]` (a JSON string), `event.products[0]`, and a key taken from
    another variable as `event.properties[user.traits.key]` (that inner path is also reported as
    a reference of its own). `guarded` is true when a `default` filter is the first filter applied
    to the path, the only position where it turns a missing value into its default. `filterable`
    is false where no filter can follow the path: in an `if`, `unless`, `case` or `for` tag, or
    inside brackets.
    """

    path: str
    guarded: bool
    line: int | None
    filterable: bool = True

    @property
    def root(self) -> str:
        """The top-level name the path starts from, e.g. `user`."""
        match = _RE_ROOT.match(self.path)
        return match.group() if match else self.path


def compile_content(fields: Mapping[str, str], *, where: str = "content") -> Content:
    """Parse every field of a rule's content; raise `TemplateError` naming the first bad one."""
    compiled: dict[str, BoundTemplate] = {}
    for name, source in fields.items():
        field = f"{where}.{name}"
        if not isinstance(source, str):
            raise TemplateError(field, f"expected a template string, got {type(source).__name__}")
        try:
            compiled[name] = _compiled(source)
        except TemplateError as err:
            raise TemplateError(field, err.reason, err.line) from err
    simple = {name: parts for name, src in fields.items() if (parts := _simple_parts(src))}
    return Content(fields=compiled, where=where, text=_plain_text(compiled, fields), simple=simple)


def _plain_text(
    compiled: Mapping[str, BoundTemplate], sources: Mapping[str, str]
) -> dict[str, str]:
    """The rendering of every field without a `{` (no output, tag or comment): text alone, the
    same whatever the scope."""
    text: dict[str, str] = {}
    for name, template in compiled.items():
        if "{" not in sources[name]:
            try:
                text[name] = template.render({})
            except Exception:  # e.g. longer than the output limit: fails as it did, when rendered
                continue
    return text


def render_content(content: Content, scope: Mapping[str, Any]) -> dict[str, str]:
    """Render every field against `scope`; raise `RenderError` for the first field that fails."""
    namespace = dict(scope)
    rendered: dict[str, str] = {}
    for name, template in content.fields.items():
        if name in content.text:
            rendered[name] = content.text[name]
            continue
        parts = content.simple.get(name)
        if parts is not None:
            fast = _render_simple(parts, namespace)
            if fast is not None:
                rendered[name] = fast
                continue
        try:
            rendered[name] = template.render(namespace)
        except LiquidError as err:
            raise RenderError(f"{content.where}.{name}", *_reason(err)) from err
        except Exception as err:  # the contract is RenderError and nothing else
            reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            raise RenderError(f"{content.where}.{name}", reason) from err
    return rendered


def references(source: str, *, where: str = "template") -> list[Reference]:
    """Every variable path `source` reads from its scope, in source order.

    Names the template binds itself (`assign`, `capture`, `for` variables, `forloop`,
    `increment` counters) are not references. Raises `TemplateError` (field `where`) when the
    template does not compile.
    """
    try:
        template = _compiled(source)
        analysis = template.analyze(include_partials=False)
        guarded = _guarded_indexes(template)
        filterable = _filterable_indexes(template)
    except TemplateError as err:
        raise TemplateError(where, err.reason, err.line) from err
    except Exception as err:  # analysis errors are a property of the template too
        raise TemplateError(where, f"cannot analyse: {err}") from err
    found = [
        (var.span.index, _format_path(var.segments))
        for variables in analysis.globals.values()
        for var in variables
    ]
    return [
        Reference(
            path=path,
            guarded=index in guarded,
            line=_line(source, index),
            filterable=index in filterable,
        )
        for index, path in sorted(found)
    ]


# --- simple templates ------------------------------------------------------------------------

#: A simple template: text, and outputs as (path, default text or None).
SimpleParts = tuple[str | tuple[tuple[str, ...], str | None], ...]

_SIMPLE_OUTPUT = re.compile(
    r"\{\{ *((?:user|event|rule)(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r" *(?:\| *default *: *(?:'([^'\\{}]*)'|\"([^\"\\{}]*)\") *)?\}\}"
)
#: Keys Liquid resolves with a meaning of its own on some values (`.size` of a list).
_SPECIAL_KEYS = frozenset({"size", "first", "last"})
#: Beyond these, a render goes through Liquid, which enforces the output and work limits.
_SIMPLE_MAX_CHARS = 16 * 1024
_SIMPLE_MAX_WORK = 100_000


def _simple_parts(source: str) -> SimpleParts | None:
    """The parts of a template made only of text and plain path outputs (with at most a
    `default` of a quoted text), or None for anything else, which Liquid renders."""
    parts: list[str | tuple[tuple[str, ...], str | None]] = []
    at = 0
    for match in _SIMPLE_OUTPUT.finditer(source):
        text = source[at : match.start()]
        if "{" in text:
            return None
        path = tuple(match.group(1).split("."))
        if _SPECIAL_KEYS.intersection(path):
            return None
        default = match.group(2) if match.group(2) is not None else match.group(3)
        parts += [text, (path, default)] if text else [(path, default)]
        at = match.end()
    rest = source[at:]
    if not parts or "{" in rest:
        return None
    if rest:
        parts.append(rest)
    return tuple(parts)


def _render_simple(parts: SimpleParts, scope: Mapping[str, Any]) -> str | None:
    """What Liquid renders for a simple template, or None where Liquid should decide (a path
    that does not resolve and has no default, which is an error; output or work near a limit).

    Liquid resolves a key only in a mapping that holds it (`.size`, `.first` and `.last`, which
    mean more, are not simple); `default` and printing are Liquid's own functions
    (tests/unit/test_templates_simple.py checks both agree on random scopes).
    """
    out: list[str] = []
    size = work = 0
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            size += len(part)
            continue
        path, default = part
        value: Any = scope
        for key in path:
            if type(value) is not dict or key not in value:
                value = UNDEFINED
                break
            value = value[key]
        work += 1
        if default is not None:
            work += _size(value) + 1
            value = default if value is UNDEFINED else default_filter(value, default)
        elif value is UNDEFINED:
            return None
        text = to_liquid_string(value, autoescape=False)
        out.append(text)
        size += len(text)
        if size > _SIMPLE_MAX_CHARS or work > _SIMPLE_MAX_WORK:
            return None
    return "".join(out)


# --- compilation -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compiled(source: str) -> BoundTemplate:
    """Parse and check `source` once; the same rule renders on many events."""
    try:
        template = _ENV.from_string(source)
        for expr in _expressions(template):
            if type(expr) is RangeLiteral:
                # Swapped in place (same slots) because liquid's parser has no hook for range
                # literals, and an unbounded `(1..n)` hangs filters like `sum` or a loop `offset`.
                expr.__class__ = _BoundedRangeLiteral
            for filter_ in _filters(expr):
                # Liquid finds unknown filters only when rendering; a rule should fail to load.
                filter_.validate_filter_arguments(_ENV)
    except LiquidError as err:
        raise TemplateError("template", *_reason(err)) from err
    except Exception as err:  # e.g. RecursionError on absurd nesting
        raise TemplateError("template", f"{type(err).__name__}: {err}") from err
    return template


def _expressions(template: BoundTemplate) -> Iterator[Expression]:
    """Every expression in the template's syntax tree, nested ones included, in no set order."""
    static_context = RenderContext(template)
    # Explicit stacks rather than recursion: expression nesting is bounded only by the parser.
    nodes: list[Node] = list(template.nodes)
    expressions: list[Expression] = []
    while nodes or expressions:
        if expressions:
            expr = expressions.pop()
            yield expr
            expressions.extend(expr.children())
            continue
        node = nodes.pop()
        expressions.extend(node.expressions())
        nodes.extend(node.children(static_context, include_partials=False))


def _filters(expr: Expression) -> list[Filter]:
    if isinstance(expr, FilteredExpression):
        return list(expr.filters or ())
    if isinstance(expr, TernaryFilteredExpression):
        return [*(expr.filters or ()), *(expr.tail_filters or ())]
    return []


def _guarded_indexes(template: BoundTemplate) -> set[int]:
    """Source offsets of paths whose first filter is `default`.

    Only the first filter counts: any other filter applied to a missing value raises before a
    later `default` is reached (`{{ x | upcase | default: "y" }}` fails when `x` is missing).
    """
    return {
        expr.left.token.start_index
        for expr in _expressions(template)
        if isinstance(expr, FilteredExpression)
        and isinstance(expr.left, Path)
        and expr.filters
        and expr.filters[0].name == "default"
    }


def _filterable_indexes(template: BoundTemplate) -> set[int]:
    """Source offsets of paths filters can follow: outputs, `assign` and `echo`."""
    return {
        expr.left.token.start_index
        for expr in _expressions(template)
        if isinstance(expr, FilteredExpression) and isinstance(expr.left, Path)
    }


def _format_path(segments: Segments) -> str:
    head, *rest = segments
    parts = [_format_path(head) if isinstance(head, list) else str(head)]
    for segment in rest:
        if isinstance(segment, list):
            parts.append(f"[{_format_path(segment)}]")
        elif isinstance(segment, str) and _RE_PROPERTY.fullmatch(segment):
            parts.append(f".{segment}")
        elif isinstance(segment, str):
            parts.append(f"[{json.dumps(segment, ensure_ascii=False)}]")
        else:
            parts.append(f"[{segment}]")
    return "".join(parts)


# --- errors ----------------------------------------------------------------------------------


def _describe(field: str, reason: str, line: int | None) -> str:
    return f"{field}: {reason}" if line is None else f"{field}: {reason} on line {line}"


def _reason(err: LiquidError) -> tuple[str, int | None]:
    """Liquid's one-line message and line (its `str()` is a multi-line source excerpt)."""
    message = str(err.message) if err.message is not None else type(err).__name__
    try:
        context = err.context()
    except ValueError:  # the token's index lies outside its source
        context = None
    return message, context[0] if context else None


def _line(source: str, index: int) -> int | None:
    return source.count("\n", 0, index) + 1 if 0 <= index <= len(source) else None


# --- bounded rendering -----------------------------------------------------------------------


class _WorkLimitError(ResourceLimitError):
    """The render used up its work budget."""


class _Meter:
    __slots__ = ("remaining",)

    def __init__(self, budget: int) -> None:
        self.remaining = budget

    def charge(self, units: int) -> None:
        self.remaining -= units
        if self.remaining < 0:
            raise _WorkLimitError("render work limit reached", token=None)


def _size(obj: object) -> int:
    # `type()`, not `isinstance()`: on a strict undefined, `isinstance` reads `__class__`, which
    # raises, and that would break `default` on the very values it exists for.
    cls = type(obj)
    if issubclass(cls, Undefined) or not issubclass(cls, _SIZED):
        return 0
    try:
        return len(obj)  # type: ignore[arg-type]
    except OverflowError:
        return MAX_RENDER_WORK + 1


class _MeteredContext(RenderContext):
    """A render context that charges lookups and filter calls to a per-render budget.

    Loop and output limits leave a gap: a short loop can apply filters to a large collection on
    every iteration without writing much. The budget counts that work deterministically.
    """

    __slots__ = ("meter",)

    def __init__(self, template: BoundTemplate, **kwargs: Any) -> None:
        super().__init__(template, **kwargs)
        parent = self.parent_context
        # Copied contexts share their parent's budget: the limit is per render.
        self.meter: _Meter = (
            parent.meter if isinstance(parent, _MeteredContext) else _Meter(MAX_RENDER_WORK)
        )

    def get(
        self, path: list[object], *, token: Token | None, default: object = UNDEFINED
    ) -> object:
        self.meter.charge(1)
        return super().get(path, token=token, default=default)

    def filter(self, name: str, token: Token | None) -> Callable[..., object]:
        func = super().filter(name, token)
        meter = self.meter

        def metered(left: object, *args: Any, **kwargs: Any) -> object:
            meter.charge(1 + _size(left))
            return func(left, *args, **kwargs)

        return metered


class _BoundedRangeLiteral(RangeLiteral):
    __slots__ = ()

    def _make_range(self, start: Any, stop: Any) -> range:
        made = super()._make_range(start, stop)
        if made.stop - made.start > MAX_RANGE_LENGTH:
            raise LiquidValueError(
                f"range literal longer than {MAX_RANGE_LENGTH} items", token=self.token
            )
        return made


class _Template(BoundTemplate):
    context_class = _MeteredContext


class _Environment(Environment):
    loop_iteration_limit = MAX_LOOP_ITERATIONS
    output_stream_limit = MAX_OUTPUT_BYTES
    local_namespace_limit = MAX_LOCALS_BYTES
    template_class = _Template

    def setup_tags_and_filters(self, *, extra: bool = False) -> None:
        super().setup_tags_and_filters(extra=extra)
        # Content is self-contained: there is no loader, so partials could only fail at render
        # time. Without the tags they fail at compile time instead.
        for tag in ("include", "render"):
            self.tags.pop(tag, None)


_ENV: Final = _Environment(undefined=StrictDefaultUndefined)
