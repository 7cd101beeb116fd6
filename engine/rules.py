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
from typing import Any, NamedTuple

from engine import score
from engine.clock import iso, parse_duration_ms
from engine.conditions import Context, evaluate
from engine.events import event_name, properties
from engine.filters import MISSING, FilterTest, counter_key, filters_test, lookup
from engine.policy import Caps, EventBudget, record, refusal
from engine.predicates import Predicate, Predicates
from engine.profile import (
    Applied,
    CounterSpec,
    ProfileConfig,
    ScoreSetup,
    UserState,
    apply_record,
    trait_values,
)
from engine.records import UserRecord
from engine.templates import Content, RenderError, compile_content, render_content
from engine.timers import (
    Timer,
    TimerChanges,
    absence_id,
    armed_order,
    cancelled_earlier,
    crossing_ms,
    drop,
    due_timers,
    inactive_id,
    indexed_at,
    kept_properties,
    note_cancel,
    order,
    put,
    reached,
    reindex,
    remember_cancels,
    score_id,
)
from schemas.rules import (
    AllCondition,
    AnyCondition,
    Condition,
    ContactPolicy,
    CountCondition,
    InactivityEntry,
    NotCondition,
    Rule,
    RuleFile,
    ScoreEntry,
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
    #: `when.where` and `if`, compiled (engine.predicates): what the hot path evaluates.
    where: FilterTest
    condition: Predicate | None
    #: Timed rules: `unless.where`, compiled, and the delay of the timer (`within` of an absence
    #: rule, `inactive_for` of an inactivity rule).
    unless_where: FilterTest | None = None
    delay_ms: int | None = None
    source: str = ""  # the file it was read from, for messages

    def explain(self, ctx: Context) -> list[str]:
        """The explanation lines of the rule's conditions, one per leaf, as of `ctx`."""
        return evaluate(self.rule.if_, ctx).lines if self.rule.if_ is not None else []


@dataclass(frozen=True)
class RuleBook:
    """A validated, compiled rule set, indexed by entry event."""

    rules: tuple[CompiledRule, ...]
    by_event: Mapping[str, tuple[CompiledRule, ...]]
    any_event: tuple[CompiledRule, ...]
    segments: Mapping[str, Condition]
    caps: Caps
    profile: ProfileConfig
    #: Timed rules: absence rules by the event that arms them and by the one that cancels them,
    #: inactivity rules, and score-threshold rules.
    absence_when: Mapping[str, tuple[CompiledRule, ...]] = field(default_factory=dict)
    absence_unless: Mapping[str, tuple[CompiledRule, ...]] = field(default_factory=dict)
    inactivity: tuple[CompiledRule, ...] = ()
    score_rules: tuple[CompiledRule, ...] = ()
    #: Enabled rules by id, for timers (a timer names the rule that armed it).
    enabled: Mapping[str, CompiledRule] = field(default_factory=dict)
    #: `entered_by` and `inactive_by`, as found the first time each entry name asked.
    _entered: dict[tuple[str, bool], tuple[CompiledRule, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _inactive: dict[str, tuple[CompiledRule, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def score_half_life_ms(self) -> int | None:
        return self.profile.score.half_life_ms if self.profile.score else None

    def candidates(self, entry: str, behavioural: bool) -> list[CompiledRule]:
        """The rules an event of this entry name may fire: only these are evaluated."""
        found = list(self.by_event.get(entry, ()))
        if behavioural:
            found += [item for item in self.any_event if item not in found]
        return found

    def inactive_by(self, entry: str) -> tuple[CompiledRule, ...]:
        """The inactivity rules a behavioural event of this entry name counts as activity for."""
        found = self._inactive.get(entry)
        if found is None:
            found = self._inactive[entry] = tuple(
                item
                for item in self.inactivity
                if isinstance(item.rule.when, InactivityEntry)
                and ("*" in item.rule.when.events or entry in item.rule.when.events)
            )
        return found

    def entered_by(self, entry: str, behavioural: bool) -> tuple[CompiledRule, ...]:
        """`candidates`, remembered: every record asks, and the rule set does not change."""
        found = self._entered.get((entry, behavioural))
        if found is None:
            found = self._entered[(entry, behavioural)] = tuple(self.candidates(entry, behavioural))
        return found


class Firing(NamedTuple):
    """A rule whose entry and conditions held: it publishes unless the contact policy refuses."""

    item: CompiledRule
    #: The explanation's first lines (what a timer saw, or a score crossing).
    lines: list[str]
    #: Whether the lines of the rule's `if` follow. They are built (by evaluating it again, as
    #: written) only for a trigger that is published: most rules evaluated do not fire, and many
    #: that fire are refused. Conditions do not read what publishing changes (cooldowns, caps).
    explain: bool


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
    timers: TimerChanges = field(default_factory=TimerChanges)
    fired: list[tuple[str, Timer]] = field(default_factory=list)  # timers that fired
    cancelled: int = 0

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
    origin: dict[str, str] = {}
    for f, name in zip(files, names, strict=True):
        for rule in f.rules:
            origin.setdefault(rule.id, name)  # a duplicate id is reported as such
    segments = {s.id: s for f in files for s in f.segments}
    scores = [f.engagement_score for f in files if f.engagement_score is not None]
    policies = [f.contact_policy for f in files if f.contact_policy is not None]
    placed = list(zip(files, names, strict=True))
    _check_unique("rule", [(r.id, name) for f, name in placed for r in f.rules], problems)
    _check_unique(
        "segment",
        [(s.id, name) for f, name in placed for s in f.segments],
        problems,
    )
    if len(scores) > 1:
        problems.append("engagement_score: declared more than once; keep one")
    if len(policies) > 1:
        problems.append("contact_policy: declared more than once; keep one")
    if not scores and any(isinstance(r.when, ScoreEntry) for r in rules):
        problems.append("rules with `when: {score_below}` need an engagement_score block")
    _check_segments(rules, segments, problems, origin)
    predicates = Predicates({sid: s.if_ for sid, s in segments.items()})
    compiled: list[CompiledRule] = []
    for rule in rules:
        try:
            compiled.append(_compile_rule(rule, origin.get(rule.id, ""), predicates))
        except ValueError as exc:
            where = f"{origin[rule.id]}: " if origin.get(rule.id) else ""
            problems.append(f"{where}rule {rule.id}: {exc}")
    if problems:
        raise RuleSetError("\n".join(problems))
    enabled = [c for c in compiled if c.rule.enabled]
    by_event: dict[str, list[CompiledRule]] = {}
    absence_when: dict[str, list[CompiledRule]] = {}
    absence_unless: dict[str, list[CompiledRule]] = {}
    for item in enabled:
        rule = item.rule
        if rule.unless is not None:
            for name in dict.fromkeys(rule.when.events):
                absence_when.setdefault(name, []).append(item)
            absence_unless.setdefault(rule.unless.event, []).append(item)
        elif not rule.timed:
            for name in dict.fromkeys(rule.when.events):  # a name listed twice counts once
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
        absence_when={name: tuple(items) for name, items in absence_when.items()},
        absence_unless={name: tuple(items) for name, items in absence_unless.items()},
        inactivity=tuple(i for i in enabled if isinstance(i.rule.when, InactivityEntry)),
        score_rules=tuple(i for i in enabled if isinstance(i.rule.when, ScoreEntry)),
        enabled={item.rule.id: item for item in enabled},
    )


def _check_unique(kind: str, ids: list[tuple[str, str]], problems: list[str]) -> None:
    """Each (id, file) whose id an earlier one has, named with the file (and the earlier one's)."""
    seen: dict[str, str] = {}
    for item, source in ids:
        if item in seen:
            where = f"{source}: " if source else ""
            also = f" (also in {seen[item]})" if seen[item] and seen[item] != source else ""
            problems.append(f"{where}{kind} {item}: declared more than once{also}")
        seen.setdefault(item, source)


def _check_segments(
    rules: list[Rule], segments: dict[str, Segment], problems: list[str], origin: dict[str, str]
) -> None:
    def refs(condition: Condition | None) -> list[str]:
        return [c.segment for c in walk(condition) if isinstance(c, SegmentCondition)]

    for rule in rules:
        for name in refs(rule.if_):
            if name not in segments:
                where = f"{origin[rule.id]}: " if origin.get(rule.id) else ""
                problems.append(f"{where}rule {rule.id}: unknown segment {name!r}")
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


def _compile_rule(rule: Rule, source: str, predicates: Predicates) -> CompiledRule:
    content = compile_content(rule.then.content, where="then.content")
    fallback = (
        compile_content(rule.then.fallback, where="then.fallback")
        if rule.then.fallback is not None
        else None
    )
    cooldown = parse_duration_ms(rule.then.cooldown) if rule.then.cooldown else None
    delay = None
    if rule.within is not None:
        delay = parse_duration_ms(rule.within)
    elif isinstance(rule.when, InactivityEntry):
        delay = parse_duration_ms(rule.when.inactive_for)
    return CompiledRule(
        rule,
        content,
        fallback,
        cooldown,
        where=filters_test(rule.when.where),
        condition=predicates.condition(rule.if_) if rule.if_ is not None else None,
        unless_where=filters_test(rule.unless.where) if rule.unless is not None else None,
        delay_ms=delay,
        source=source,
    )


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
    """Apply one record to a user's state and publish what the rules decide.

    Timers of the user due by the record's time fire first (as they would have, on time), so
    what a record sees never depends on how late a tick came.
    """
    outcome = Outcome(Applied(state or {}))  # type: ignore[arg-type]
    if state is not None and record["kind"] in ("event", "traits") and "merged_into" not in state:
        _fire_due(state, record["ts"], book, outcome)
    if record["kind"] == "merge" and state is not None:
        # The timers travel to the user with the whole state (the absorb record carries them):
        # only their index entries go here. The state itself is left whole for the hand-over.
        for timer_id, pending in state.get("timers", {}).items():
            outcome.timers.unset.append((indexed_at(pending), timer_id))
    previous_seen = state.get("last_seen") if state else None
    previous = state.get("score") if state else None
    applied = apply_record(state, record, book.profile)
    outcome.applied = applied
    if applied.duplicate or applied.forward or record["kind"] not in ("event", "traits", "absorb"):
        return outcome
    state = applied.state
    if record["kind"] == "absorb":
        _absorb_timers(state, record, book, outcome)
        return outcome
    entry, behavioural = entry_name(record)
    if entry is None:
        return outcome
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
    fired = [
        Firing(item, [], True)
        for item in book.entered_by(entry, behavioural)
        if item.where(props) and (item.condition is None or item.condition(ctx))
    ]
    _publish_all(outcome, fired, state, record["id"], entry, event, ctx, None, book.caps)
    _maintain_timers(outcome, state, record, entry, behavioural, props, ctx, book)
    return outcome


def _absorb_timers(state: UserState, record: Any, book: RuleBook, outcome: Outcome) -> None:
    """Take over a merged visitor's timers: of two of the same id, the later-armed one wins (the
    person's latest activity counts); an absence timer either side's cancelling event cancels is
    dropped (the user may have got the checkout before the visitor's cart); score timers are
    recomputed from the merged score."""
    absorbed: UserState = record["state"]
    timers: dict[str, Timer] = absorbed.get("timers", {})
    mine = state.get("timers", {})
    for timer_id, timer in timers.items():
        if timer["kind"] == "score":
            continue
        current = mine.get(timer_id)
        if current is None or armed_order(timer) > armed_order(current):
            put(state, timer_id, timer, outcome.timers)
    for rule_id, seen in absorbed.get("cancels", {}).items():
        item = book.enabled.get(rule_id)
        if item is not None and item.delay_ms is not None:
            remember_cancels(state, rule_id, seen, item.delay_ms)
    for timer_id, timer in list(state.get("timers", {}).items()):
        if timer["kind"] == "absence" and cancelled_earlier(state, timer):
            drop(state, timer_id, outcome.timers)
            outcome.cancelled += 1
    half_life = book.score_half_life_ms
    merged = state.get("score")
    if half_life is None or not merged:
        return
    as_of = int(merged[1])
    causes = [c for c in (state.get("score_cause"), absorbed.get("score_cause")) if c]
    cause = max(causes, key=order) if causes else [as_of, record["id"], MERGE_ENTRY]
    state["score_cause"] = cause
    for item in book.score_rules:
        when = item.rule.when
        assert isinstance(when, ScoreEntry)
        timer_id = score_id(item.rule.id)
        armed = mine.get(timer_id) or timers.get(timer_id)
        crossing = crossing_ms(merged[0], as_of, when.score_below, half_life)
        if crossing is None:
            drop(state, timer_id, outcome.timers)
        elif armed is not None:
            put(state, timer_id, {**armed, "due": crossing}, outcome.timers)
        else:  # neither score was above the threshold, the two together are
            at, cause_id, cause_event = cause
            new: Timer = {
                "rule": item.rule.id,
                "kind": "score",
                "due": crossing,
                "armed": at,
                "cause": cause_id,
                "cause_event": cause_event,
                "match": {},
                "props": {},
            }
            put(state, timer_id, new, outcome.timers)


def fire_due(state: UserState, now_ms: int, book: RuleBook) -> Outcome:
    """Fire the user's timers due at or before `now_ms` (a tick found them due)."""
    outcome = Outcome(Applied(state))
    _fire_due(state, now_ms, book, outcome)
    return outcome


def _fire_due(state: UserState, now_ms: int, book: RuleBook, outcome: Outcome) -> None:
    if not reached(state, now_ms):
        return
    half_life = book.score_half_life_ms
    for timer_id, timer in due_timers(state, now_ms):
        drop(state, timer_id, outcome.timers)
        item = book.enabled.get(timer["rule"])
        if item is None:
            continue  # its rule was removed or disabled since it was armed
        outcome.fired.append((timer_id, timer))
        due = timer["due"]
        ctx = Context(
            state=state,
            properties=timer["props"],
            now_ms=due,
            score=score.value_at(state.get("score"), due, half_life) if half_life else 0.0,
            previous_score=None,
            previous_seen_ms=state.get("last_seen"),
            segments=book.segments,
        )
        if item.condition is not None and not item.condition(ctx):
            continue
        event = {
            "type": "timer",
            "event": timer["cause_event"],
            "properties": timer["props"],
            "timer": {"kind": timer["kind"], "armed_at": iso(timer["armed"]), "due_at": iso(due)},
        }
        cause = f"timer:{timer_id}@{due}:{timer['cause']}"
        _publish_all(
            outcome,
            [Firing(item, [_timer_line(item.rule, timer, book)], True)],
            state,
            cause,
            timer["cause_event"],
            event,
            ctx,
            timer,
            book.caps,
        )
    reindex(state, now_ms, outcome.timers)


def _timer_line(rule: Rule, timer: Timer, book: RuleBook) -> str:
    armed, due = iso(timer["armed"]), iso(timer["due"])
    if timer["kind"] == "absence" and rule.unless is not None:
        matched = " and ".join(f"{k} = {v!r}" for k, v in timer["match"].items())
        what = f"no {rule.unless.event}" + (f" with {matched}" if matched else "")
        return f"{what} within {rule.within} of {timer['cause_event']} (armed {armed}, due {due})"
    if timer["kind"] == "inactive" and isinstance(rule.when, InactivityEntry):
        return f"no activity for {rule.when.inactive_for} since {armed} (due {due})"
    if isinstance(rule.when, ScoreEntry):
        return (
            f"engagement score fell below {rule.when.score_below:g} at {due} "
            f"(scheduled by {timer['cause_event']} at {armed})"
        )
    return f"timer {timer['kind']} due {due}"


#: The entry name of a timer armed by a profile merge (as a user's `pending_timers` shows it).
MERGE_ENTRY = "Profile Merged"


def _armed_later(state: UserState, timer_id: str, now: int, cause: str) -> bool:
    """Whether the user's timer `timer_id` was armed by a later record (`order`) than `cause`
    at `now`."""
    current = state.get("timers", {}).get(timer_id)
    return current is not None and armed_order(current) > (now, cause)


def _maintain_timers(
    outcome: Outcome,
    state: UserState,
    record: UserRecord,
    entry: str,
    behavioural: bool,
    props: dict[str, Any],
    ctx: Context,
    book: RuleBook,
) -> None:
    """Arm, move and cancel the user's timers after a record was applied."""
    now = ctx.now_ms
    keep: bool | None = None  # whether the properties are small enough to keep, once measured

    def timer(item: CompiledRule, kind: Any, due: int, match: dict[str, Any]) -> Timer:
        nonlocal keep
        if keep is None:
            keep = kept_properties(props) is props
        return {
            "rule": item.rule.id,
            "kind": kind,
            "due": due,
            "armed": now,
            "cause": record["id"],
            "cause_event": entry,
            "match": match,
            "props": props if keep else {},
        }

    for item in book.absence_unless.get(entry, ()):
        unless = item.rule.unless
        assert unless is not None and item.unless_where is not None
        if item.unless_where(props):
            match = {name: lookup_value(props, name) for name in unless.match}
            assert item.delay_ms is not None
            note_cancel(state, item.rule.id, match, now, item.delay_ms)
            if drop(state, absence_id(item.rule.id, match), outcome.timers) is not None:
                outcome.cancelled += 1
    for item in book.absence_when.get(entry, ()):
        rule = item.rule
        assert rule.unless is not None and item.delay_ms is not None
        if item.where(props):
            match = {name: lookup_value(props, name) for name in rule.unless.match}
            armed = timer(item, "absence", now + item.delay_ms, match)
            timer_id = absence_id(rule.id, match)
            # Out of event-time order (another partition's records came first): a cancelling
            # event already seen, or a timer armed by a later event, wins.
            later = _armed_later(state, timer_id, now, record["id"])
            if not cancelled_earlier(state, armed) and not later:
                put(state, timer_id, armed, outcome.timers)
    if behavioural:
        for item in book.inactive_by(entry):
            assert item.delay_ms is not None
            if item.where(props):
                timer_id = inactive_id(item.rule.id)
                if not _armed_later(state, timer_id, now, record["id"]):
                    put(
                        state,
                        timer_id,
                        timer(item, "inactive", now + item.delay_ms, {}),
                        outcome.timers,
                    )
    half_life = book.score_half_life_ms
    if half_life is None or not book.score_rules:
        return
    # What re-arms score timers last; a merge that first takes the score above a threshold names
    # it, as the replay, which applies the visitor's history first, does.
    latest = state.get("score_cause")
    if latest is None or order(latest) <= (now, record["id"]):
        latest = state["score_cause"] = [now, record["id"], entry]
    # The score as of the user's latest record: an older record applied late (out of order)
    # must not put the crossing before what later records already added.
    merged = state.get("score")
    at = max(now, int(merged[1])) if merged else now
    value = ctx.score if at == now else score.value_at(merged, at, half_life)
    for item in book.score_rules:
        when = item.rule.when
        assert isinstance(when, ScoreEntry)
        timer_id = score_id(item.rule.id)
        crossing = crossing_ms(value, at, when.score_below, half_life)
        if crossing is not None:  # above the threshold: due when decay takes it below
            armed = timer(item, "score", crossing, {})
            if latest[1] != record["id"]:
                # A record older than the user's latest (another id's records came first): the
                # timer stays named after the latest, as the replay, in time order, names it.
                current = state.get("timers", {}).get(timer_id)
                armed["armed"], armed["cause"], armed["cause_event"] = latest
                kept = current is not None and current["cause"] == latest[1]
                armed["props"] = current["props"] if current is not None and kept else {}
            put(state, timer_id, armed, outcome.timers)
            continue
        pending = drop(state, timer_id, outcome.timers)
        if pending is not None:
            # The score was above the threshold until this record took it below: it fires now.
            crossed: Timer = {**pending, "due": now, "cause": record["id"], "cause_event": entry}
            before = "?" if ctx.previous_score is None else f"{ctx.previous_score:.2f}"
            line = (
                f"engagement score fell from {before} to {ctx.score:.2f}, below "
                f"{when.score_below:g}, with {entry}"
            )
            event = record["event"] if record["kind"] == "event" else {}
            _publish_all(
                outcome,
                [Firing(item, [line], False)],  # the crossing is the condition
                state,
                record["id"],
                entry,
                event,
                ctx,
                crossed,
                book.caps,
            )


def lookup_value(props: dict[str, Any], path: str) -> Any:
    found = lookup(props, path)
    return None if found is MISSING else found


def _publish_all(
    outcome: Outcome,
    fired: list[Firing],
    state: UserState,
    cause_id: str,
    entry: str,
    event: dict[str, Any],
    ctx: Context,
    timer: Timer | None,
    caps: Caps,
) -> None:
    if not fired:
        return
    fired.sort(key=lambda firing: (-firing.item.rule.priority, firing.item.rule.id))
    budget = EventBudget(caps)
    for firing in fired:
        _publish(outcome, firing, state, cause_id, event, ctx, budget, entry, timer)


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
    firing: Firing,
    state: UserState,
    cause_id: str,
    event: dict[str, Any],
    ctx: Context,
    budget: EventBudget,
    entry: str,
    timer: Timer | None,
) -> None:
    item = firing.item
    rule, action = item.rule, item.rule.then
    user = state["key"]
    tid = trigger_id(rule, user, cause_id)
    now = ctx.now_ms

    def suppress(reason: str) -> None:
        held = Suppression(
            tid, rule.id, rule.version, user, action.channel, action.type, reason, iso(now)
        )
        outcome.suppressed.append(held)

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
    lines = [*firing.lines, *item.explain(ctx)] if firing.explain else firing.lines
    explanation: dict[str, Any] = {
        "summary": " and ".join(lines) if lines else f"{entry} (no conditions)",
        "conditions": lines,
        "engagement_score": round(ctx.score, 3),
        "rule_version": rule.version,
        "cause": {"id": cause_id, "event": entry},
        "content_source": source,
    }
    if timer is not None:
        explanation["timer"] = {
            "kind": timer["kind"],
            "armed_at": iso(timer["armed"]),
            "due_at": iso(timer["due"]),
            "armed_by": {"id": timer["cause"], "event": timer["cause_event"]},
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
        "traits": trait_values(state),
        "score": round(ctx.score, 3),
        "first_seen": iso(state["first_seen"]) if "first_seen" in state else None,
        "last_seen": iso(state["last_seen"]) if "last_seen" in state else None,
        "events_total": state.get("events", 0),
    }


def _rule_scope(rule: Rule) -> dict[str, Any]:
    return {"id": rule.id, "version": rule.version, "description": rule.description}
