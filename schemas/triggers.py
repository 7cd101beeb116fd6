"""The trigger: what Kairos publishes on `kairos.triggers`, a CloudEvents 1.0 structured JSON event.

The record key is the user id (UTF-8); the value is this JSON object. `id` is deterministic (rule
id, rule version, user and causing record), so a consumer that remembers ids acts on each trigger
exactly once, even when Kairos re-sends one after a crash.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Cause(BaseModel):
    id: str = Field(description="The causing record's id (the event's messageId).")
    event: str = Field(description="The causing event's name, as rules name it.")


class TimerCause(BaseModel):
    """Which timer fired a trigger (rules that fire when something does not happen)."""

    kind: Literal["absence", "inactive", "score"]
    armed_at: str
    due_at: str
    armed_by: Cause = Field(description="The record that armed the timer.")


class Explanation(BaseModel):
    summary: str = Field(description="One line: why the rule fired.")
    conditions: list[str] = Field(description="Each condition with the value it saw.")
    engagement_score: float = Field(description="The user's score at that moment.")
    rule_version: int
    cause: Cause
    content_source: str = Field(description="`content`, or `fallback (<why>)`.")
    timer: TimerCause | None = Field(default=None, description="Set when a timer fired it.")


class TriggerData(BaseModel):
    rule_id: str
    rule_version: int
    user_id: str
    channel: str = Field(description="email, push, in_app, webhook, ...")
    content: dict[str, str] = Field(description="The rule's content fields, rendered.")
    explanation: Explanation


class Trigger(BaseModel):
    """A CloudEvents 1.0 event (structured mode, JSON)."""

    model_config = ConfigDict(extra="forbid")

    specversion: Literal["1.0"]
    id: str = Field(description="Deterministic trigger id (a hash in the UUID format).")
    source: str = Field(description="/kairos/rules/<rule id>")
    type: str = Field(description="kairos.trigger.<action type>")
    subject: str = Field(description="The user id.")
    time: str = Field(description="Event time of the causing event (RFC 3339).")
    datacontenttype: Literal["application/json"]
    data: TriggerData

    def summary_line(self) -> str:
        return trigger_line(self.model_dump())


def trigger_line(trigger: dict[str, Any]) -> str:
    """One line for a person: type, user, channel, rendered content, and why."""
    data = trigger.get("data", {})
    content = data.get("content", {})
    shown = " | ".join(f"{k}={v}" for k, v in content.items())
    if len(shown) > 160:
        shown = shown[:157] + "..."
    why = data.get("explanation", {}).get("summary", "")
    kind = str(trigger.get("type", "")).removeprefix("kairos.trigger.")
    return (
        f"{kind}  user={trigger.get('subject')}  channel={data.get('channel')}  {shown}  why: {why}"
    )
