"""The profiles table: user key → the user's whole state (engine.profile.UserState).

One value per user holds traits, activity, windowed counts, policy and timers. Co-partitioned with
`kairos.users`: a user's state lives in the partition its records arrive on. Written back once per
batch, many users per changelog record (tables/written_back.py).
"""

from __future__ import annotations

from app import topics
from tables.written_back import written_back_table

profiles = written_back_table(
    topics.TABLE_PROFILES, help="Per-user profile state, written back once per batch"
)
