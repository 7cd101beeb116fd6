"""Rules at work: compile a rule set once, then decide, for each record a user receives, which
triggers to publish, with an explanation of each.

`process(state, record, book)` is the one function the live agent and the offline replay both
call: it applies the record to the user's state, evaluates the rules whose entry event it is,
applies the contact policy and renders the content. Same state and record in, same state,
triggers and trigger ids out.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine import score
from engine.clock import iso, parse_duration_ms
from engine.conditions import Context, evaluate
from engine.events import event_name, properties
from engine.filters import counter_key, matches
from engine.policy import Caps, EventBudget, record, refusal
from engine.profile import (
    Applied,
    CounterSpec,
    ProfileConfig,
    ScoreSetup,
    UserState,
    apply_record,
)
from engine.records import UserRecord
from engine.templates import Content, RenderError, compile_content, render_content
from schemas.rules import (
    AllCondition,
    AnyCondition,
    Condition,
    ContactPolicy,
    CountCondition,
    NotCondition,
    Rule,
    RuleFile,
    Segment,
    SegmentCondition,
)

ANY_EVENT = "*"
TRAITS_UPDATED = "Traits Updated"
RENDER_FAILED = "render_failed"
#: Entry names of calls that are not behavioural events.
_CALL_NAMES = {"identify": "Identify", "group": "Group", "alias": "Alias"}


class RuleSetError(ValueError):
    """A rule set that cannot be used: the message lists every problem, one per line."""


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    content: Content
    fallback: Content | None
    cooldown_ms: int | None
    source: str = ""  # the file it was read from, for messages


@dataclass(frozen=True)
class RuleBook:
    """A validated, compiled rule set, indexed by entry event."""

    rules: tuple[CompiledRule, ...]
    by_event: Mapping[str, tuple[CompiledRule, ...]]
    any_event: tuple[CompiledRule, ...]
    segments: Mapping[str, Condition]
    caps: Caps
    profile: ProfileConfig

    @property
    def score_half_life_ms(self) -> int | None:
        return self.profile.score.half_life_ms if self.profile.score else None

    def candidates(self, entry: str, behavioural: bool) -> list[CompiledRule]:
        """The rules an event of this entry name may fire: only these are evaluated."""
        found = list(self.by_event.get(entry, ()))
        if behavioural:
            found += [item for item in self.any_event if item not in found]
        return found


@dataclass
class Suppression:
    """A trigger a rule would have published, and why it did not."""

    trigger_id: str
    rule_id: str
    rule_version: int
    user_id: str
    channel: str
    type: str
    reason: str
    time: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Outcome:
    """What one record did to a user: the new state, and triggers published or suppressed."""

    applied: Applied
    triggers: list[dict[str, Any]] = field(default_factory=list)
    suppressed: list[Suppression] = field(default_factory=list)
    render_fallbacks: int = 0

    @property
    def state(self) -> UserState:
        return self.applied.state


def compile_rulebook(
    files: list[RuleFile], recent_items: int = 10, sources: list[str] | None = None
) -> RuleBook:
    """Merge and compile rule files; raises RuleSetError listing every problem.

    `sources` names the files (same order), so that messages can say where a rule is.
    """
    problems: list[str] = []
    names = sources or [""] * len(files)
    rules = [rule for f in files for rule in f.rules]
    origin = {rule.id: name for f, name in zip(files, names, strict=True) for rule in f.rules}
    segments = {s.id: s for f in files for s in f.segments}
    scores = [f.engagement_score for f in files if f.engagement_score is not None]
    policies = [f.contact_policy for f in files if f.contact_policy is not None]
    _check_unique("rule", [r.id for r in rules], problems)
    _check_unique("segment", [s.id for f in files for s in f.segments], problems)
    if len(scores) > 1:
        problems.append("engagement_score: declared more than once; keep one")
    if len(policies) > 1:
        problems.append("contact_policy: declared more than once; keep one")
    _check_segments(rules, segments, problems)
    compiled: list[CompiledRule] = []
    for rule in rules:
        try:
            compiled.append(_compile_rule(rule, origin.get(rule.id, "")))
        except ValueError as exc:
            where = f"{origin[rule.id]}: " if origin.get(rule.id) else ""
            problems.append(f"{where}rule {rule.id}: {exc}")
    if problems:
        raise RuleSetError("\n".join(problems))
    enabled = [c for c in compiled if c.rule.enabled]
    by_event: dict[str, list[CompiledRule]] = {}
    for item in enabled:
        for name in dict.fromkeys(item.rule.when.events):  # a name listed twice counts once
            by_event.setdefault(name, []).append(item)
    conditions = [r.if_ for r in rules if r.if_ is not None] + [s.if_ for s in segments.values()]
    counters = _counters(conditions)
    setup = None
    if scores:
        setup = ScoreSetup(parse_duration_ms(scores[0].half_life), tuple(scores[0].weights))
    return RuleBook(
        rules=tuple(compiled),
        by_event={name: tuple(items) for name, items in by_event.items() if name != ANY_EVENT},
        any_event=tuple(by_event.get(ANY_EVENT, ())),
        segments={sid: s.if_ for sid, s in segments.items()},
        caps=Caps.of(policies[0] if policies else ContactPolicy()),
        profile=ProfileConfig(recent_items=recent_items, counters=counters, score=setup),
    )


def _check_unique(kind: str, ids: list[str], problems: list[str]) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            problems.append(f"{kind} {item}: declared more than once")
        seen.add(item)


def _check_segments(rules: list[Rule], segments: dict[str, Segment], problems: list[str]) -> None:
    def refs(condition: Condition | None) -> list[str]:
        return [c.segment for c in walk(condition) if isinstance(c, SegmentCondition)]

    for rule in rules:
        for name in refs(rule.if_):
            if name not in segments:
                problems.append(f"rule {rule.id}: unknown segment {name!r}")
    for segment in segments.values():
        for name in refs(segment.if_):
            if name not in segments:
                problems.append(f"segment {segment.id}: unknown segment {name!r}")
        if _reaches(segment.id, segment.id, segments):
            problems.append(f"segment {segment.id}: refers to itself through other segments")


def _reaches(target: str, start: str, segments: dict[str, Segment]) -> bool:
    """Whether the segment `start` refers, directly or not, to `target` (each visited once)."""
    pending, visited = [start], set()
    while pending:
        current = pending.pop()
        segment = segments.get(current)
        if segment is None:
            continue
        for c in walk(segment.if_):
            if isinstance(c, SegmentCondition):
                if c.segment == target:
                    return True
                if c.segment not in visited:
                    visited.add(c.segment)
                    pending.append(c.segment)
    return False


def walk(condition: Condition | None) -> list[Condition]:
    """Every condition of a tree, depth first."""
    if condition is None:
        return []
    found: list[Condition] = [condition]
    if isinstance(condition, AllCondition):
        found += [c for child in condition.all for c in walk(child)]
    elif isinstance(condition, AnyCondition):
        found += [c for child in condition.any for c in walk(child)]
    elif isinstance(condition, NotCondition):
        found += walk(condition.not_)
    return found


def _counters(conditions: list[Condition]) -> tuple[CounterSpec, ...]:
    specs: dict[str, CounterSpec] = {}
    for root in conditions:
        for c in walk(root):
            if isinstance(c, CountCondition) and c.count.where:
                key = counter_key(c.count.event, c.count.where)
                specs[key] = CounterSpec(key, c.count.event, tuple(c.count.where))
    return tuple(specs[key] for key in sorted(specs))


def _compile_rule(rule: Rule, source: str) -> CompiledRule:
    content = compile_content(rule.then.content, where="then.content")
    fallback = (
        compile_content(rule.then.fallback, where="then.fallback")
        if rule.then.fallback is not None
        else None
    )
    cooldown = parse_duration_ms(rule.then.cooldown) if rule.then.cooldown else None
    return CompiledRule(rule, content, fallback, cooldown, source)


def trigger_id(rule: Rule, user_key: str, cause_id: str) -> str:
    """The trigger's id: the same rule version, user and causing record always give the same id."""
    material = f"{rule.id}\0{rule.version}\0{user_key}\0{cause_id}".encode()
    return str(uuid.UUID(bytes=hashlib.blake2b(material, digest_size=16).digest()))


def entry_name(record: UserRecord) -> tuple[str | None, bool]:
    """The entry name rules use for a record, and whether it is a behavioural event."""
    if record["kind"] == "traits":
        return TRAITS_UPDATED, False
    if record["kind"] != "event":
        return None, False
    event = record["event"]
    name = event_name(event)
    if name is not None:
        return name, True
    return _CALL_NAMES.get(str(event.get("type"))), False


def process(state: UserState | None, record: UserRecord, book: RuleBook) -> Outcome:
    """Apply one record to a user's state and publish what the rules decide."""
    previous_seen = state.get("last_seen") if state else None
    previous = state.get("score") if state else None
    applied = apply_record(state, record, book.profile)
    outcome = Outcome(applied)
    if applied.duplicate or applied.forward or record["kind"] not in ("event", "traits"):
        return outcome
    entry, behavioural = entry_name(record)
    if entry is None:
        return outcome
    candidates = book.candidates(entry, behavioural)
    if not candidates:
        return outcome
    state = applied.state
    now = record["ts"]
    event = record["event"] if record["kind"] == "event" else _traits_event(record)
    props = properties(event)
    half_life = book.score_half_life_ms
    current = score.value_at(state.get("score"), now, half_life) if half_life else 0.0
    # The score as it stood at the user's previous event (decayed to it, whether or not that
    # event had a weight), so that `dropped_below` holds on the crossing only.
    previous_score = None
    if half_life and previous is not None:
        at = previous_seen if previous_seen is not None else int(previous[1])
        previous_score = score.value_at(previous, at, half_life)
    ctx = Context(
        state=state,
        properties=props,
        now_ms=now,
        score=current,
        previous_score=previous_score,
        previous_seen_ms=previous_seen,
        segments=book.segments,
    )
    fired = []
    for item in candidates:
        rule = item.rule
        if not matches(props, rule.when.where):
            continue
        verdict = evaluate(rule.if_, ctx) if rule.if_ is not None else None
        if verdict is None or verdict.ok:
            fired.append((item, verdict.lines if verdict else []))
    fired.sort(key=lambda pair: (-pair[0].rule.priority, pair[0].rule.id))
    budget = EventBudget(book.caps)
    for item, lines in fired:
        _publish(outcome, item, lines, state, record, event, ctx, budget, entry)
    return outcome


def _traits_event(record: UserRecord) -> dict[str, Any]:
    assert record["kind"] == "traits"
    return {
        "type": "traits",
        "source": record["source"],
        "properties": dict(record["set"]),
        "unset": list(record["unset"]),
    }


def _publish(
    outcome: Outcome,
    item: CompiledRule,
    lines: list[str],
    state: UserState,
    cause: UserRecord,
    event: dict[str, Any],
    ctx: Context,
    budget: EventBudget,
    entry: str,
) -> None:
    rule, action = item.rule, item.rule.then
    user = state["key"]
    tid = trigger_id(rule, user, cause["id"])
    now = ctx.now_ms

    def suppress(reason: str) -> None:
        outcome.suppressed.append(
            Suppression(
                tid, rule.id, rule.version, user, action.channel, action.type, reason, iso(now)
            )
        )

    reason = refusal(state, rule.id, item.cooldown_ms, action.channel, now, budget)
    if reason is not None:
        suppress(reason)
        return
    scope = {"user": _user_scope(state, ctx), "event": event, "rule": _rule_scope(rule)}
    source = "content"
    try:
        content = render_content(item.content, scope)
    except RenderError as failure:
        if item.fallback is None:
            suppress(RENDER_FAILED)
            return
        try:
            content = render_content(item.fallback, scope)
        except RenderError:
            suppress(RENDER_FAILED)
            return
        source = f"fallback ({failure})"
        outcome.render_fallbacks += 1
    record(state, rule.id, action.channel, now, budget)
    explanation = {
        "summary": " and ".join(lines) if lines else f"{entry} (no conditions)",
        "conditions": lines,
        "engagement_score": round(ctx.score, 3),
        "rule_version": rule.version,
        "cause": {"id": cause["id"], "event": entry},
        "content_source": source,
    }
    outcome.triggers.append(
        {
            "specversion": "1.0",
            "id": tid,
            "source": f"/kairos/rules/{rule.id}",
            "type": f"kairos.trigger.{action.type}",
            "subject": user,
            "time": iso(now),
            "datacontenttype": "application/json",
            "data": {
                "rule_id": rule.id,
                "rule_version": rule.version,
                "user_id": user,
                "channel": action.channel,
                "content": content,
                "explanation": explanation,
            },
        }
    )


def _user_scope(state: UserState, ctx: Context) -> dict[str, Any]:
    return {
        "id": state["key"],
        "traits": {
            name: t["v"] for name, t in state.get("traits", {}).items() if t["v"] is not None
        },
        "score": round(ctx.score, 3),
        "first_seen": iso(state["first_seen"]) if "first_seen" in state else None,
        "last_seen": iso(state["last_seen"]) if "last_seen" in state else None,
        "events_total": state.get("events", 0),
    }


def _rule_scope(rule: Rule) -> dict[str, Any]:
    return {"id": rule.id, "version": rule.version, "description": rule.description}
