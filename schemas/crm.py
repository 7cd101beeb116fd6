"""Records other systems write to Kairos's input topics besides Segment events.

- `kairos.crm`: one `CrmRecord` per record a CRM (Salesforce, HubSpot, an internal admin tool)
  exports about a user: its traits (role, plan, account owner, ...).
- `kairos.profiles`: one `ProfileUpdate` per change to a user's profile from any other system:
  traits to set and traits to remove.

Both are JSON objects; the record key is ignored (Kairos keys by the normalized `user_id`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TRAITS = 500


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    user_id: str = Field(min_length=1, max_length=256, description="The user, as Segment's userId.")

    @field_validator("user_id", mode="before")
    @classmethod
    def _stringify(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class CrmRecord(_Input):
    """A CRM's view of one user. Newer values win over older ones, trait by trait."""

    traits: dict[str, Any] = Field(max_length=MAX_TRAITS, description="Traits to set.")
    source: str = Field(default="crm", min_length=1, max_length=64, description="The CRM's name.")
    updated_at: datetime | None = Field(
        default=None, description="When the CRM changed the record (default: when Kairos read it)."
    )
    record_id: str | None = Field(
        default=None,
        max_length=256,
        description="Unique id of this export (deduplicates re-sends; default: a content hash).",
    )


class ProfileUpdate(_Input):
    """A change to a user's traits from any system: traits to set and to remove."""

    set: dict[str, Any] = Field(default_factory=dict, max_length=MAX_TRAITS)
    unset: list[str] = Field(default_factory=list, max_length=MAX_TRAITS)
    source: str = Field(default="profiles", min_length=1, max_length=64)
    timestamp: datetime | None = Field(default=None, description="When the change happened.")
    update_id: str | None = Field(default=None, max_length=256, description="Deduplication id.")
