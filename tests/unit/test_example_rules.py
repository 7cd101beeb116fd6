"""The shipped example rules do what their descriptions say (through the replay pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from app.replay import ReplayResult, replay
from app.rule_files import load_rulebook
from engine.clock import DAY_MS, HOUR_MS, MINUTE_MS, iso
from engine.rules import RuleBook
from schemas.triggers import Trigger

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rules"
T0 = 1_795_000_000_000


@pytest.fixture(scope="module")
def book() -> RuleBook:
    return load_rulebook(EXAMPLES)


class Script:
    """A sequence of Segment events for one test, written as JSONL lines."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def add(self, at: int, **event: Any) -> Script:
        event.setdefault("messageId", f"m{len(self.lines)}")
        event["timestamp"] = iso(at)
        self.lines.append(orjson.dumps(event))
        return self

    def track(self, at: int, user: str, event: str, **properties: Any) -> Script:
        return self.add(at, type="track", userId=user, event=event, properties=properties)

    def page(self, at: int, user: str, path: str) -> Script:
        return self.add(at, type="page", userId=user, name=path, properties={"path": path})

    def run(self, book: RuleBook) -> ReplayResult:
        result = replay(self.lines, book)
        for trigger in result.triggers:
            Trigger.model_validate(trigger)
        return result


def types(result: ReplayResult) -> list[str]:
    return [t["type"].removeprefix("kairos.trigger.") for t in result.triggers]


def test_viewing_product_a_triggers_a_discount_offer_for_product_a(book: RuleBook) -> None:
    result = Script().track(T0, "ada", "Product Viewed", product_id="A", name="Lamp").run(book)
    [offer] = [t for t in result.triggers if t["type"] == "kairos.trigger.discount_offer"]
    assert offer["subject"] == "ada"
    assert offer["data"]["channel"] == "email"
    assert offer["data"]["content"]["subject"] == "Hello, 10% off Lamp"
    assert offer["data"]["content"]["product_id"] == "A"
    assert (
        "count(Product Viewed where product_id eq 'A', 7d) = 1 gte 1: true"
        in (offer["data"]["explanation"]["conditions"])
    )


def test_viewing_another_product_triggers_no_discount(book: RuleBook) -> None:
    result = Script().track(T0, "ada", "Product Viewed", product_id="B").run(book)
    assert "discount_offer" not in types(result)


def test_the_discount_is_not_repeated_within_its_7_day_cooldown(book: RuleBook) -> None:
    script = Script()
    for day in (0, 1, 8):
        script.track(T0 + day * DAY_MS, "ada", "Product Viewed", product_id="A")
    result = script.run(book)
    assert types(result).count("discount_offer") == 2
    assert [s.reason for s in result.suppressed if s.type == "discount_offer"] == ["cooldown"]


def test_recent_customers_get_no_discount(book: RuleBook) -> None:
    script = Script().track(T0, "ada", "Order Completed", order_id="o1")
    script.track(T0 + HOUR_MS, "ada", "Product Viewed", product_id="A")
    assert "discount_offer" not in types(script.run(book))


def test_a_new_visitor_who_has_not_onboarded_gets_the_tutorial(book: RuleBook) -> None:
    result = Script().page(T0, "newbie", "/home").run(book)
    [tutorial] = [t for t in result.triggers if t["type"] == "kairos.trigger.onboarding_tutorial"]
    assert tutorial["data"]["channel"] == "in_app"
    assert tutorial["data"]["content"]["title"].startswith("Welcome, friend!")


def test_a_visitor_who_completed_onboarding_gets_no_tutorial(book: RuleBook) -> None:
    script = Script().track(T0, "done", "Onboarding Completed")
    script.page(T0 + MINUTE_MS, "done", "/home")
    assert "onboarding_tutorial" not in types(script.run(book))


def test_a_returning_visitor_gets_no_tutorial(book: RuleBook) -> None:
    script = Script().page(T0, "old", "/home").page(T0 + 2 * DAY_MS, "old", "/home")
    assert types(script.run(book)).count("onboarding_tutorial") == 1


def test_a_crm_admin_gets_the_admin_onboarding(book: RuleBook) -> None:
    script = Script().add(T0, type="identify", userId="root", traits={"role": "admin"})
    [onboarding] = [t for t in script.run(book).triggers if "admin_onboarding" in t["type"]]
    assert onboarding["data"]["explanation"]["conditions"] == [
        "trait.role = 'admin' eq 'admin': true"
    ]


def test_score_dropping_below_20_triggers_a_reengagement_email(book: RuleBook) -> None:
    script = Script().track(T0, "fan", "Order Completed", order_id="o1")
    script.track(T0, "fan", "Order Completed", order_id="o2")  # score 40
    script.track(T0 + 2 * MINUTE_MS, "fan", "Subscription Cancelled")  # 40 - 30 = 10
    result = script.run(book)
    [email] = [t for t in result.triggers if t["type"] == "kairos.trigger.reengagement"]
    assert email["data"]["explanation"]["engagement_score"] == pytest.approx(10, abs=0.01)
    assert email["data"]["explanation"]["conditions"][0].startswith(
        "engagement score fell from 40.00 to 9.99, below 20"  # two minutes of decay
    )


def test_a_long_silence_is_noticed_as_a_drop_at_the_next_event(book: RuleBook) -> None:
    script = Script().track(T0, "quiet", "Order Completed", order_id="o1")
    script.track(T0 + MINUTE_MS, "quiet", "Product Added")  # 25
    script.page(T0 + 21 * DAY_MS, "quiet", "/home")  # three half-lives later: ~3.1 + 1
    assert "reengagement" in types(script.run(book))


def test_a_score_that_never_was_above_20_triggers_nothing(book: RuleBook) -> None:
    script = Script().track(T0, "casual", "Product Added").page(T0 + DAY_MS, "casual", "/home")
    assert "reengagement" not in types(script.run(book))


def test_three_pricing_visits_in_a_day_show_the_tooltip(book: RuleBook) -> None:
    script = Script()
    for hour in range(3):
        script.page(T0 + hour * HOUR_MS, "shopper", "/pricing")
    result = script.run(book)
    [tooltip] = [t for t in result.triggers if t["type"] == "kairos.trigger.pricing_tooltip"]
    assert tooltip["time"] == iso(T0 + 2 * HOUR_MS)
    assert "= 3 gte 3: true" in tooltip["data"]["explanation"]["summary"]


def test_pricing_visits_spread_over_days_show_no_tooltip(book: RuleBook) -> None:
    script = Script()
    for day in range(3):
        script.page(T0 + day * 2 * DAY_MS, "browser", "/pricing")
    assert "pricing_tooltip" not in types(script.run(book))


def test_a_cart_not_checked_out_within_30_minutes_gets_one_reminder(book: RuleBook) -> None:
    script = Script().track(T0, "carla", "Product Added", cart_id="c1", name="Lamp")
    script.page(T0 + 40 * MINUTE_MS, "carla", "/home")  # later activity: the clock has moved on
    result = script.run(book)
    [reminder] = [t for t in result.triggers if t["type"] == "kairos.trigger.cart_reminder"]
    assert reminder["time"] == iso(T0 + 30 * MINUTE_MS)
    assert reminder["data"]["content"] == {"subject": "Still thinking about Lamp?", "cart_id": "c1"}
    timer = reminder["data"]["explanation"]["timer"]
    assert (timer["kind"], timer["armed_at"]) == ("absence", iso(T0))
    assert reminder["data"]["explanation"]["conditions"][0].startswith(
        "no Order Completed with cart_id = 'c1' within 30m of Product Added"
    )


def test_a_cart_checked_out_in_time_gets_no_reminder(book: RuleBook) -> None:
    script = Script().track(T0, "olga", "Product Added", cart_id="c1")
    script.track(T0 + 10 * MINUTE_MS, "olga", "Order Completed", cart_id="c1")
    script.page(T0 + 2 * HOUR_MS, "olga", "/home")
    assert "cart_reminder" not in types(script.run(book))


def test_two_carts_are_independent(book: RuleBook) -> None:
    script = Script().track(T0, "dora", "Product Added", cart_id="c1")
    script.track(T0 + 2 * HOUR_MS, "dora", "Product Added", cart_id="c2")
    script.track(T0 + 2 * HOUR_MS + MINUTE_MS, "dora", "Order Completed", cart_id="c2")
    script.page(T0 + 5 * HOUR_MS, "dora", "/home")
    reminders = [
        t for t in script.run(book).triggers if t["type"] == "kairos.trigger.cart_reminder"
    ]
    assert [r["data"]["content"]["cart_id"] for r in reminders] == ["c1"]


def test_24_hours_of_inactivity_nudge_once_and_rearm_on_comeback(book: RuleBook) -> None:
    script = Script().page(T0, "ivy", "/home")
    script.page(T0 + 3 * DAY_MS, "ivy", "/home")  # back after 3 days: one nudge, re-armed
    script.page(T0 + 3 * DAY_MS + HOUR_MS, "ivy", "/home")  # the timer moves to +25h
    script.page(T0 + 10 * DAY_MS, "ivy", "/home")
    nudges = [t for t in script.run(book).triggers if t["type"] == "kairos.trigger.comeback_nudge"]
    assert [n["time"] for n in nudges] == [
        iso(T0 + DAY_MS),
        iso(T0 + 4 * DAY_MS + HOUR_MS),
    ]
