"""The identity table: identity key (an anonymousId or an alias's previousId) → user id.

Co-partitioned with `kairos.identity`, whose records are keyed by the same identity key.
"""

from __future__ import annotations

import faust

from app import topics
from app.faust_app import app, settings

identity_links = app.Table(
    topics.TABLE_IDENTITY,
    default=None,
    partitions=settings.partitions,
    schema=faust.Schema(
        key_type=str, value_type=str, key_serializer="json", value_serializer="json"
    ),
    help="anonymousId → userId links made by identify, alias and calls carrying both ids",
)
