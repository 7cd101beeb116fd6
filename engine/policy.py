"""The contact policy: which of the rules that fired on one event may publish.

One policy for all rules, kept in the user's state and updated in the same step as the trigger:
- a rule's `cooldown`: the rule does not trigger again for the user within it;
- `per_event`: at most this many triggers per channel for one event, highest priority first;
- channel `caps`: at most `max` triggers on a channel within a trailing window, across rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.clock import parse_duration_ms
from engine.profile import UserState
from schemas.rules import ContactPolicy

COOLDOWN = "cooldown"
LOWER_PRIORITY = "lower_priority"
CHANNEL_CAP = "channel_cap"


@dataclass(frozen=True)
class Caps:
    per_event: int
    windows: dict[str, list[tuple[int, int]]]  # channel → [(max, window ms)]
    longest_ms: int

    @classmethod
    def of(cls, policy: ContactPolicy) -> Caps:
        windows: dict[str, list[tuple[int, int]]] = {}
        for cap in policy.caps:
            windows.setdefault(cap.channel, []).append((cap.max, parse_duration_ms(cap.within)))
        longest = max((ms for caps in windows.values() for _, ms in caps), default=0)
        return cls(policy.per_event, windows, longest)


class EventBudget:
    """What one event may still publish, per channel (`per_event`)."""

    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self.used: dict[str, int] = {}


def refusal(
    state: UserState,
    rule_id: str,
    cooldown_ms: int | None,
    channel: str,
    now_ms: int,
    budget: EventBudget,
) -> str | None:
    """Why the policy refuses this trigger now, or None when it may publish."""
    fired = state.get("fired", {}).get(rule_id)
    if cooldown_ms is not None and fired is not None and now_ms - fired < cooldown_ms:
        return COOLDOWN
    if budget.used.get(channel, 0) >= budget.caps.per_event:
        return LOWER_PRIORITY
    sent = state.get("sent", {}).get(channel, [])
    for limit, window_ms in budget.caps.windows.get(channel, []):
        if sum(1 for at in sent if now_ms - window_ms < at <= now_ms) >= limit:
            return CHANNEL_CAP
    return None


def record(state: UserState, rule_id: str, channel: str, now_ms: int, budget: EventBudget) -> None:
    """Note a published trigger in the user's state (cooldown and caps) and the event's budget."""
    state.setdefault("fired", {})[rule_id] = max(now_ms, state.get("fired", {}).get(rule_id, 0))
    budget.used[channel] = budget.used.get(channel, 0) + 1
    if channel in budget.caps.windows:
        horizon = now_ms - budget.caps.longest_ms
        sent = [at for at in state.setdefault("sent", {}).get(channel, []) if at > horizon]
        sent.append(now_ms)
        state["sent"][channel] = sorted(sent)
