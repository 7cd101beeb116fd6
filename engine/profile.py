"""A user's profile state and how each record changes it.

The state is a plain JSON-able dict (Faust stores it as is). Functions here update the state they
are given in place and return it: the agent reads a fresh copy from the table, applies a batch and
writes it back once, so nothing else ever sees a half-applied state.

Every record is applied at most once per user: the state remembers the fingerprints of the last
record ids it applied, so replays of the input after a crash or rebalance, and clients that retry
with the same messageId, change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NotRequired, TypedDict, cast

import orjson

from engine import score, windows
from engine.clock import DAY_MS, HOUR_MS, iso
from engine.events import BEHAVIOURAL_TYPES, event_name, properties, viewed_item
from engine.filters import FilterTest, filters_test
from engine.identity import is_anonymous_key
from engine.records import (
    AbsorbRecord,
    EventRecord,
    MergeRecord,
    TraitsRecord,
    UserRecord,
    digest,
)
from schemas.rules import PropertyFilter, ScoreWeight

#: How many applied record ids a profile remembers to drop duplicates.
SEEN_LIMIT = 128
#: How many anonymous ids a profile lists.
ANONYMOUS_IDS_LIMIT = 20
#: Trailing windows shown in a profile's counts.
PROFILE_WINDOWS: dict[str, int] = {
    "1h": HOUR_MS,
    "24h": DAY_MS,
    "7d": 7 * DAY_MS,
    "30d": 30 * DAY_MS,
}


class Trait(TypedDict):
    v: Any  # the value; None once unset
    src: str  # where it came from
    at: int  # when it was set (event time, epoch ms)


class RecentItem(TypedDict):
    id: str
    name: NotRequired[str]
    at: int


class UserState(TypedDict, total=False):
    key: str
    first_seen: int
    last_seen: int
    events: int
    traits: dict[str, Trait]
    recent: list[RecentItem]
    counts: dict[str, windows.Counter]
    seen: list[str]
    anonymous_ids: list[str]
    merged_into: str
    score: list[float]  # engagement score: [value, as_of epoch ms], decayed on read
    fired: dict[str, int]  # rule id → when it last triggered (cooldowns)
    sent: dict[str, list[int]]  # channel → when triggers were sent (channel caps)
    timers: dict[str, Any]  # timer id → engine.timers.Timer
    cancels: dict[str, list[Any]]  # absence rule id → its recent `unless` events (engine.timers)
    score_cause: list[Any]  # [event time, record id, entry] of the last record score timers saw
    # Set by the live agent, not the core: [offset, index] on `kairos.users` of the last record
    # applied, so that records Faust replays after a crash or rebalance are applied once.
    applied: list[int]
    # Also the live agent's (agents/merging.py): merges whose hand-over the user waits for, the
    # records it holds meanwhile, hand-overs that came before their `await`, and merges over.
    awaiting: list[str]
    parked: list[Any]
    early: dict[str, Any]
    handed: list[str]


@dataclass(frozen=True)
class CounterSpec:
    """A count the rules need beyond plain per-event-name counts: events passing filters."""

    key: str
    event: str
    where: tuple[PropertyFilter, ...]


@dataclass(frozen=True)
class ScoreSetup:
    half_life_ms: int
    weights: tuple[ScoreWeight, ...]

    @cached_property
    def weights_by_event(self) -> dict[str, tuple[tuple[float, FilterTest], ...]]:
        """Each event name's weights, in `weights` order (the sum adds them in it), filters
        compiled: an event is tested against the weights of its own name only."""
        found: dict[str, list[tuple[float, FilterTest]]] = {}
        for w in self.weights:
            found.setdefault(w.event, []).append((w.weight, filters_test(w.where)))
        return {name: tuple(items) for name, items in found.items()}


@dataclass(frozen=True)
class ProfileConfig:
    recent_items: int = 10
    counters: tuple[CounterSpec, ...] = ()
    score: ScoreSetup | None = None

    @cached_property
    def counters_by_event(self) -> dict[str, tuple[tuple[str, FilterTest], ...]]:
        """Each event name's filtered counters (key, filters compiled), in `counters` order (the
        order they are added to a new profile in): an event is tested against its own only."""
        found: dict[str, list[tuple[str, FilterTest]]] = {}
        for spec in self.counters:
            found.setdefault(spec.event, []).append((spec.key, filters_test(spec.where)))
        return {name: tuple(items) for name, items in found.items()}


@dataclass
class Applied:
    """What applying one record did: the new state, and records to send on to other users."""

    state: UserState
    forward: list[UserRecord] = field(default_factory=list)
    duplicate: bool = False


def new_state(key: str) -> UserState:
    return {"key": key, "events": 0, "traits": {}, "recent": [], "counts": {}, "seen": []}


def apply_record(state: UserState | None, record: UserRecord, config: ProfileConfig) -> Applied:
    """Apply one record to a user's state (None: the user is new)."""
    if state is None:
        state = new_state(record["key"])
    merged_into = state.get("merged_into")
    if merged_into is not None:
        return _redirect(state, record, merged_into)
    fingerprint = digest(record["id"])  # computed once: to drop a duplicate, then to remember it
    if fingerprint in state.get("seen", ()):
        return Applied(state, duplicate=True)
    if record["kind"] == "event":
        _apply_event(state, record, config)
    elif record["kind"] == "traits":
        _apply_traits(state, record)
    elif record["kind"] == "merge":
        return _hand_over(state, record)
    else:
        _absorb(state, record, config)
    _remember(state, fingerprint)
    return Applied(state)


def _remember(state: UserState, fingerprint: str) -> None:
    seen = state.setdefault("seen", [])
    seen.append(fingerprint)
    if len(seen) > SEEN_LIMIT:
        del seen[: len(seen) - SEEN_LIMIT]


def _apply_event(state: UserState, record: EventRecord, config: ProfileConfig) -> None:
    event = record["event"]
    at = record["ts"]
    kind = event.get("type")
    if kind != "alias":
        state["first_seen"] = min(state.get("first_seen", at), at)
        state["last_seen"] = max(state.get("last_seen", at), at)
    anonymous_id = event.get("anonymousId")
    if anonymous_id and not is_anonymous_key(state["key"]):
        _add_anonymous_id(state, str(anonymous_id))
    if kind == "identify" and isinstance(event.get("traits"), dict):
        set_traits(state, event["traits"], [], source="identify", at=at)
    name = event_name(event)
    if name is not None and kind in BEHAVIOURAL_TYPES:
        state["events"] = state.get("events", 0) + 1
        counts = state.setdefault("counts", {})
        horizon = state.get("last_seen", at)
        windows.add(counts.setdefault(name, {}), at, horizon)
        props = properties(event) if config.counters or config.score else {}
        for key, passes in config.counters_by_event.get(name, ()):
            if passes(props):
                windows.add(counts.setdefault(key, {}), at, horizon)
        if config.score is not None:
            _score_event(state, name, props, at, config.score)
    item = viewed_item(event)
    if item is not None:
        _remember_item(state, item[0], item[1], at, config.recent_items)


def _score_event(
    state: UserState, name: str, props: dict[str, Any], at: int, setup: ScoreSetup
) -> None:
    weight = sum(weight for weight, passes in setup.weights_by_event.get(name, ()) if passes(props))
    if weight:
        state["score"] = score.add(state.get("score"), weight, at, setup.half_life_ms)


def _apply_traits(state: UserState, record: TraitsRecord) -> None:
    set_traits(state, record["set"], record["unset"], source=record["source"], at=record["ts"])


def set_traits(
    state: UserState, values: dict[str, Any], unset: list[str], *, source: str, at: int
) -> None:
    """Merge traits: for each trait the most recent write wins, whatever its source.

    A write older than the trait's current value is ignored, so sources may arrive in any order
    (a CRM export from yesterday does not overwrite what the user told us an hour ago).
    """
    traits = state.setdefault("traits", {})
    updates: list[tuple[str, Any]] = [*values.items(), *((name, None) for name in unset)]
    for name, value in updates:
        _keep_newest(traits, name, {"v": value, "src": source, "at": at})


def _keep_newest(traits: dict[str, Trait], name: str, candidate: Trait) -> None:
    """Keep the newer of the current and the candidate value of a trait.

    Writes at the same instant are ordered by source and value, so that whichever order two
    profiles or two sources arrive in, the same value wins.
    """
    current = traits.get(name)
    if current is None or _trait_order(candidate) >= _trait_order(current):
        traits[name] = candidate


def _trait_order(trait: Trait) -> tuple[int, str, bytes]:
    return trait["at"], trait["src"], orjson.dumps(trait["v"], option=orjson.OPT_SORT_KEYS)


def _remember_item(state: UserState, item_id: str, name: str | None, at: int, limit: int) -> None:
    """Note a view of an item; an item viewed several times is listed once, at its latest view."""
    earlier = [item for item in state.get("recent", []) if item["id"] == item_id]
    if earlier and earlier[0]["at"] > at:
        return  # a late, older view says nothing new
    recent = [item for item in state.get("recent", []) if item["id"] != item_id]
    entry: RecentItem = {"id": item_id, "at": at}
    if name is not None:
        entry["name"] = name
    recent.append(entry)
    recent.sort(key=lambda item: item["at"], reverse=True)
    state["recent"] = recent[:limit]


def _add_anonymous_id(state: UserState, anonymous_id: str) -> None:
    known = state.setdefault("anonymous_ids", [])
    if anonymous_id not in known:
        known.append(anonymous_id)
        if len(known) > ANONYMOUS_IDS_LIMIT:
            del known[0]


def _hand_over(state: UserState, record: MergeRecord) -> Applied:
    """An anonymous profile whose visitor is now known: send its state to the user, then redirect.

    The profile keeps only a redirect, so anything still addressed to it follows the user.
    """
    into = record["into"]
    forward: list[UserRecord] = []
    if any(state.get(field) for field in ("events", "traits", "recent", "first_seen")):
        # `seen` travels too: a record the visitor's profile applied must stay applied once.
        carried = dict(state)
        forward.append(
            {
                "kind": "absorb",
                "key": into,
                "id": record["id"],
                "source_key": state["key"],
                "state": carried,
            }
        )
    redirect: UserState = {"key": state["key"], "merged_into": into}
    return Applied(redirect, forward)


def _redirect(state: UserState, record: UserRecord, into: str) -> Applied:
    if record["kind"] in ("merge", "absorb"):
        return Applied(state, duplicate=True)
    rerouted = cast(UserRecord, {**record, "key": into})
    return Applied(state, [rerouted])


def _absorb(state: UserState, record: AbsorbRecord, config: ProfileConfig) -> None:
    merge_states(state, record["state"], config)  # type: ignore[arg-type]
    source_key = record["source_key"]
    if is_anonymous_key(source_key):
        _add_anonymous_id(state, source_key.removeprefix("anon:"))


def merge_states(into: UserState, other: UserState, config: ProfileConfig) -> UserState:
    """Fold another profile of the same person into `into`; the order of merges does not matter."""
    for bound, pick in (("first_seen", min), ("last_seen", max)):
        values = [s[bound] for s in (into, other) if bound in s]  # type: ignore[literal-required]
        if values:
            into[bound] = pick(values)  # type: ignore[literal-required]
    into["events"] = into.get("events", 0) + other.get("events", 0)
    traits = into.setdefault("traits", {})
    for name, trait in other.get("traits", {}).items():
        _keep_newest(traits, name, trait)
    horizon = into.get("last_seen", 0)
    counts = into.setdefault("counts", {})
    for name in {*counts, *other.get("counts", {})}:
        windows.merge(counts.setdefault(name, {}), other.get("counts", {}).get(name, {}), horizon)
    for item in other.get("recent", []):
        _remember_item(into, item["id"], item.get("name"), item["at"], config.recent_items)
    for anonymous_id in other.get("anonymous_ids", []):
        _add_anonymous_id(into, anonymous_id)
    if other.get("score"):
        into["score"] = _merged_score(into.get("score"), other["score"], config)
    for rule_id, at in other.get("fired", {}).items():
        fired = into.setdefault("fired", {})
        fired[rule_id] = max(at, fired.get(rule_id, at))
    for channel, times in other.get("sent", {}).items():
        sent = into.setdefault("sent", {})
        sent[channel] = sorted({*sent.get(channel, []), *times})
    for fingerprint in other.get("seen", []):
        if fingerprint not in into.get("seen", ()):
            into.setdefault("seen", []).append(fingerprint)
    seen = into.get("seen", [])
    if len(seen) > SEEN_LIMIT:
        del seen[: len(seen) - SEEN_LIMIT]
    return into


def _merged_score(
    mine: list[float] | None, theirs: list[float], config: ProfileConfig
) -> list[float]:
    """Two decayed sums add up once brought to the same instant."""
    if not mine or config.score is None:
        return mine or list(theirs)
    as_of = int(max(mine[1], theirs[1]))
    half_life = config.score.half_life_ms
    total = score.value_at(mine, as_of, half_life) + score.value_at(theirs, as_of, half_life)
    return [total, float(as_of)]


def trait_values(state: UserState) -> dict[str, Any]:
    """The user's traits as name → value, without the unset ones."""
    return {name: t["v"] for name, t in state.get("traits", {}).items() if t["v"] is not None}


def profile_view(
    state: UserState, now_ms: int, score_half_life_ms: int | None = None
) -> dict[str, Any]:
    """The profile as the HTTP API shows it: traits, activity, counts as of `now_ms`."""
    key = state["key"]
    if "merged_into" in state:
        return {"user_id": key, "merged_into": state["merged_into"]}
    traits = trait_values(state)
    sources = {
        name: {"source": t["src"], "updated_at": iso(t["at"])}
        for name, t in state.get("traits", {}).items()
        if t["v"] is not None
    }
    # Filtered counters ("name|filters") serve rules; the profile shows counts per event name.
    counts = {
        name: {label: windows.count(counter, ms, now_ms) for label, ms in PROFILE_WINDOWS.items()}
        for name, counter in sorted(state.get("counts", {}).items())
        if "|" not in name
    }
    engagement = (
        score.value_at(state.get("score"), now_ms, score_half_life_ms)
        if score_half_life_ms
        else None
    )
    recent = [_item_view(item) for item in state.get("recent", [])]
    return {
        "user_id": key,
        "anonymous": is_anonymous_key(key),
        "anonymous_ids": list(state.get("anonymous_ids", [])),
        "first_seen": iso(state["first_seen"]) if "first_seen" in state else None,
        "last_seen": iso(state["last_seen"]) if "last_seen" in state else None,
        "events_total": state.get("events", 0),
        "traits": traits,
        "trait_sources": sources,
        "recent_items": recent,
        "counts": counts,
        # + 0.0: a negative score decayed to nothing rounds to -0.0, which JSON prints as such.
        "engagement_score": None if engagement is None else round(engagement, 3) + 0.0,
        "pending_timers": [
            {
                "rule": t["rule"],
                "kind": t["kind"],
                "due_at": iso(t["due"]),
                "armed_at": iso(t["armed"]),
                "armed_by": t["cause_event"],
            }
            for t in sorted(state.get("timers", {}).values(), key=lambda t: (t["due"], t["rule"]))
        ],
    }


def _item_view(item: RecentItem) -> dict[str, str]:
    view = {"id": item["id"], "viewed_at": iso(item["at"])}
    if "name" in item:
        view["name"] = item["name"]
    return view
