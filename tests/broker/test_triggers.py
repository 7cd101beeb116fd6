"""Events sent to the collector become the expected triggers on `kairos.triggers`."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from engine.clock import iso
from schemas.triggers import Trigger
from tests.broker.harness import Kairos


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def of_type(triggers: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [t for t in triggers if t["type"] == f"kairos.trigger.{kind}"]


def test_viewing_product_a_publishes_a_discount_cloudevent_keyed_by_user(kairos: Kairos) -> None:
    user = unique("ada")
    kairos.collect("/v1/identify", {"userId": user, "traits": {"first_name": "Ada"}})
    event = {
        "userId": user,
        "event": "Product Viewed",
        "properties": {"product_id": "A", "name": "Lamp"},
    }
    kairos.collect("/v1/track", event)

    triggers = kairos.wait_triggers({user}, lambda ts: bool(of_type(ts, "discount_offer")))
    [offer] = of_type(triggers, "discount_offer")
    assert offer["key"] == user
    Trigger.model_validate({k: v for k, v in offer.items() if k != "key"})
    assert offer["subject"] == user
    assert offer["data"]["content"]["subject"] == "Ada, 10% off Lamp"
    explanation = offer["data"]["explanation"]
    assert (
        "count(Product Viewed where product_id eq 'A', 7d) = 1 gte 1: true"
        in explanation["conditions"]
    )
    assert explanation["rule_version"] == 1


def test_a_second_view_within_the_cooldown_is_suppressed(kairos: Kairos) -> None:
    user = unique("twice")
    before = kairos.metric(
        "kairos_triggers_suppressed_total", rule="product_a_discount", reason="cooldown"
    )
    for _ in range(2):
        kairos.collect(
            "/v1/track",
            {"userId": user, "event": "Product Viewed", "properties": {"product_id": "A"}},
        )
    kairos.collect("/v1/track", {"userId": user, "event": "Marker"})
    kairos.wait_profile(user, lambda p: "Marker" in p["counts"])
    triggers = kairos.wait_triggers({user}, lambda ts: bool(of_type(ts, "discount_offer")))
    assert len(of_type(triggers, "discount_offer")) == 1
    after = kairos.metric(
        "kairos_triggers_suppressed_total", rule="product_a_discount", reason="cooldown"
    )
    assert after == before + 1


def test_a_new_visitor_gets_the_onboarding_tutorial(kairos: Kairos) -> None:
    user = unique("newbie")
    kairos.collect("/v1/page", {"userId": user, "name": "Home", "properties": {"path": "/"}})
    triggers = kairos.wait_triggers({user}, lambda ts: bool(of_type(ts, "onboarding_tutorial")))
    assert of_type(triggers, "onboarding_tutorial")[0]["data"]["channel"] == "in_app"


def test_three_pricing_visits_publish_the_tooltip(kairos: Kairos) -> None:
    user = unique("shopper")
    for _ in range(3):
        kairos.collect(
            "/v1/page", {"userId": user, "name": "Pricing", "properties": {"path": "/pricing"}}
        )
    triggers = kairos.wait_triggers({user}, lambda ts: bool(of_type(ts, "pricing_tooltip")))
    assert len(of_type(triggers, "pricing_tooltip")) == 1


def test_a_crm_record_making_a_user_admin_starts_the_admin_onboarding(kairos: Kairos) -> None:
    user = unique("boss")
    kairos.produce(
        "crm", [orjson.dumps({"user_id": user, "traits": {"role": "admin"}, "source": "hubspot"})]
    )
    triggers = kairos.wait_triggers({user}, lambda ts: bool(of_type(ts, "admin_onboarding")))
    assert of_type(triggers, "admin_onboarding")[0]["data"]["explanation"]["cause"]["event"] == (
        "Traits Updated"
    )


def test_a_score_drop_below_20_publishes_a_reengagement_email(kairos: Kairos) -> None:
    user = unique("fan")
    for order in ("o1", "o2"):
        kairos.collect(
            "/v1/track",
            {"userId": user, "event": "Order Completed", "properties": {"order_id": order}},
        )
    kairos.collect("/v1/track", {"userId": user, "event": "Subscription Cancelled"})
    triggers = kairos.wait_triggers({user}, lambda ts: bool(of_type(ts, "reengagement")))
    [email] = of_type(triggers, "reengagement")
    assert email["data"]["explanation"]["engagement_score"] < 20


def test_a_broken_template_falls_back_or_is_skipped_and_counted(kairos: Kairos) -> None:
    user = unique("templated")
    skipped_before = kairos.metric(
        "kairos_triggers_suppressed_total", rule="broken_without_fallback", reason="render_failed"
    )
    kairos.collect("/v1/track", {"userId": user, "event": "Template Check"})
    kairos.collect("/v1/track", {"userId": user, "event": "Template Check Strict"})
    kairos.wait_profile(user, lambda p: "Template Check Strict" in p["counts"])

    triggers = kairos.wait_triggers({user}, lambda ts: bool(of_type(ts, "template_check")))
    [fallback] = of_type(triggers, "template_check")
    assert fallback["data"]["content"] == {"text": "Hi there"}
    assert fallback["data"]["explanation"]["content_source"].startswith("fallback")
    assert of_type(triggers, "template_check_strict") == []
    skipped_after = kairos.metric(
        "kairos_triggers_suppressed_total", rule="broken_without_fallback", reason="render_failed"
    )
    assert skipped_after == skipped_before + 1


def test_replay_of_the_same_events_yields_the_same_trigger_ids(
    kairos: Kairos, tmp_path: Path
) -> None:
    run = unique("replay")
    now = int(time.time() * 1000) - 60_000
    events: list[dict[str, Any]] = []

    def add(offset_ms: int, **event: Any) -> None:
        events.append(
            {"messageId": f"{run}-{len(events)}", "timestamp": iso(now + offset_ms), **event}
        )

    ada, bob, visitor = f"{run}-ada", f"{run}-bob", f"{run}-visitor"
    add(0, type="identify", userId=ada, traits={"first_name": "Ada", "role": "admin"})
    add(1, type="track", userId=ada, event="Product Viewed", properties={"product_id": "A"})
    add(2, type="track", userId=ada, event="Product Viewed", properties={"product_id": "A"})
    for i in range(3):
        add(10 + i, type="page", userId=bob, name="Pricing", properties={"path": "/pricing"})
    add(20, type="page", anonymousId=visitor, name="Home", properties={"path": "/"})
    add(21, type="identify", anonymousId=visitor, userId=f"{run}-carol", traits={})
    for event in events:
        assert kairos.collect(f"/v1/{event['type']}", event).status_code == 200

    users = {ada, bob, f"{run}-carol", f"anon:{visitor}"}
    live = kairos.wait_triggers(users, lambda ts: len(ts) >= 5, timeout=30)
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    replayed = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "replay",
            str(events_file),
            "--json",
            "--rules",
            str(kairos.rules_dir),
        ],
        capture_output=True,
        check=True,
    )
    offline = [
        orjson.loads(line) for line in replayed.stdout.splitlines() if b'"specversion"' in line
    ]

    assert len(offline) >= 5

    def show(triggers: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
        return sorted(
            (t["id"], t["type"], t["subject"], t["data"]["explanation"]["cause"]["id"])
            for t in triggers
        )

    assert show(live) == show(offline)
