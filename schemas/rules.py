"""Rule files: the declarative YAML in which growth engineers write Kairos's decisions.

A rule file (any `*.yaml` / `*.yml` in the `KAIROS_RULES` folder) may hold:

- `rules`: if/then rules. Each has an entry (`when`: the event that causes evaluation), a
  condition tree (`if`, optional) and an action (`then`: the trigger to publish);
- `segments`: named condition trees that rules reference with `segment: <id>`;
- `engagement_score`: the weights and half-life of the per-user engagement score (one per set);
- `contact_policy`: per-channel caps shared by all rules (one per set).

`kairos rules schema` prints the JSON Schema of this model, committed as
`docs/rules.schema.json` for editors.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from engine.clock import parse_duration_ms
from engine.windows import MAX_WINDOW_MS

SLUG = r"^[a-z0-9][a-z0-9_.-]{0,99}$"


def _duration(text: str) -> str:
    parse_duration_ms(text)
    return text


def _window(text: str) -> str:
    if parse_duration_ms(text) > MAX_WINDOW_MS:
        raise ValueError("count windows are limited to 90d")
    return text


Duration = Annotated[
    str, AfterValidator(_duration), Field(description="30s, 15m, 24h, 7d or 2w", examples=["7d"])
]
Window = Annotated[str, AfterValidator(_duration), AfterValidator(_window)]

Op = Literal[
    "eq", "ne", "in", "not_in", "contains", "gt", "gte", "lt", "lte", "exists", "not_exists"
]
CompareOp = Literal["eq", "ne", "gt", "gte", "lt", "lte"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Comparison(_Strict):
    op: Op = Field(default="eq", description="How the value found compares to `value`.")
    value: Any = Field(default=None, description="The value to compare with.")

    @model_validator(mode="after")
    def _value_fits_op(self) -> _Comparison:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op} needs a list value")
        if self.op in ("gt", "gte", "lt", "lte") and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float | str)
        ):
            raise ValueError(f"op {self.op} needs a number (or a string) value")
        if self.op in ("eq", "ne", "contains") and self.value is None:
            raise ValueError(f"op {self.op} needs a value")
        if self.op in ("exists", "not_exists") and self.value is not None:
            # `{trait: plan, op: exists, value: pro}` reads as "plan is pro" and means "plan is
            # set": say so rather than ignore the value.
            raise ValueError(f"op {self.op} takes no value")
        return self


class PropertyFilter(_Comparison):
    """A test of an event property; `property` is a dotted path into the event's properties."""

    property: str = Field(min_length=1, description="Dotted path, e.g. product_id or cart.total")


class PropertyCondition(PropertyFilter):
    """The causing event's property compares to a value."""


class TraitCondition(_Comparison):
    """A profile trait (from identify, a CRM or a profile update) compares to a value."""

    trait: str = Field(min_length=1, description="Trait name, or dotted path into a trait")


class CountSpec(_Strict):
    event: str = Field(min_length=1, description="Event name, e.g. Product Viewed")
    where: list[PropertyFilter] = Field(default_factory=list, description="Property filters")
    within: Window = Field(description="Trailing window, at most 90d")


class CountCondition(_Strict):
    """How many matching events the user did in a trailing window (the current one included)."""

    count: CountSpec
    op: CompareOp = "gte"
    value: int = Field(ge=0)


class RecencySpec(_Strict):
    within: Duration | None = None
    older_than: Duration | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> RecencySpec:
        if (self.within is None) == (self.older_than is None):
            raise ValueError("give exactly one of `within` or `older_than`")
        return self


class FirstSeenCondition(_Strict):
    """When the user was first seen, relative to the causing event."""

    first_seen: RecencySpec


class LastSeenCondition(_Strict):
    """The user's previous activity (before the causing event), relative to it."""

    last_seen: RecencySpec


class NewVisitorCondition(_Strict):
    """The user's first activity was at most 30 minutes before the causing event."""

    new_visitor: bool


class ScoreSpec(_Strict):
    op: CompareOp | None = None
    value: float | None = None
    dropped_below: float | None = Field(
        default=None,
        description="The score was at or above this at the user's previous event and is below "
        "it now.",
    )

    @model_validator(mode="after")
    def _one_form(self) -> ScoreSpec:
        comparison = self.op is not None and self.value is not None
        if comparison == (self.dropped_below is not None) or (
            (self.op is None) != (self.value is None)
        ):
            raise ValueError("give either `op` and `value`, or `dropped_below`")
        return self


class ScoreCondition(_Strict):
    """The engagement score (decayed to the causing event's time) compares to a value."""

    score: ScoreSpec


class SegmentCondition(_Strict):
    """The user is in a named segment (its condition tree holds)."""

    segment: str = Field(pattern=SLUG)


class AllCondition(_Strict):
    all: list[Condition] = Field(min_length=1)


class AnyCondition(_Strict):
    any: list[Condition] = Field(min_length=1)


class NotCondition(_Strict):
    not_: Condition = Field(alias="not")


_KINDS = (
    "all",
    "any",
    "not",
    "property",
    "trait",
    "count",
    "first_seen",
    "last_seen",
    "new_visitor",
    "score",
    "segment",
)


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        keys = [kind for kind in _KINDS if kind in value]
        return keys[0] if len(keys) == 1 else None
    if isinstance(value, BaseModel):
        for kind, model in _MODELS.items():
            if isinstance(value, model):
                return kind
    return None


Condition = Annotated[
    Annotated[AllCondition, Tag("all")]
    | Annotated[AnyCondition, Tag("any")]
    | Annotated[NotCondition, Tag("not")]
    | Annotated[PropertyCondition, Tag("property")]
    | Annotated[TraitCondition, Tag("trait")]
    | Annotated[CountCondition, Tag("count")]
    | Annotated[FirstSeenCondition, Tag("first_seen")]
    | Annotated[LastSeenCondition, Tag("last_seen")]
    | Annotated[NewVisitorCondition, Tag("new_visitor")]
    | Annotated[ScoreCondition, Tag("score")]
    | Annotated[SegmentCondition, Tag("segment")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition_kind",
        custom_error_message="a condition needs exactly one of: " + ", ".join(_KINDS),
    ),
]

_MODELS: dict[str, type[BaseModel]] = {
    "all": AllCondition,
    "any": AnyCondition,
    "not": NotCondition,
    "property": PropertyCondition,
    "trait": TraitCondition,
    "count": CountCondition,
    "first_seen": FirstSeenCondition,
    "last_seen": LastSeenCondition,
    "new_visitor": NewVisitorCondition,
    "score": ScoreCondition,
    "segment": SegmentCondition,
}


class Entry(_Strict):
    """The event that causes a rule to be evaluated (or, with `unless`, that arms its timer)."""

    event: str | list[str] = Field(
        description="Event name(s): a track's event, `Page Viewed`, `Screen Viewed`, `Identify`, "
        "`Group`, `Alias`, `Traits Updated` (CRM records and profile updates), or `*` for any "
        "behavioural event."
    )
    where: list[PropertyFilter] = Field(default_factory=list)

    @property
    def events(self) -> list[str]:
        return [self.event] if isinstance(self.event, str) else list(self.event)


class InactivityEntry(_Strict):
    """Fire once when the user has done nothing (or nothing matching) for a while."""

    inactive_for: Duration = Field(description="How long without activity, e.g. 24h.")
    event: str | list[str] = Field(
        default="*", description="What counts as activity: event name(s), or * for any."
    )
    where: list[PropertyFilter] = Field(default_factory=list)

    @property
    def events(self) -> list[str]:
        return [self.event] if isinstance(self.event, str) else list(self.event)


class ScoreEntry(_Strict):
    """Fire when the engagement score falls below a threshold, by an event or by decay alone."""

    score_below: float = Field(gt=0, description="The threshold (above 0: the score decays to 0).")

    @property
    def events(self) -> list[str]:
        return []  # no event enters it: the score's own course does

    @property
    def where(self) -> list[PropertyFilter]:
        return []


def _entry_kind(value: Any) -> str:
    if isinstance(value, dict):
        if "inactive_for" in value:
            return "inactive_for"
        if "score_below" in value:
            return "score_below"
        return "event"
    if isinstance(value, InactivityEntry):
        return "inactive_for"
    if isinstance(value, ScoreEntry):
        return "score_below"
    return "event"


AnyEntry = Annotated[
    Annotated[Entry, Tag("event")]
    | Annotated[InactivityEntry, Tag("inactive_for")]
    | Annotated[ScoreEntry, Tag("score_below")],
    Discriminator(_entry_kind),
]


class Unless(_Strict):
    """The event that, arriving in time, cancels an absence rule's pending timer."""

    event: str = Field(min_length=1, description="e.g. Order Completed")
    where: list[PropertyFilter] = Field(default_factory=list)
    match: list[str] = Field(
        default_factory=list,
        description="Properties that must be equal in both events, e.g. [cart_id]: each cart "
        "has its own timer.",
    )


class Action(_Strict):
    """The trigger a rule publishes."""

    type: str = Field(pattern=SLUG, description="Trigger type: kairos.trigger.<type>")
    channel: str = Field(pattern=SLUG, description="email, push, in_app, webhook, sms, ...")
    cooldown: Duration | None = Field(
        default=None, description="Do not trigger this rule again for the user within this long."
    )
    content: dict[str, str] = Field(
        default_factory=dict, description="Liquid templates with user, event and rule in scope."
    )
    fallback: dict[str, str] | None = Field(
        default=None, description="Content used when a content template fails to render."
    )


class Rule(_Strict):
    id: str = Field(pattern=SLUG)
    version: int = Field(default=1, ge=1)
    description: str = ""
    enabled: bool = True
    priority: int = Field(
        default=0, description="Higher wins when several rules fire for one channel on one event."
    )
    when: AnyEntry
    unless: Unless | None = Field(
        default=None, description="Absence rule: fire `within` after `when` unless this happens."
    )
    within: Duration | None = Field(default=None, description="The deadline of `unless`.")
    if_: Condition | None = Field(default=None, alias="if")
    then: Action

    @model_validator(mode="after")
    def _timer_fields(self) -> Rule:
        if (self.unless is None) != (self.within is None):
            raise ValueError("`unless` and `within` go together")
        if self.unless is not None and not isinstance(self.when, Entry):
            raise ValueError("`unless` needs a `when` event")
        return self

    @property
    def timed(self) -> bool:
        """Whether the rule fires from a timer rather than on its entry event."""
        return self.unless is not None or not isinstance(self.when, Entry)


class Segment(_Strict):
    id: str = Field(pattern=SLUG)
    description: str = ""
    if_: Condition = Field(alias="if")


class ScoreWeight(_Strict):
    event: str = Field(min_length=1)
    weight: float
    where: list[PropertyFilter] = Field(default_factory=list)


def _positive(text: str) -> str:
    if parse_duration_ms(text) <= 0:
        raise ValueError("half_life must be longer than 0s")
    return text


class EngagementScore(_Strict):
    half_life: Annotated[Duration, AfterValidator(_positive)] = Field(
        description="The score halves every half_life without events."
    )
    weights: list[ScoreWeight] = Field(min_length=1)


class ChannelCap(_Strict):
    channel: str = Field(pattern=SLUG)
    max: int = Field(ge=0)
    within: Duration


class ContactPolicy(_Strict):
    caps: list[ChannelCap] = Field(default_factory=list)
    per_event: int = Field(
        default=1,
        ge=1,
        description="Most triggers one event may cause on one channel; priorities pick them.",
    )


class RuleFile(_Strict):
    rules: list[Rule] = Field(default_factory=list)
    segments: list[Segment] = Field(default_factory=list)
    engagement_score: EngagementScore | None = None
    contact_policy: ContactPolicy | None = None


for _model in (AllCondition, AnyCondition, NotCondition, Rule, Segment, RuleFile):
    _model.model_rebuild()


def rule_file_schema() -> dict[str, Any]:
    """The JSON Schema of a rule file, with the field names as written in YAML (`if`, `not`)."""
    schema = RuleFile.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Kairos rule file"
    return schema
