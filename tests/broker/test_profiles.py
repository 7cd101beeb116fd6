"""Events from every door reach the user's profile: Segment client, input topics, identity."""

from __future__ import annotations

import base64
import time
import uuid

import orjson
import segment.analytics as segment_analytics

from tests.broker.harness import WRITE_KEY, Kairos, json_values


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_segment_client_identify_track_and_page_build_the_profile(kairos: Kairos) -> None:
    user = unique("ada")
    client = segment_analytics.Client(WRITE_KEY, host=kairos.url, sync_mode=True)
    client.identify(user, {"email": "ada@example.com", "plan": "pro"})
    client.track(user, "Product Viewed", {"product_id": "A", "name": "Lamp"})
    client.track(user, "Product Viewed", {"product_id": "B"})
    client.track(user, "Product Viewed", {"product_id": "A", "name": "Lamp"})
    client.page(user, "Docs", "Pricing", {"path": "/pricing"})
    client.flush()

    profile = kairos.wait_profile(user, lambda p: p["events_total"] == 4)

    assert profile["traits"] == {"email": "ada@example.com", "plan": "pro"}
    assert profile["trait_sources"]["plan"]["source"] == "identify"
    assert profile["counts"]["Product Viewed"]["7d"] == 3
    assert profile["counts"]["Page Viewed"]["24h"] == 1
    assert [item["id"] for item in profile["recent_items"]] == ["A", "B"]
    assert profile["recent_items"][0]["name"] == "Lamp"
    assert profile["last_seen"] >= profile["first_seen"]
    assert profile["last_seen"].endswith("Z")


def test_gzip_segment_client_is_accepted(kairos: Kairos) -> None:
    user = unique("gzip")
    client = segment_analytics.Client(WRITE_KEY, host=kairos.url, sync_mode=True, gzip=True)
    client.track(user, "Signed Up")
    client.flush()
    assert kairos.wait_profile(user)["counts"]["Signed Up"]["1h"] == 1


def test_alias_merges_an_anonymous_visitor_into_the_known_user(kairos: Kairos) -> None:
    visitor, user = unique("visitor"), unique("grace")
    for product in ("A", "B"):
        event = {
            "anonymousId": visitor,
            "event": "Product Viewed",
            "properties": {"product_id": product},
        }
        assert kairos.collect("/v1/track", event).status_code == 200
    kairos.wait_profile(f"anon:{visitor}", lambda p: p.get("events_total") == 2)
    kairos.collect("/v1/track", {"userId": user, "event": "Signed Up"})
    kairos.wait_profile(user)

    assert kairos.collect("/v1/alias", {"previousId": visitor, "userId": user}).status_code == 200

    profile = kairos.wait_profile(user, lambda p: p["events_total"] == 3)
    assert profile["counts"]["Product Viewed"]["7d"] == 2
    assert profile["counts"]["Signed Up"]["7d"] == 1
    assert visitor in profile["anonymous_ids"]
    assert kairos.profile(f"anon:{visitor}").json() == {
        "user_id": f"anon:{visitor}",
        "merged_into": user,
    }


def test_identify_attributes_later_anonymous_events_to_the_user(kairos: Kairos) -> None:
    visitor, user = unique("device"), unique("linus")
    kairos.collect("/v1/page", {"anonymousId": visitor, "name": "Home"})
    kairos.collect(
        "/v1/identify", {"anonymousId": visitor, "userId": user, "traits": {"role": "admin"}}
    )
    kairos.wait_profile(user, lambda p: p["traits"].get("role") == "admin")

    kairos.collect("/v1/track", {"anonymousId": visitor, "event": "Cart Viewed"})

    profile = kairos.wait_profile(user, lambda p: "Cart Viewed" in p["counts"])
    assert profile["counts"]["Page Viewed"]["1h"] == 1  # the page from before the identify
    assert kairos.profile(f"anon:{visitor}").json()["merged_into"] == user


def test_crm_record_meets_segment_events_on_one_normalized_key(kairos: Kairos) -> None:
    email = f"{unique('marie')}@example.com"
    kairos.collect("/v1/track", {"userId": email, "event": "Logged In"})
    crm = {
        "user_id": f"  {email.upper()} ",
        "traits": {"role": "admin", "plan": "enterprise"},
        "source": "salesforce",
    }
    kairos.produce("crm", [orjson.dumps(crm)])

    # The CRM record takes one hop fewer than the event (no identity stage): either may come first.
    profile = kairos.wait_profile(
        email, lambda p: p["traits"].get("plan") == "enterprise" and "Logged In" in p["counts"]
    )
    assert profile["traits"]["role"] == "admin"
    assert profile["trait_sources"]["plan"]["source"] == "salesforce"
    assert profile["counts"]["Logged In"]["1h"] == 1


def test_profile_update_sets_and_unsets_traits(kairos: Kairos) -> None:
    user = unique("pat")
    kairos.produce(
        "profiles", [orjson.dumps({"user_id": user, "set": {"tier": "gold", "beta": True}})]
    )
    kairos.wait_profile(user, lambda p: p["traits"].get("tier") == "gold")
    kairos.produce("profiles", [orjson.dumps({"user_id": user, "unset": ["beta"]})])
    profile = kairos.wait_profile(user, lambda p: "beta" not in p["traits"])
    assert profile["traits"] == {"tier": "gold"}


def test_bad_input_is_dead_lettered_with_reason_and_the_next_good_event_is_processed(
    kairos: Kairos,
) -> None:
    user = unique("after-bad")
    marker = unique("marker")
    bad_json = b'{"type": "track", "userId": '
    no_identity = orjson.dumps({"type": "track", "event": "X", "messageId": marker})
    good = orjson.dumps({"type": "track", "userId": user, "event": "Recovered"})
    kairos.produce("events", [bad_json, no_identity, good])
    kairos.produce("crm", [orjson.dumps({"traits": {"plan": "x"}, "marker": marker})])

    assert kairos.wait_profile(user)["counts"]["Recovered"]["1h"] == 1
    letters = [
        letter
        for letter in json_values(kairos.read_topic("dlq"))
        if base64.b64decode(letter["original"]) in (bad_json, no_identity)
        or marker.encode() in base64.b64decode(letter["original"])
    ]
    by_original = {base64.b64decode(letter["original"]): letter for letter in letters}
    assert by_original[bad_json]["reason_code"] == "invalid_json"
    assert by_original[bad_json]["source_topic"] == kairos.topic("events")
    assert by_original[no_identity]["reason_code"] == "invalid_event"
    assert "userId" in by_original[no_identity]["reason"]
    crm_letters = [letter for letter in letters if letter["source_topic"] == kairos.topic("crm")]
    assert len(crm_letters) == 1
    assert "user_id" in crm_letters[0]["reason"]


def test_events_with_the_same_message_id_count_once(kairos: Kairos) -> None:
    user = unique("dup")
    event = {"userId": user, "event": "Order Completed", "messageId": unique("msg")}
    for _ in range(3):
        assert kairos.collect("/v1/track", event).status_code == 200
    kairos.collect("/v1/track", {"userId": user, "event": "Marker"})
    profile = kairos.wait_profile(user, lambda p: "Marker" in p["counts"])
    assert profile["counts"]["Order Completed"]["1h"] == 1
    assert profile["events_total"] == 2


def test_a_burst_of_events_is_applied_exactly_once_each(kairos: Kairos) -> None:
    """Batches under load: no event lost or doubled between the agents (a take_events race)."""
    run = unique("burst")
    users = [f"{run}-{i}" for i in range(200)]
    expected = {user: 0 for user in users}
    events = []
    for i in range(3000):
        user = users[(i * 7919) % len(users)]
        expected[user] += 1
        events.append(
            orjson.dumps(
                {"type": "track", "userId": user, "event": "Burst", "messageId": f"{run}-{i}"}
            )
        )
    kairos.produce("events", events)

    deadline = time.monotonic() + 60
    while True:
        counts = {user: _events_total(kairos, user) for user in users}
        if counts == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert counts == expected


def _events_total(kairos: Kairos, user: str) -> int:
    answer = kairos.profile(user)
    return int(answer.json()["events_total"]) if answer.status_code == 200 else 0
