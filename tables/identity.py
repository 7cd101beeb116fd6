"""The identity table: identity key (an anonymousId or an alias's previousId) → user id.

Co-partitioned with `kairos.identity`, whose records are keyed by the same identity key. Written
back once per batch, many links per changelog record (tables/written_back.py).
"""

from __future__ import annotations

from app import topics
from tables.written_back import written_back_table

identity_links = written_back_table(
    topics.TABLE_IDENTITY,
    help="anonymousId → userId links made by identify, alias and calls carrying both ids",
)
