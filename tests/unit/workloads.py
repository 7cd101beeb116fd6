"""Equivalence workloads: a rule set that uses every condition kind, operator and entry form, and
a stream of Segment events of every call type to replay through it.

What an optimization of the engine must leave byte-identical: `bench.decide --check` replays these
before and after a change, and tests/unit/test_predicates.py replays one against a reference
evaluation in the same process. Events: anonymous visitors who log in later, aliases, groups,
CRM trait records, late and duplicate events, and gaps of days so timers of every kind come due.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

import app.replay as replay_module
from app.replay import Replay, ReplayResult
from engine.clock import DAY_MS, HOUR_MS, MINUTE_MS, iso
from engine.records import TraitsRecord
from engine.rules import RuleBook

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "rules"

T0 = 1_795_000_000_000
TEST_RULES = ROOT / "tests" / "broker" / "rules"

#: Rules that use every condition kind, operator and entry form, for the equivalence check.
COVERAGE_RULES: dict[str, Any] = {
    "segments": [
        {"id": "pro_users", "if": {"trait": "plan", "op": "in", "value": ["pro", "team"]}},
        {
            "id": "engaged_pro",
            "if": {"all": [{"segment": "pro_users"}, {"score": {"op": "gte", "value": 10}}]},
        },
    ],
    "rules": [
        {
            "id": "cov_property_ops",
            "priority": 3,
            "when": {"event": ["Product Viewed", "Product Added"]},
            "if": {
                "any": [
                    {"property": "tags", "op": "contains", "value": "sale"},
                    {"property": "name", "op": "contains", "value": "Lamp"},
                    {"property": "cart.total", "op": "gte", "value": 100},
                    {"property": "product_id", "op": "not_in", "value": ["A", "P1", "P2"]},
                    {"property": "price", "op": "lt", "value": 12.5},
                ]
            },
            "then": {
                "type": "cov_ops",
                "channel": "push",
                "cooldown": "2h",
                "content": {"text": "{{ event.properties.name | default: 'thing' }}"},
            },
        },
        {
            "id": "cov_exists",
            "when": {"event": "*", "where": [{"property": "coupon", "op": "exists"}]},
            "if": {
                "all": [
                    {"property": "coupon.code", "op": "not_exists"},
                    {"property": "coupon", "op": "ne", "value": "EXPIRED"},
                    {"property": "flag", "op": "eq", "value": True},
                ]
            },
            "then": {"type": "cov_exists", "channel": "in_app", "content": {"c": "x"}},
        },
        {
            "id": "cov_recency",
            "priority": 1,
            "when": {"event": ["Page Viewed", "Screen Viewed"]},
            "if": {
                "any": [
                    {"first_seen": {"older_than": "3d"}},
                    {"first_seen": {"within": "1h"}},
                    {"last_seen": {"older_than": "1d"}},
                    {"last_seen": {"within": "10m"}},
                    {"new_visitor": False},
                ]
            },
            "then": {
                "type": "cov_recency",
                "channel": "in_app",
                "cooldown": "6h",
                "content": {"t": "{{ user.first_seen }} {{ user.last_seen }}"},
            },
        },
        {
            "id": "cov_score",
            "when": {"event": "*"},
            "if": {
                "any": [
                    {"score": {"dropped_below": 8}},
                    {
                        "all": [
                            {"score": {"op": "lt", "value": 3.5}},
                            {"not": {"segment": "pro_users"}},
                        ]
                    },
                    {
                        "not": {
                            "any": [{"score": {"op": "ne", "value": 0}}, {"segment": "engaged_pro"}]
                        }
                    },
                ]
            },
            "then": {
                "type": "cov_score",
                "channel": "email",
                "cooldown": "1d",
                "content": {"s": "{{ user.score }}"},
            },
        },
        {
            "id": "cov_traits",
            "priority": 2,
            "when": {"event": ["Identify", "Traits Updated", "Group", "Alias"]},
            "if": {
                "any": [
                    {"trait": "address.city", "op": "eq", "value": "Paris"},
                    {"trait": "seats", "op": "gt", "value": 10},
                    {"trait": "name", "op": "gte", "value": "M"},
                    {"trait": "role", "op": "exists"},
                ]
            },
            "then": {
                "type": "cov_traits",
                "channel": "email",
                "content": {"hi": "{{ user.traits.name }}"},
                "fallback": {"hi": "there"},
            },
        },
        {
            "id": "cov_counts",
            "priority": 4,
            "when": {"event": "Order Completed"},
            "if": {
                "all": [
                    {
                        "count": {
                            "event": "Product Added",
                            "where": [
                                {"property": "price", "op": "gt", "value": 20},
                                {"property": "product_id", "op": "ne", "value": "A"},
                            ],
                            "within": "2h",
                        },
                        "op": "gte",
                        "value": 1,
                    },
                    {"count": {"event": "Page Viewed", "within": "3d"}, "op": "lte", "value": 40},
                    {
                        "count": {"event": "Order Completed", "within": "30m"},
                        "op": "lt",
                        "value": 3,
                    },
                ]
            },
            "then": {"type": "cov_counts", "channel": "email", "content": {"n": "order"}},
        },
        {
            "id": "cov_absence_if",
            "when": {"event": "Checkout Started"},
            "unless": {
                "event": "Order Completed",
                "where": [{"property": "total", "op": "gt", "value": 0}],
                "match": ["cart_id"],
            },
            "within": "2h",
            "if": {"not": {"segment": "pro_users"}},
            "then": {"type": "cov_absence", "channel": "push", "content": {"c": "come back"}},
        },
        {
            "id": "cov_inactive_filtered",
            "when": {
                "inactive_for": "3d",
                "event": ["Product Viewed", "Page Viewed"],
                "where": [{"property": "price", "op": "ne", "value": 7}],
            },
            "if": {"count": {"event": "Product Viewed", "within": "7d"}, "op": "gte", "value": 1},
            "then": {"type": "cov_inactive", "channel": "push", "content": {"c": "miss you"}},
        },
        {
            "id": "cov_disabled",
            "enabled": False,
            "when": {"event": "*"},
            "then": {"type": "cov_disabled", "channel": "push", "content": {"c": "never"}},
        },
        {
            "id": "cov_no_conditions",
            "when": {"event": "Subscription Cancelled"},
            "then": {"type": "cov_plain", "channel": "sms", "content": {"c": "bye"}},
        },
        {
            "id": "cov_high_score",
            "when": {"score_below": 4},
            "if": {"trait": "plan", "op": "ne", "value": "team"},
            "then": {"type": "cov_low", "channel": "sms", "content": {"c": "{{ user.score }}"}},
        },
    ],
}

EVENT_WEIGHTS = {
    "view": 30,
    "add": 10,
    "checkout": 4,
    "order": 5,
    "page": 18,
    "screen": 4,
    "identify": 7,
    "alias": 2,
    "group": 2,
    "cancel": 1,
    "onboarded": 2,
    "template": 1,
    "fast": 2,
    "anonymous": 8,
    "traits": 4,
}


def coverage_folder(workdir: Path) -> Path:
    """The example rules, the broker tests' rules and `COVERAGE_RULES`, in one folder."""
    folder = workdir / "coverage"
    folder.mkdir(parents=True, exist_ok=True)
    for source in (EXAMPLES, TEST_RULES):
        for file in source.glob("*.yaml"):
            shutil.copy(file, folder / file.name)
    (folder / "coverage.yaml").write_text(orjson.dumps(COVERAGE_RULES).decode())
    return folder


def mixed_items(count: int, users: int, seed: int) -> Iterator[dict[str, Any]]:
    """Segment events of every type (and, as `{"traits_record": ...}`, CRM trait records)."""
    rng = random.Random(seed)
    kinds = list(EVENT_WEIGHTS)
    weights = list(EVENT_WEIGHTS.values())
    at = T0
    last_ids: list[str] = []
    for i in range(count):
        # Mostly minutes apart, sometimes days: timers of 30m, 2h, 24h and 3d come due.
        at += int(rng.expovariate(1 / (20 * MINUTE_MS))) + (
            rng.randrange(2 * DAY_MS) if rng.random() < 0.01 else 0
        )
        when = at - (rng.randrange(6 * HOUR_MS) if rng.random() < 0.05 else 0)  # late events
        user = f"user-{rng.randrange(users)}"
        if rng.random() < 0.2:
            user = user.upper() + "@Example.com"
        anonymous = f"anon-{rng.randrange(users * 2)}"
        kind = rng.choices(kinds, weights)[0]
        product = rng.choice(["A", "P1", "P2", "P3", f"P{rng.randrange(50)}"])
        price: Any = rng.choice([rng.randrange(1, 300), round(rng.uniform(1, 50), 2), 7, "12"])
        cart = f"cart-{rng.randrange(users * 3)}"
        event: dict[str, Any]
        if kind == "traits":
            plan = rng.choice(["pro", "free", "team", None])
            yield {
                "traits_record": {
                    "kind": "traits",
                    "key": user.lower() if "@" in user else user,
                    "id": f"crm-{seed}-{i}",
                    "ts": when,
                    "ingested": at,
                    "source": rng.choice(["crm", "profile", "billing"]),
                    "set": {"plan": plan, "seats": rng.randrange(30), "role": "admin"}
                    if rng.random() < 0.5
                    else {"address": {"city": rng.choice(["Paris", "Oslo"])}},
                    "unset": ["role"] if rng.random() < 0.3 else [],
                }
            }
            continue
        if kind in ("view", "add", "checkout", "order", "cancel", "onboarded", "template", "fast"):
            name, props = {
                "view": ("Product Viewed", {"product_id": product, "price": price}),
                "add": ("Product Added", {"product_id": product, "price": price, "cart_id": cart}),
                "checkout": ("Checkout Started", {"cart_id": cart}),
                "order": ("Order Completed", {"cart_id": cart, "total": rng.randrange(-5, 200)}),
                "cancel": ("Subscription Cancelled", {}),
                "onboarded": ("Onboarding Completed", {}),
                "template": (rng.choice(["Template Check", "Template Check Strict"]), {}),
                "fast": (rng.choice(["Fast Cart Added", "Fast Checkout", "Fast Ping"]), {}),
            }[kind]
            if rng.random() < 0.3:
                props["name"] = rng.choice(["Desk Lamp", "Chair", "Lamp shade", None])
            if rng.random() < 0.2:
                props["tags"] = rng.sample(["sale", "new", "eco"], rng.randrange(3))
            if rng.random() < 0.2:
                props["cart"] = {"total": rng.choice([50, 150, "150", None])}
            if rng.random() < 0.1:
                props["coupon"] = rng.choice(["SAVE", "EXPIRED", {"code": "X"}, None])
                props["flag"] = rng.choice([True, 1, False])
            if rng.random() < 0.05:
                props["cart_id"] = rng.choice(last_ids) if last_ids else cart
            event = {"type": "track", "event": name, "properties": props, "userId": user}
        elif kind in ("page", "screen"):
            path = rng.choice(["/pricing", "/", "/docs", "/pricing"])
            event = {
                "type": kind,
                "name": path,
                "category": rng.choice(["Docs", "Marketing"]),
                "properties": {"path": path, "price": rng.choice([7, 8])},
                "userId": user,
            }
            if rng.random() < 0.5:
                del event["userId"]
                event["anonymousId"] = anonymous
        elif kind == "identify":
            traits = {
                "plan": rng.choice(["pro", "free", "team"]),
                "name": rng.choice(["Ada", "Zed", "Mia"]),
                "first_name": rng.choice(["Ada", None]),
                "role": rng.choice(["admin", "member"]),
                "onboarding_completed": rng.choice([True, False, "yes"]),
                "address": {"city": rng.choice(["Paris", "Lyon"])},
            }
            event = {"type": "identify", "userId": user, "traits": traits}
            if rng.random() < 0.5:
                event["anonymousId"] = anonymous
        elif kind == "alias":
            event = {"type": "alias", "userId": user, "previousId": anonymous}
        elif kind == "group":
            event = {"type": "group", "userId": user, "groupId": "g1", "traits": {"n": 1}}
        else:  # an anonymous visitor's activity, merged into a user once they identify
            event = {
                "type": "track",
                "event": rng.choice(["Product Viewed", "Product Added", "Page Viewed"]),
                "anonymousId": anonymous,
                "properties": {"product_id": product, "price": price, "cart_id": cart},
            }
        message_id = rng.choice(last_ids) if last_ids and rng.random() < 0.02 else f"m{seed}-{i}"
        last_ids = [*last_ids[-20:], message_id]
        event["messageId"] = message_id
        event["timestamp"] = iso(when)
        yield event


def replay_items(
    items: list[dict[str, Any]], book: RuleBook, until_ms: int | None = None
) -> ReplayResult:
    """`app.replay.replay` over events, with CRM trait records applied as the agent does."""
    run = Replay(book)
    for number, item in enumerate(items, start=1):
        if "traits_record" in item:
            record: TraitsRecord = item["traits_record"]
            run.advance(record["ts"])
            state = run.result.states.get(record["key"])
            outcome = replay_module.process(state, record, book)
            run.result.states[record["key"]] = outcome.state
            run._collect(record["key"], outcome)
        else:
            run.feed_line(orjson.dumps(item), number)
    if until_ms is not None:
        run.advance(run.clock_ms + until_ms)
    run.result.timers_pending = run.pending()
    return run.result
