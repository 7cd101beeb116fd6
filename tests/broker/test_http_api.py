"""The HTTP API: Segment's collector contract, and the admin, health and metrics endpoints."""

from __future__ import annotations

import base64
import gzip
import uuid

import httpx
import orjson
import pytest

from tests.broker.harness import ADMIN_TOKEN, WRITE_KEY, Kairos


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/track", {"event": "Tracked"}),
        ("/v1/t", {"event": "Tracked"}),
        ("/v1/identify", {"traits": {"x": 1}}),
        ("/v1/i", {"traits": {"x": 1}}),
        ("/v1/page", {"name": "Home"}),
        ("/v1/p", {"name": "Home"}),
        ("/v1/screen", {"name": "Home"}),
        ("/v1/s", {"name": "Home"}),
        ("/v1/group", {"groupId": "g1"}),
        ("/v1/g", {"groupId": "g1"}),
        ("/v1/batch", None),
        ("/v1/b", None),
    ],
)
def test_every_segment_endpoint_accepts_its_event(
    kairos: Kairos, path: str, body: dict | None
) -> None:
    user = unique("ep")
    payload = (
        {"batch": [{"type": "track", "userId": user, "event": "Tracked"}]}
        if body is None
        else {"userId": user, **body}
    )
    answer = kairos.collect(path, payload)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True}
    kairos.wait_profile(user)


def test_alias_short_path_is_accepted(kairos: Kairos) -> None:
    answer = kairos.collect("/v1/a", {"previousId": unique("old"), "userId": unique("new")})
    assert answer.json() == {"success": True}


def test_body_is_json_whatever_the_content_type_and_write_key_may_be_in_the_body(
    kairos: Kairos,
) -> None:
    user = unique("ctype")
    body = orjson.dumps({"userId": user, "event": "Plain", "writeKey": WRITE_KEY})
    answer = httpx.post(f"{kairos.url}/v1/t", content=body, headers={"Content-Type": "text/plain"})
    assert answer.status_code == 200, answer.text
    assert kairos.wait_profile(user)["counts"]["Plain"]["1h"] == 1


def test_gzip_body_is_accepted(kairos: Kairos) -> None:
    user = unique("gz")
    body = gzip.compress(
        orjson.dumps({"batch": [{"type": "track", "userId": user, "event": "Zipped"}]})
    )
    answer = httpx.post(
        f"{kairos.url}/v1/batch",
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        auth=(WRITE_KEY, ""),
    )
    assert answer.status_code == 200, answer.text
    kairos.wait_profile(user)


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_missing_or_unknown_write_key_gets_401_and_nothing_is_written(
    kairos: Kairos, key: str | None
) -> None:
    rejected, marker = unique("nokey"), unique("marker")
    answer = kairos.collect("/v1/track", {"userId": rejected, "event": "X"}, key=key)
    assert answer.status_code == 401
    assert answer.json()["success"] is False
    kairos.collect("/v1/track", {"userId": marker, "event": "X"})
    kairos.wait_profile(marker)
    assert kairos.profile(rejected).status_code == 404


def test_malformed_json_gets_400(kairos: Kairos) -> None:
    answer = httpx.post(f"{kairos.url}/v1/batch", content=b"{not json", auth=(WRITE_KEY, ""))
    assert answer.status_code == 400
    assert "JSON" in answer.json()["message"]


def test_invalid_event_gets_400_naming_the_field_and_no_event_of_the_batch_is_written(
    kairos: Kairos,
) -> None:
    good, marker = unique("good"), unique("marker")
    batch = {
        "batch": [
            {"type": "track", "userId": good, "event": "Fine"},
            {"type": "track", "userId": good, "properties": "not an object", "event": "Bad"},
        ]
    }
    answer = kairos.collect("/v1/batch", batch)
    assert answer.status_code == 400
    assert answer.json()["message"].startswith("batch[1].properties")
    kairos.collect("/v1/track", {"userId": marker, "event": "X"})
    kairos.wait_profile(marker)
    assert kairos.profile(good).status_code == 404


def test_event_over_32_kb_gets_413(kairos: Kairos) -> None:
    event = {"userId": unique("big"), "event": "Big", "properties": {"blob": "x" * 33_000}}
    answer = kairos.collect("/v1/track", event)
    assert answer.status_code == 413
    answer = kairos.collect("/v1/batch", {"batch": [{"type": "track", **event}]})
    assert answer.status_code == 413
    assert "32 KB" in answer.json()["message"]


def test_batch_over_500_kb_gets_413(kairos: Kairos) -> None:
    item = {
        "type": "track",
        "userId": unique("many"),
        "event": "E",
        "properties": {"p": "x" * 20_000},
    }
    answer = kairos.collect("/v1/batch", {"batch": [item] * 30})
    assert answer.status_code == 413
    assert "500 KB" in answer.json()["message"]


def test_profile_needs_the_admin_token(kairos: Kairos) -> None:
    user = unique("private")
    kairos.collect("/v1/track", {"userId": user, "event": "X"})
    kairos.wait_profile(user)
    assert httpx.get(f"{kairos.url}/users/{user}").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.get(f"{kairos.url}/users/{user}", headers=wrong).status_code == 401
    basic = {"Authorization": "Basic " + base64.b64encode(f"{ADMIN_TOKEN}:".encode()).decode()}
    assert httpx.get(f"{kairos.url}/users/{user}", headers=basic).status_code == 401


def test_unknown_user_gets_404(kairos: Kairos) -> None:
    assert kairos.profile(unique("nobody")).status_code == 404


def test_health_answers(kairos: Kairos) -> None:
    health = httpx.get(f"{kairos.url}/health").json()
    assert health["status"] == "ok"
    assert health["assigned_partitions"] > 0


def test_metrics_use_the_kairos_prefix_and_carry_no_user_ids(kairos: Kairos) -> None:
    user = unique("metric-user")
    kairos.collect("/v1/track", {"userId": user, "event": "Measured"})
    kairos.wait_profile(user)
    text = httpx.get(f"{kairos.url}/metrics").text
    for name in (
        "kairos_events_ingested_total",
        "kairos_events_processed_total",
        "kairos_events_invalid_total",
        "kairos_event_processing_seconds_bucket",
    ):
        assert name in text
    assert 'kairos_events_processed_total{type="track"}' in text
    assert user not in text
