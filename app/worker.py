"""Everything a worker runs: importing this module registers agents, tables and web views."""

from __future__ import annotations

from importlib import import_module

from app.faust_app import app

for _module in ("agents.ingest", "agents.identity", "agents.profiles", "app.collector", "app.web"):
    import_module(_module)

__all__ = ["app"]
