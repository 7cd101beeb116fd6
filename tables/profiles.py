"""The profiles table: user key → the user's whole state (engine.profile.UserState).

One record per user holds traits, activity, windowed counts and recently viewed items, so the
profiles agent writes each user once per batch. Co-partitioned with `kairos.users`.
"""

from __future__ import annotations

import faust

from app import topics
from app.faust_app import app, settings

profiles = app.Table(
    topics.TABLE_PROFILES,
    default=None,
    partitions=settings.partitions,
    schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
    help="Per-user profile state",
)
