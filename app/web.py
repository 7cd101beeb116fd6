"""HTTP endpoints besides the collector: health, Prometheus metrics, and user profiles.

`GET /users/{user_id}` is answered by whichever worker owns the user's partition: a worker that
does not own it forwards the request (Faust's table routing), so any worker can be asked.
"""

from __future__ import annotations

import hmac
import time
from collections import Counter

from faust.exceptions import SameNode
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.faust_app import app, rulebook, settings
from engine.identity import ANONYMOUS_PREFIX, InvalidIdentifier, normalize_id
from engine.profile import profile_view
from tables.profiles import profiles


def admin_authorized(request: Request) -> bool:
    """Whether the request carries `Authorization: Bearer <KAIROS_ADMIN_TOKEN>`."""
    token = settings.admin_token
    header = request.headers.get("Authorization", "")
    if not token or not header.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


def profile_key(user_id: str) -> str | None:
    """The profile key for a user id given in a URL (normalized like every input id)."""
    anonymous = user_id.startswith(ANONYMOUS_PREFIX)
    try:
        normalized = normalize_id(user_id.removeprefix(ANONYMOUS_PREFIX))
    except InvalidIdentifier:
        return None
    if normalized is None:
        return None
    return ANONYMOUS_PREFIX + normalized if anonymous else normalized


@app.page("/health", name="health")
class Health(View):
    async def get(self, request: Request) -> Response:
        assignment = app.assignor.assigned_actives() if app.assignor else set()
        by_topic = Counter(tp.topic for tp in assignment)
        return self.json(
            {
                "status": "ok",
                "app_id": settings.app_id,
                "url": settings.web_url,
                "rebalancing": bool(app.rebalancing),
                "assigned_partitions": len(assignment),
                "partitions_by_topic": dict(sorted(by_topic.items())),
            }
        )


@app.page("/metrics", name="metrics")
class Metrics(View):
    async def get(self, request: Request) -> Response:
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/users/{user_id}", name="user_profile")
class UserProfile(View):
    async def get(self, request: Request, user_id: str) -> Response:
        if not admin_authorized(request):
            return self.json(
                {"error": "admin token required: Authorization: Bearer <KAIROS_ADMIN_TOKEN>"},
                status=401,
            )
        key = profile_key(user_id)
        if key is None:
            return self.json({"error": "user_id: not a valid user id"}, status=400)
        try:
            return await app.router.route_req(profiles.name, key, self.web, request)
        except SameNode:
            pass
        state = profiles.read_owned(key)
        if state is None:
            return self.json({"error": f"no profile for user {key!r}"}, status=404)
        now = int(time.time() * 1000)
        return self.json(profile_view(state, now, rulebook.score_half_life_ms))
