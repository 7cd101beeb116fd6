"""The rule linter: mistakes that validation lets through, found before a rule goes live.

`lint(book, sample)` looks at a compiled rule set (and, optionally, at what a sample of real
Segment events looks like, from `sample_stats`) and returns findings, each an error or a
warning about one rule:

1. templates that read a variable outside the scope rules render with (`user`, `event`, `rule`)
   or a `user` key that does not exist (errors);
2. template values that may be missing on some events and have no `default` filter (warnings);
3. event names that never occur in the sample, with the closest name it does have (warnings);
4. conditions that can never hold, so the rule never fires (errors);
5. disabled rules (warnings).

The analysis is sound rather than complete: an error is only reported when the rule can really
never fire (only conditions every one of which must hold are compared: a rule's `if`, the
`all`s nested in it and the segments it requires, never what is under `any` or `not`).
Pure: no I/O; `kairos rules check` prints the findings.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from engine.clock import parse_duration_ms
from engine.conditions import NEW_VISITOR_MS
from engine.events import PAGE_VIEWED, SCREEN_VIEWED, event_name, properties
from engine.filters import show
from engine.rules import ANY_EVENT, TRAITS_UPDATED, CompiledRule, RuleBook, walk
from engine.templates import references
from schemas.rules import (
    AllCondition,
    Condition,
    CountCondition,
    FirstSeenCondition,
    NewVisitorCondition,
    PropertyCondition,
    PropertyFilter,
    Rule,
    SegmentCondition,
    TraitCondition,
)

Severity = Literal["error", "warning"]

#: The names a rule's content templates render with.
SCOPE_ROOTS = ("user", "event", "rule")
USER_KEYS = ("id", "traits", "score", "first_seen", "last_seen", "events_total")
RULE_KEYS = ("id", "version", "description")
#: Entry names of Segment calls that are not behavioural events (never counted).
CALL_NAMES: Mapping[str, str] = {"identify": "Identify", "group": "Group", "alias": "Alias"}
_NOT_COUNTED = frozenset({*CALL_NAMES.values(), TRAITS_UPDATED, ANY_EVENT})
#: Comparisons that only pass when the value is present (and not null, but for `in [null]`).
_PRESENCE_OPS = frozenset({"eq", "in", "contains", "gt", "gte", "lt", "lte", "exists"})
#: Event fields `engine.events.properties` adds to the properties of pages and screens.
_HOISTED = frozenset({"name", "category"})
_HOISTING = frozenset({PAGE_VIEWED, SCREEN_VIEWED, ANY_EVENT})
#: How alike (difflib's ratio, ignoring case) a known event name must be to be suggested.
_CLOSE = 0.8
#: Nested property dicts are described down to this depth in sample statistics.
_MAX_DEPTH = 8


@dataclass(frozen=True)
class Finding:
    """One problem in one rule (`rule_id` None: a segment or the engagement score)."""

    severity: Severity
    rule_id: str | None
    message: str

    def __str__(self) -> str:
        owner = f"rule {self.rule_id}: " if self.rule_id is not None else ""
        return f"{self.severity}: {owner}{self.message}"


@dataclass(frozen=True)
class SampleStats:
    """What a sample of Segment events holds: which entry names, and which properties on each."""

    event_names: frozenset[str]
    #: entry name -> property keys seen on it (nested dicts also as dotted paths, `cart.total`)
    properties: Mapping[str, frozenset[str]]


def sample_stats(lines: Iterable[bytes]) -> SampleStats:
    """Statistics of JSONL Segment events (or `{"batch": [...]}` envelopes); bad lines are
    skipped, as are items that are not events."""
    seen: dict[str, set[str]] = {}
    for line in lines:
        try:
            obj = orjson.loads(line)
        except (orjson.JSONDecodeError, TypeError):
            continue
        batch = obj.get("batch") if isinstance(obj, dict) else None
        for item in batch if isinstance(batch, list) else [obj]:
            if not isinstance(item, dict):
                continue
            name = _sample_name(item)
            if name is not None:
                seen.setdefault(name, set()).update(_paths(properties(item)))
    return SampleStats(
        event_names=frozenset(seen),
        properties={name: frozenset(keys) for name, keys in sorted(seen.items())},
    )


def _sample_name(event: dict[str, Any]) -> str | None:
    name = event_name(event)
    return name if name is not None else CALL_NAMES.get(str(event.get("type")))


def _paths(data: Mapping[str, Any], prefix: str = "", depth: int = 0) -> Iterator[str]:
    for key, value in data.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict) and depth < _MAX_DEPTH:
            yield from _paths(value, f"{path}.", depth + 1)


def lint(book: RuleBook, sample: SampleStats | None = None) -> list[Finding]:
    """Every finding, by rule (in rule set order) then by check; then segments and the score."""
    findings: list[Finding] = []
    for item in book.rules:
        for check in RULE_CHECKS:
            findings += check(item, book, sample)
    findings += check_segment_event_names(book, sample)
    findings += check_score_event_names(book, sample)
    return findings


# --- template paths --------------------------------------------------------------------------

#: A step of a template path: a key, a list index, or None for a key read from a variable.
Step = str | int | None
_INDEX = re.compile(r"-?[0-9]+")


def _steps(path: str) -> list[Step]:
    """`event.properties["a b"].items[0]` → ["event", "properties", "a b", "items", 0].

    Parses the format of `engine.templates.Reference.path`.
    """
    steps: list[Step] = []
    i, n = 0, len(path)
    start = i
    while i < n and path[i] not in ".[":
        i += 1
    steps.append(path[start:i])
    while i < n:
        if path[i] == ".":
            start = i = i + 1
            while i < n and path[i] not in ".[":
                i += 1
            steps.append(path[start:i])
        elif path[i + 1 : i + 2] == '"':
            try:
                key, end = json.JSONDecoder().raw_decode(path, i + 1)
            except ValueError:
                return [*steps, None]
            steps.append(str(key))
            i = end + 1  # past `]`
        else:
            depth, j = 0, i
            while j < n:
                if path[j] == '"':  # a bracketed key inside a nested path: skip it whole
                    try:
                        j = json.JSONDecoder().raw_decode(path, j)[1]
                    except ValueError:
                        return [*steps, None]
                    continue
                depth += {"[": 1, "]": -1}.get(path[j], 0)
                if depth == 0:
                    break
                j += 1
            inner = path[i + 1 : j]
            steps.append(int(inner) if _INDEX.fullmatch(inner) else None)
            i = j + 1
    return steps


def _keys(steps: list[Step]) -> tuple[tuple[str, ...], bool]:
    """The leading plain keys of steps, and whether that is all of them."""
    keys: list[str] = []
    for step in steps:
        if not isinstance(step, str):
            return tuple(keys), False
        keys.append(step)
    return tuple(keys), True


@dataclass(frozen=True)
class _Template:
    where: str  # then.content.subject
    source: str

    def at(self, line: int | None) -> str:
        """The field, and the line when the template has several."""
        if line is None or "\n" not in self.source:
            return self.where
        return f"{self.where} (line {line})"


def _templates(rule: Rule) -> list[_Template]:
    found = [_Template(f"then.content.{k}", v) for k, v in rule.then.content.items()]
    if rule.then.fallback is not None:
        found += [_Template(f"then.fallback.{k}", v) for k, v in rule.then.fallback.items()]
    return found


# --- 1. scope --------------------------------------------------------------------------------


def check_scope(item: CompiledRule, book: RuleBook, sample: SampleStats | None) -> list[Finding]:
    """Errors for template variables outside the render scope: they can never render."""
    rule = item.rule
    findings: list[Finding] = []
    for template in _templates(rule):
        reported: set[str] = set()
        for ref in references(template.source, where=template.where):
            if ref.path in reported:
                continue
            problem = _scope_problem(_steps(ref.path), ref.path)
            if problem is not None:
                reported.add(ref.path)
                findings.append(Finding("error", rule.id, f"{template.at(ref.line)}: {problem}"))
    return findings


def _scope_problem(steps: list[Step], path: str) -> str | None:
    root = steps[0]
    key = steps[1] if len(steps) > 1 else None
    roots = ", ".join(SCOPE_ROOTS)
    if root not in SCOPE_ROOTS:
        return (
            f"references `{path}`, which is not in scope ({roots}); start the path with one of them"
        )
    if root == "user" and isinstance(key, str) and key not in USER_KEYS:
        close = difflib.get_close_matches(key, USER_KEYS, n=1, cutoff=_CLOSE)
        hint = f"user.{close[0]}" if close else f"user.traits.{key}"
        return (
            f"references `{path}`, but `user` has no `{key}` ({', '.join(USER_KEYS)}); "
            f"did you mean `{hint}`?"
        )
    if root == "rule" and isinstance(key, str) and key not in RULE_KEYS:
        return f"references `{path}`, but `rule` has no `{key}` ({', '.join(RULE_KEYS)})"
    return None


# --- 2. values that may be missing -----------------------------------------------------------


def check_missing_values(
    item: CompiledRule, book: RuleBook, sample: SampleStats | None
) -> list[Finding]:
    """Warnings for unguarded template values that some events or users may lack: the content
    then fails to render (and the fallback, if any, is sent instead)."""
    rule = item.rule
    conjuncts = [c for _, c in _conjuncts(rule.if_, "if", book.segments)]
    props = _required(rule.when.where) | _required(
        [c for c in conjuncts if isinstance(c, PropertyCondition)]
    )
    traits = {
        tuple(c.trait.split("."))
        for c in conjuncts
        if isinstance(c, TraitCondition) and _requires_presence(c.op, c.value)
    }
    entries = rule.when.events
    findings: list[Finding] = []
    for template in _templates(rule):
        reported: set[str] = set()
        for ref in references(template.source, where=template.where):
            if ref.guarded or ref.path in reported:
                continue
            steps = _steps(ref.path)
            if steps[:2] == ["user", "traits"] and len(steps) > 2:
                keys, plain = _keys(steps[2:])
                if plain and _covered(keys, traits):
                    continue
                problem = f"`{ref.path}` may be missing (not every user has that trait): " + (
                    f"add a default filter, e.g. {{{{ {ref.path} | default: '...' }}}}"
                    if ref.filterable
                    else _test_first("user.traits", keys)
                )
            elif steps[:2] == ["event", "properties"] and len(steps) > 2:
                keys, plain = _keys(steps[2:])
                # Filters and the sample see a page's (screen's) `name` and `category` among its
                # properties, but templates read the event as sent, where they are top-level.
                hoisted = bool(keys) and keys[0] in _HOISTED and not _HOISTING.isdisjoint(entries)
                if plain and not hoisted and _covered(keys, props):
                    continue
                if sample is not None and not hoisted and _sampled(keys, entries, sample):
                    continue
                seen = (
                    f" (the sample never has it on {_names(entries)})" if sample is not None else ""
                )
                fix = (
                    "add a default filter, or a `when.where` filter that requires it (op: exists)"
                    if ref.filterable
                    else "add a `when.where` filter that requires it (op: exists), or "
                    + _test_first("event.properties", keys)
                )
                problem = f"`{ref.path}` may be missing{seen}: {fix}"
            else:
                continue
            reported.add(ref.path)
            findings.append(Finding("warning", rule.id, f"{template.at(ref.line)}: {problem}"))
    return findings


def _test_first(parent: str, keys: tuple[str, ...]) -> str:
    """The advice for a value read where no `default` filter can go: as docs/rules.md says."""
    key = json.dumps(keys[0], ensure_ascii=False) if keys else '"..."'
    return (
        "no default filter can go there (tags take no filters): test for it first, "
        f"e.g. {{% if {parent} contains {key} %}}"
    )


def _requires_presence(op: str, value: Any) -> bool:
    return op in _PRESENCE_OPS and not (op == "in" and None in value)


def _required(filters: Iterable[PropertyFilter]) -> set[tuple[str, ...]]:
    return {tuple(f.property.split(".")) for f in filters if _requires_presence(f.op, f.value)}


def _covered(keys: tuple[str, ...], present: set[tuple[str, ...]]) -> bool:
    """Whether a path is known present: it, or a path under it, is required."""
    return any(p[: len(keys)] == keys for p in present)


def _sampled(keys: tuple[str, ...], entries: list[str], sample: SampleStats) -> bool:
    """Whether the sample has the property on some entry event (or, past a key it has but
    cannot see into, such as a list, may have it)."""
    if ANY_EVENT in entries:
        names = [n for n in sample.properties if n not in CALL_NAMES.values()]
    else:
        names = entries
    for name in names:
        seen = sample.properties.get(name, frozenset())
        for end in range(len(keys), 0, -1):
            path = ".".join(keys[:end])
            if path in seen:
                if end == len(keys) or not any(s.startswith(f"{path}.") for s in seen):
                    return True
                break
    return False


def _names(entries: list[str]) -> str:
    if ANY_EVENT in entries:
        return "any event"
    return " or ".join(entries)


# --- 3. event names --------------------------------------------------------------------------


def check_event_names(
    item: CompiledRule, book: RuleBook, sample: SampleStats | None
) -> list[Finding]:
    """Warnings for event names (entry, `unless`, counts) the sample never has: often a typo."""
    if sample is None:
        return []
    rule = item.rule
    # A typo in `unless` is the worst of them: the timer is never cancelled, so it always fires.
    unless = [rule.unless.event] if rule.unless is not None else []
    used = [*rule.when.events, *unless, *_count_events(rule.if_)]
    return [Finding("warning", rule.id, text) for text in _unknown_names(used, sample)]


def check_segment_event_names(book: RuleBook, sample: SampleStats | None) -> list[Finding]:
    if sample is None:
        return []
    return [
        Finding("warning", None, f"segment {sid}: {text}")
        for sid, condition in book.segments.items()
        for text in _unknown_names(_count_events(condition), sample)
    ]


def check_score_event_names(book: RuleBook, sample: SampleStats | None) -> list[Finding]:
    if sample is None or book.profile.score is None:
        return []
    weights = book.profile.score.weights
    return [
        Finding("warning", None, f"engagement_score: {text}")
        for text in _unknown_names([w.event for w in weights], sample)
    ]


def _count_events(condition: Condition | None) -> list[str]:
    return [c.count.event for c in walk(condition) if isinstance(c, CountCondition)]


def _unknown_names(names: Iterable[str], sample: SampleStats) -> list[str]:
    known = {name.casefold(): name for name in sorted(sample.event_names)}
    found: list[str] = []
    for name in dict.fromkeys(names):
        # `Traits Updated` comes from CRMs and profile updates, never in a Segment sample.
        if name in (ANY_EVENT, TRAITS_UPDATED) or name in sample.event_names:
            continue
        close = difflib.get_close_matches(name.casefold(), known, n=1, cutoff=_CLOSE)
        hint = (
            f" (did you mean {known[close[0]]!r}?)"
            if close
            else ": check the name against your tracking plan"
        )
        found.append(f"event {name!r} never occurs in the sample{hint}")
    return found


# --- 4. unreachable conditions ---------------------------------------------------------------


def check_unreachable(
    item: CompiledRule, book: RuleBook, sample: SampleStats | None
) -> list[Finding]:
    """Errors for conditions that can never hold together, so the rule never fires."""
    rule = item.rule
    conjuncts = _conjuncts(rule.if_, "if", book.segments)
    problems = [
        *_impossible_counts(rule, conjuncts),
        *_conflicting_values(rule, conjuncts),
        *_conflicting_recency(conjuncts),
    ]
    return [Finding("error", rule.id, text) for text in problems]


def _conjuncts(
    condition: Condition | None,
    path: str,
    segments: Mapping[str, Condition],
    inside: frozenset[str] = frozenset(),
) -> list[tuple[str, Condition]]:
    """The conditions that must all hold, with their field paths: `all`s and required segments
    are opened, anything else (`any`, `not`, leaves) is one conjunct."""
    if condition is None:
        return []
    if isinstance(condition, AllCondition):
        return [
            pair
            for i, child in enumerate(condition.all)
            for pair in _conjuncts(child, f"{path}.all[{i}]", segments, inside)
        ]
    if isinstance(condition, SegmentCondition):
        name = condition.segment
        if name in segments and name not in inside:
            return _conjuncts(segments[name], f"segment {name}: if", segments, inside | {name})
    return [(path, condition)]


def _impossible_counts(rule: Rule, conjuncts: list[tuple[str, Condition]]) -> list[str]:
    problems: list[str] = []
    # A timed rule is evaluated when its timer fires, not on an event that was just counted.
    entries = set() if rule.timed else set(rule.when.events)
    for path, c in conjuncts:
        if not isinstance(c, CountCondition):
            continue
        spec = c.count
        shown = f"count of {spec.event!r} {c.op} {c.value}"
        if c.op == "lt" and c.value == 0:
            problems.append(
                f"{path}: {shown} can never hold, a count is never negative: "
                "to mean 'never', use op: eq, value: 0"
            )
        elif (
            entries == {spec.event}
            and spec.event not in _NOT_COUNTED
            and all(f in rule.when.where for f in spec.where)
            and _below_one(c.op, c.value)
        ):
            problems.append(
                f"{path}: {shown} can never hold: the {spec.event!r} event that causes this rule "
                f"is counted too, so the count is at least 1; to match a user's first "
                f"{spec.event!r}, use op: eq, value: 1"
            )
    return problems


def _below_one(op: str, value: int) -> bool:
    """Whether `count op value` requires a count of 0 (value is never negative)."""
    return (
        (op == "eq" and value == 0) or (op == "lt" and value <= 1) or (op == "lte" and value == 0)
    )


def _conflicting_values(rule: Rule, conjuncts: list[tuple[str, Condition]]) -> list[str]:
    """Two required values of one property (entry filters included) or trait that differ."""
    leaves: list[tuple[str, str, str, str, Any]] = [
        (f"when.where[{i}]", "event property", f.property, f.op, f.value)
        for i, f in enumerate(rule.when.where)
    ]
    for path, c in conjuncts:
        if isinstance(c, PropertyCondition):
            leaves.append((path, "event property", c.property, c.op, c.value))
        elif isinstance(c, TraitCondition):
            leaves.append((path, "trait", c.trait, c.op, c.value))
    problems: list[str] = []
    first: dict[tuple[str, str], tuple[str, str, Any]] = {}
    reported: set[tuple[str, str]] = set()
    for path, kind, name, op, value in leaves:
        if op != "eq":
            continue
        key = (kind, name)
        if key not in first:
            first[key] = (path, op, value)
            continue
        other_path, _, other = first[key]
        if value != other and key not in reported:
            reported.add(key)
            problems.append(
                f"{path}: {kind} `{name}` eq {show(value)} contradicts {other_path} "
                f"(`{name}` eq {show(other)}): it cannot be both, so the rule never fires; "
                f"remove one, or use op: in, value: [{show(other)}, {show(value)}]"
            )
    return problems


def _conflicting_recency(conjuncts: list[tuple[str, Condition]]) -> list[str]:
    """`new_visitor` against `first_seen` (or itself): a user cannot be both new and not."""
    visitors = [(p, c) for p, c in conjuncts if isinstance(c, NewVisitorCondition)]
    firsts = [(p, c) for p, c in conjuncts if isinstance(c, FirstSeenCondition)]
    problems: list[str] = []
    new = [p for p, c in visitors if c.new_visitor]
    not_new = [p for p, c in visitors if not c.new_visitor]
    if new and not_new:
        problems.append(
            f"{not_new[0]}: new_visitor: false contradicts {new[0]} (new_visitor: true): remove one"
        )
    for vpath, visitor in visitors:
        for fpath, first in firsts:
            spec = first.first_seen
            # new: first seen at most 30m ago; older_than X: more than X ago.
            if visitor.new_visitor and spec.older_than is not None:
                if parse_duration_ms(spec.older_than) < NEW_VISITOR_MS:
                    continue
                bound, state = f"older_than {spec.older_than}", "true, first seen at most 30m ago"
            # not new: never seen, or more than 30m ago; within X: at most X ago.
            elif not visitor.new_visitor and spec.within is not None:
                if parse_duration_ms(spec.within) > NEW_VISITOR_MS:
                    continue
                bound, state = f"within {spec.within}", "false, first seen over 30m ago"
            else:
                continue
            problems.append(
                f"{fpath}: first_seen {bound} contradicts {vpath} (new_visitor: {state}): "
                "a user cannot be both; remove one"
            )
    return problems


# --- 5. disabled -----------------------------------------------------------------------------


def check_disabled(item: CompiledRule, book: RuleBook, sample: SampleStats | None) -> list[Finding]:
    if item.rule.enabled:
        return []
    return [
        Finding(
            "warning",
            item.rule.id,
            "disabled: it is never evaluated; remove `enabled: false` when it is ready, "
            "or delete it",
        )
    ]


RuleCheck = Callable[[CompiledRule, RuleBook, SampleStats | None], list[Finding]]
#: The per-rule checks, in the order their findings are reported.
RULE_CHECKS: tuple[RuleCheck, ...] = (
    check_scope,
    check_missing_values,
    check_event_names,
    check_unreachable,
    check_disabled,
)
