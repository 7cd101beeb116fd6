"""The dead-letter record: what Kairos writes to `kairos.dlq` for input it could not use.

The value is this JSON object; the record key is the original key. `original` holds the original
record value byte for byte (base64), so a fixed producer can re-send it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ReasonCode = Literal[
    "invalid_json",
    "invalid_event",
    "invalid_identifier",
    "too_large",
    "processing_error",
]


class DeadLetter(BaseModel):
    source_topic: str = Field(description="Topic the record was read from.")
    source_partition: int
    source_offset: int
    reason_code: ReasonCode = Field(description="Machine-readable class of the failure.")
    reason: str = Field(description="Human-readable reason, naming the bad field.")
    original: str = Field(description="The original record value, base64-encoded.")
    failed_at: str = Field(description="When Kairos dead-lettered it (ISO 8601 UTC).")
