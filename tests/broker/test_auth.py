"""The HTTP API is not an open door: write keys, the admin token, size limits, no PII out.

Complements tests/broker/test_http_api.py (a missing or unknown Basic key on /v1/track, no or a
wrong token on GET /users, 413 over 32 KB and 500 KB, one user id absent from /metrics) with
every collector path, malformed credentials, Faust's own endpoints, and what the worker's metrics
and INFO log say after traffic full of user ids, anonymous ids and e-mail addresses.
"""

from __future__ import annotations

import base64
import gzip
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from app.broker import EmbeddedBroker
from tests.broker.conftest import deployment
from tests.broker.harness import ADMIN_TOKEN, WRITE_KEY, Kairos

RUN = uuid.uuid4().hex[:6]
COLLECTOR_PATHS = [
    "/v1/batch", "/v1/b", "/v1/track", "/v1/t", "/v1/identify", "/v1/i", "/v1/page", "/v1/p",
    "/v1/screen", "/v1/s", "/v1/group", "/v1/g", "/v1/alias", "/v1/a",
]  # fmt: skip


@pytest.fixture(scope="module")
def guarded(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kairos]:
    """A worker of its own, at INFO (the harness's level), so its log holds only this traffic."""
    running = deployment(broker, tmp_path_factory.mktemp("auth"), "auth", workers=1)
    assert running.workers[0].env["KAIROS_LOG_LEVEL"] == "info"
    yield running
    running.stop()


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def body_for(path: str, user: str) -> dict[str, Any]:
    """A valid event for the collector path (the batch paths get a batch of one)."""
    kind = {"b": "batch", "t": "track", "i": "identify", "p": "page", "s": "screen"}.get(
        path.rsplit("/", 1)[1], path.rsplit("/", 1)[1]
    )
    kind = {"g": "group", "a": "alias"}.get(kind, kind)
    event: dict[str, Any] = {"userId": user, "event": "Tried", "groupId": "g", "previousId": "p"}
    if kind == "batch":
        return {"batch": [{"type": "track", **event}]}
    return event


def ingested(kairos: Kairos) -> float:
    text = httpx.get(f"{kairos.url}/metrics", timeout=5).text
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("kairos_events_ingested_total{")
    )


BAD_CREDENTIALS: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    ("no key at all", {}, {}),
    ("unknown Basic key", {"Authorization": basic("not-the-key")}, {}),
    ("the key as Basic password", {"Authorization": basic("", WRITE_KEY)}, {}),
    ("Basic, not base64", {"Authorization": "Basic !!!not-base64!!!"}, {}),
    ("Basic, not UTF-8", {"Authorization": "Basic " + base64.b64encode(b"\xff:").decode()}, {}),
    ("Basic without credentials", {"Authorization": "Basic"}, {}),
    ("the key as a Bearer token", {"Authorization": f"Bearer {WRITE_KEY}"}, {}),
    ("the bare key", {"Authorization": WRITE_KEY}, {}),
    ("a prefix of the key", {"Authorization": basic(WRITE_KEY[:-1])}, {}),
    ("the key with a suffix", {"Authorization": basic(WRITE_KEY + "x")}, {}),
    ("unknown writeKey in the body", {}, {"writeKey": "not-the-key"}),
    ("writeKey not a string", {}, {"writeKey": ["test-write-key"]}),
    ("empty writeKey", {}, {"writeKey": ""}),
    # A Basic header is the credential when present: a right body key does not rescue it.
    ("wrong Basic, right writeKey", {"Authorization": basic("nope")}, {"writeKey": WRITE_KEY}),
]


@pytest.mark.parametrize("path", COLLECTOR_PATHS)
def test_every_collector_path_refuses_writes_without_a_valid_write_key(
    guarded: Kairos, path: str
) -> None:
    before = ingested(guarded)
    users = []
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        for name, headers, extra in BAD_CREDENTIALS:
            user = f"intruder-{RUN}-{len(users)}"
            users.append(user)
            body = body_for(path, user)
            if "batch" in body:
                body.update(extra)
            else:
                body = {**body, **extra}
            answer = client.post(path, content=orjson.dumps(body), headers=headers)
            assert answer.status_code == 401, (name, answer.text)
            assert answer.json()["success"] is False
        # The same request with the key goes through: the 401s were about the key only.
        marker = f"marker-{RUN}-{path.rsplit('/', 1)[1]}"
        answer = client.post(path, json=body_for(path, marker), auth=(WRITE_KEY, ""))
        assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 10
    while ingested(guarded) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ingested(guarded) == before + 1
    for user in users:
        assert guarded.profile(user).status_code == 404


def test_a_refused_write_is_counted_as_401_not_as_invalid_input(guarded: Kairos) -> None:
    requests_401 = guarded.metric("kairos_http_requests_total", endpoint="track", status="401")
    invalid = sum(
        guarded.metric("kairos_events_invalid_total", reason=r, source="http")
        for r in ("auth", "invalid_event", "invalid_json", "too_large")
    )
    assert guarded.collect("/v1/track", {"userId": "x", "event": "E"}, key=None).status_code == 401
    after = guarded.metric("kairos_http_requests_total", endpoint="track", status="401")
    assert after == requests_401 + 1
    assert invalid == sum(
        guarded.metric("kairos_events_invalid_total", reason=r, source="http")
        for r in ("auth", "invalid_event", "invalid_json", "too_large")
    )


def test_size_and_json_are_checked_before_the_key_and_nothing_is_written(guarded: Kairos) -> None:
    # The key may be in the body, so the body is read (within the limits) and parsed first: a
    # request without a key can get 413 or 400 rather than 401. Either way nothing is written.
    before = ingested(guarded)
    big = orjson.dumps({"userId": "big", "event": "E", "properties": {"p": "x" * 40_000}})
    assert httpx.post(f"{guarded.url}/v1/track", content=big).status_code == 413
    assert httpx.post(f"{guarded.url}/v1/track", content=b"{nope").status_code == 400
    assert httpx.post(f"{guarded.url}/v1/track", content=b'{"userId": "u"}').status_code == 401
    assert ingested(guarded) == before


@pytest.mark.parametrize(
    ("name", "body", "headers", "status"),
    [
        ("over 4x the event limit", b"x" * (4 * 32 * 1024 + 1), {}, 413),
        ("over aiohttp's 4 MB", b'{"batch": [' + b" " * (5 * 1024 * 1024) + b"]}", {}, 413),
        (
            "gzip bomb",
            gzip.compress(b'{"batch": [' + b" " * 20_000_000 + b"]}"),
            {},
            413,
        ),
        (
            "gzip bomb, Content-Encoding",
            gzip.compress(b'{"batch": [' + b" " * 20_000_000 + b"]}"),
            {"Content-Encoding": "gzip", "Connection": "close"},
            413,
        ),
        (
            "not gzip, Content-Encoding",
            b'{"batch": []}',
            {"Content-Encoding": "gzip", "Connection": "close"},
            400,
        ),
    ],
)
def test_oversize_or_undecodable_bodies_are_refused_and_counted(
    guarded: Kairos, name: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    path = "/v1/track" if name.startswith("over 4x") else "/v1/batch"
    endpoint = path.rsplit("/", 1)[1]
    before = guarded.metric("kairos_http_requests_total", endpoint=endpoint, status=str(status))
    answer = httpx.post(
        f"{guarded.url}{path}", content=body, headers=headers, auth=(WRITE_KEY, ""), timeout=30
    )
    assert answer.status_code == status, answer.text
    after = guarded.metric("kairos_http_requests_total", endpoint=endpoint, status=str(status))
    assert after == before + 1
    assert guarded.workers[0].health() is not None


def test_a_body_that_is_not_its_content_encoding_is_refused_without_an_error_logged(
    guarded: Kairos,
) -> None:
    """aiohttp read the rest of such a body after the answer and logged the decoding error with
    its traceback at ERROR: any client could fill the logs."""
    log = guarded.workers[0].log_path
    start = log.stat().st_size
    with httpx.Client(auth=(WRITE_KEY, "")) as client:  # keep-alive, as a client would
        answer = client.post(
            f"{guarded.url}/v1/track",
            content=b'{"userId": "u", "event": "E"}',
            headers={"Content-Encoding": "gzip"},
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["message"] == "body: cannot be decoded (Content-Encoding)"
        assert answer.headers["Connection"] == "close"
        follow = client.post(f"{guarded.url}/v1/track", json={"userId": "u", "event": "E"})
        assert follow.status_code == 200  # on a new connection
    time.sleep(0.5)
    written = log.read_bytes()[start:].decode(errors="replace")
    assert "Unhandled exception" not in written
    assert "Traceback" not in written


BAD_TOKENS: list[tuple[str, dict[str, str]]] = [
    ("no token", {}),
    ("wrong token", {"Authorization": "Bearer not-the-token"}),
    ("Bearer without a token", {"Authorization": "Bearer"}),
    ("Bearer without a space", {"Authorization": f"Bearer{ADMIN_TOKEN}"}),
    ("the bare token", {"Authorization": ADMIN_TOKEN}),
    ("a prefix of the token", {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}),
    ("the token with a suffix", {"Authorization": f"Bearer {ADMIN_TOKEN}x"}),
    ("the write key", {"Authorization": f"Bearer {WRITE_KEY}"}),
    ("the token as Basic user", {"Authorization": basic(ADMIN_TOKEN)}),
    ("the token in another header", {"X-Admin-Token": ADMIN_TOKEN}),
]


def test_profiles_are_not_read_without_the_admin_token(guarded: Kairos) -> None:
    user, visitor = f"reader-{RUN}@example.com", f"visitor-{RUN}"
    assert guarded.collect("/v1/track", {"userId": user, "event": "E"}).status_code == 200
    assert guarded.collect("/v1/page", {"anonymousId": visitor}).status_code == 200
    guarded.wait_profile(user)
    guarded.wait_profile(f"anon:{visitor}")
    # An unknown user is refused the same way: no 404 tells an intruder who exists.
    for target in (user, f"anon:{visitor}", f"nobody-{RUN}"):
        for name, headers in BAD_TOKENS:
            answer = httpx.get(f"{guarded.url}/users/{target}", headers=headers)
            assert answer.status_code == 401, (target, name, answer.text)
            assert target not in answer.text
        answer = httpx.get(f"{guarded.url}/users/{target}", params={"token": ADMIN_TOKEN})
        assert answer.status_code == 401
    lower = {"Authorization": f"bearer {ADMIN_TOKEN}"}  # the scheme is case-insensitive
    assert httpx.get(f"{guarded.url}/users/{user}", headers=lower).status_code == 200


def test_faust_endpoints_do_not_serve_table_data(guarded: Kairos) -> None:
    user = f"tables-{RUN}@example.com"
    assert guarded.collect("/v1/track", {"userId": user, "event": "E"}).status_code == 200
    guarded.wait_profile(user)
    for path in ("/table/", "/table/profiles/", f"/table/profiles/{user}/", "/graph/"):
        answer = httpx.get(f"{guarded.url}{path}")
        assert answer.status_code in (401, 404), (path, answer.status_code, answer.text[:200])
        assert user not in answer.text
    for path in ("/", "/router/", f"/router/profiles/{user}/", "/stats/", "/assignment/"):
        answer = httpx.get(f"{guarded.url}{path}")
        assert user not in answer.text, path
        assert '"traits"' not in answer.text, path


PII_RUN = uuid.uuid4().hex[:8]
PII = {
    "user": f"pii-user-{PII_RUN}",
    "email": f"pii.{PII_RUN}@example.com",
    "anonymous": f"pii-anon-{PII_RUN}",
    "crm": f"pii-crm-{PII_RUN}@example.com",
    "bad": f"pii-bad-{PII_RUN}",
}


@pytest.fixture(scope="module")
def traffic(guarded: Kairos) -> Kairos:
    """Good and bad traffic carrying user ids, anonymous ids and e-mail addresses."""
    events = [
        {"type": "identify", "userId": PII["email"], "traits": {"email": PII["email"]}},
        {"type": "track", "userId": PII["user"], "event": "Product Viewed",
         "properties": {"product_id": "A", "email": PII["email"]}},
        {"type": "page", "anonymousId": PII["anonymous"], "name": "Home"},
        {"type": "identify", "anonymousId": PII["anonymous"], "userId": PII["user"]},
        {"type": "alias", "previousId": PII["anonymous"], "userId": PII["email"]},
    ]  # fmt: skip
    for event in events:
        assert guarded.collect("/v1/batch", {"batch": [event]}).status_code == 200
    # Refused over HTTP, and dead-lettered from the input topics: the reasons name the ids.
    bad = {"type": "track", "userId": PII["bad"], "properties": "not an object", "event": "E"}
    assert guarded.collect("/v1/batch", {"batch": [bad]}).status_code == 400
    assert (
        guarded.collect("/v1/track", {"userId": PII["bad"] + "\x00", "event": "E"}).status_code
        == 400
    )
    guarded.produce(
        "events", [orjson.dumps(bad), orjson.dumps({**bad, "userId": "\x01" + PII["bad"]})]
    )
    guarded.produce("crm", [
        orjson.dumps({"user_id": PII["crm"], "traits": {"plan": "pro"}}),
        orjson.dumps({"user_id": PII["crm"], "traits": "bad"}),
        orjson.dumps({"user_id": PII["crm"], "traits": {}, "typo": PII["email"]}),
    ])  # fmt: skip
    guarded.produce("profiles", [orjson.dumps({"user_id": PII["crm"], "set": {"tier": "gold"}})])
    guarded.wait_profile(PII["user"], lambda p: p["events_total"] >= 2)
    guarded.wait_profile(PII["crm"], lambda p: p["traits"].get("tier") == "gold")
    guarded.wait_profile(PII["email"])
    deadline_letters = 4
    for _ in range(100):
        letters = guarded.read_topic("dlq", idle=0.3)
        if len(letters) >= deadline_letters:
            break
    assert len(letters) >= deadline_letters
    return guarded


def pii_found(text: str) -> list[str]:
    lowered = text.lower()
    found = [value for value in PII.values() if value.lower() in lowered]
    return found + ([PII_RUN] if PII_RUN in text and not found else [])


def test_metric_labels_never_carry_user_ids_anonymous_ids_or_emails(traffic: Kairos) -> None:
    text = httpx.get(f"{traffic.url}/metrics", timeout=5).text
    labels = re.findall(r'="((?:[^"\\]|\\.)*)"', text)
    assert labels, "no labelled series at all"
    assert not pii_found("\n".join(labels))
    assert not pii_found(text)
    assert not [value for value in labels if "@" in value]


def test_the_info_log_carries_no_user_ids_anonymous_ids_or_emails(traffic: Kairos) -> None:
    log = traffic.workers[0].log_path.read_text(errors="replace")
    assert "dead-lettered a record" in log, "the traffic did not reach the log"
    assert "[INFO]" in log, "the worker does not log at INFO"
    assert not pii_found(log), [line for line in log.splitlines() if pii_found(line)][:5]
    assert not re.search(r"[\w.+-]+@example\.com", log)
