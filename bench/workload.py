"""A realistic Segment workload for the benchmarks: interleaved sessions of many users.

Each session is what one browser or app sends in a visit: a few page views, product views of a
skewed catalogue, sometimes cart adds and a checkout, an identify when a user signs in or up. Most
users are known (`userId` only); a share start as anonymous visitors (`anonymousId` only) and
later identify (or alias) themselves, after which their events carry both ids. Every event has an
explicit ISO `timestamp` and a unique `messageId`, so that a live run and a replay of the same
events agree on every id and time.

Every event of one user has the same identity key (`anonymousId` when it has one, else
`userId`), which the benchmarks use as the Kafka key: all of a user's events are then in one
partition, in order, as a real producer keyed by user would write them.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from engine.clock import iso

#: The catalogue: product "A" (the example discount rule's product) and the generated rules' ids.
PRODUCTS = ["A", *(f"P{i}" for i in range(200))]
CATEGORIES = ["lamps", "chairs", "desks", "rugs", "shelves"]
PAGES = [("/", "Home"), ("/products", "Products"), ("/pricing", "Pricing"), ("/docs", "Docs")]
PAGE_WEIGHTS = [50, 25, 10, 15]
PLANS = ["free", "free", "free", "pro", "enterprise"]
ROLES = ["member", "member", "member", "admin"]
#: Concurrent sessions whose events interleave, as many visitors browse at once.
CONCURRENT_SESSIONS = 64
#: Widest time span of a workload: its events are timestamped within this much before its end,
#: so that no 30-minute timer of the example rules comes due during a benchmark run.
MAX_SPAN_MS = 5 * 60 * 1000


@dataclass(frozen=True, slots=True)
class Message:
    """One event as written to Kafka: its identity key (the Kafka key) and its JSON."""

    key: str
    value: bytes


class _Generator:
    """Builds sessions; remembers which users were seen and which visitors identified."""

    def __init__(self, users: int, seed: int, prefix: str, anonymous_percent: int) -> None:
        self.rng = random.Random(seed)
        self.anonymous_percent = anonymous_percent
        self.users = users
        self.prefix = prefix
        self.seen = bytearray(users)  # 1 once the user's first session started
        self.identified = bytearray(users)  # 1 once an anonymous visitor identified
        self.ids = itertools.count()
        # A skewed catalogue: a few products take most views, as in any shop.
        self.product_weights = list(itertools.accumulate(1 / (r + 1) for r in range(len(PRODUCTS))))
        self.prices = {p: self.rng.randrange(5, 500) for p in PRODUCTS}
        self.sessions = itertools.count()

    def user(self) -> int:
        # Squaring skews activity: low indices are the regulars, high ones drop by once.
        return int(self.users * self.rng.random() ** 2)

    def anonymous(self, u: int) -> bool:
        # 37 is prime to 100: every 100 consecutive users hold the share, spread among them.
        return u * 37 % 100 < self.anonymous_percent

    def ids_of(self, u: int) -> dict[str, str]:
        if not self.anonymous(u):
            return {"userId": f"user-{u}"}
        if self.identified[u]:
            return {"anonymousId": f"anon-{u}", "userId": f"user-{u}"}
        return {"anonymousId": f"anon-{u}"}

    def event(self, u: int, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, **self.ids_of(u), "messageId": f"{self.prefix}-{next(self.ids)}"}

    def session(self, u: int) -> Iterator[dict[str, Any]]:
        """One visit of user `u`: yields its events lazily, so ids follow the interleaving."""
        rng, first = self.rng, not self.seen[u]
        self.seen[u] = 1
        number = next(self.sessions)
        if not self.anonymous(u) and (first or rng.random() < 0.05):
            yield self.event(u, self.identify(u))
        elif not self.anonymous(u) and rng.random() < 0.3:
            yield self.event(u, {"type": "track", "event": "Signed In", "properties": {}})
        for _ in range(1 + int(rng.expovariate(0.7))):
            yield self.event(u, self.page())
        converts = self.anonymous(u) and not self.identified[u] and rng.random() < 0.35
        if converts:
            yield self.signup(u)
        yield from self.shopping(u, number)

    def signup(self, u: int) -> dict[str, Any]:
        """An anonymous visitor becomes `user-<u>`: identify, or now and then an alias."""
        self.identified[u] = 1
        if self.rng.random() < 0.1:
            return self.event(u, {"type": "alias", "previousId": f"anon-{u}"})
        return self.event(u, self.identify(u))

    def identify(self, u: int) -> dict[str, Any]:
        rng = self.rng
        traits = {
            "name": f"User {u}",
            "first_name": f"U{u}",
            "email": f"user-{u}@example.com",
            "plan": rng.choice(PLANS),
            "role": rng.choice(ROLES),
        }
        return {"type": "identify", "traits": traits}

    def page(self) -> dict[str, Any]:
        path, title = self.rng.choices(PAGES, PAGE_WEIGHTS)[0]
        url = f"https://shop.example.com{path}"
        return {"type": "page", "name": title, "properties": {"path": path, "url": url}}

    def shopping(self, u: int, number: int) -> Iterator[dict[str, Any]]:
        rng, cart = self.rng, []
        for _ in range(int(rng.expovariate(0.5))):
            product = rng.choices(PRODUCTS, cum_weights=self.product_weights)[0]
            yield self.event(u, self.track("Product Viewed", product))
            if rng.random() < 0.2:
                cart.append(product)
                added = self.track("Product Added", product)
                added["properties"] |= {"cart_id": f"cart-{u}-{number}", "quantity": 1}
                yield self.event(u, added)
        if cart and rng.random() < 0.4:
            yield self.event(u, self.order(u, number, cart))

    def track(self, name: str, product: str) -> dict[str, Any]:
        properties = {
            "product_id": product,
            "name": f"Product {product}",
            "price": self.prices[product],
            "category": CATEGORIES[zlib.crc32(product.encode()) % len(CATEGORIES)],
        }
        return {"type": "track", "event": name, "properties": properties}

    def order(self, u: int, number: int, cart: list[str]) -> dict[str, Any]:
        properties = {
            "order_id": f"order-{u}-{number}",
            "cart_id": f"cart-{u}-{number}",
            "revenue": sum(self.prices[p] for p in cart),
            "currency": "USD",
            "products": [{"product_id": p, "price": self.prices[p]} for p in cart],
        }
        return {"type": "track", "event": "Order Completed", "properties": properties}


def generate(
    count: int,
    users: int,
    end_ms: int,
    seed: int = 7,
    prefix: str = "bench",
    anonymous_percent: int = 30,
) -> list[Message]:
    """`count` events of up to `users` users, timestamped in order up to `end_ms`.

    `prefix` starts every messageId, so that two workloads on one deployment never share one;
    `anonymous_percent` of the users arrive as anonymous visitors.
    """
    gen = _Generator(users, seed, prefix, anonymous_percent)
    step = min(2.0, MAX_SPAN_MS / max(count, 1))
    start = end_ms - step * count
    pool = [gen.session(gen.user()) for _ in range(CONCURRENT_SESSIONS)]
    out: list[Message] = []
    while len(out) < count:
        slot = gen.rng.randrange(CONCURRENT_SESSIONS)
        event = next(pool[slot], None)
        if event is None:  # that visit ended: another user arrives
            pool[slot] = gen.session(gen.user())
            continue
        event["timestamp"] = iso(int(start + step * len(out)))
        out.append(Message(identity(event), orjson.dumps(event)))
    return out


def identity(event: dict[str, Any]) -> str:
    """The event's identity key, as Kairos partitions by it (engine.identity.identity_key)."""
    if event["type"] == "alias":
        return str(event["previousId"])
    return str(event.get("anonymousId") or event["userId"])


def arrived_anonymous(messages: list[Message]) -> set[str]:
    """Profile keys of every visitor who arrived anonymous: `anon:<id>` and the user they became.

    Their profiles are where identity merges happen, so a mismatch concentrated on them points at
    merges.
    """
    keys: set[str] = set()
    for message in messages:
        if message.key.startswith("anon-"):
            keys |= {f"anon:{message.key}", "user-" + message.key.removeprefix("anon-")}
    return keys


def partition_of(key: str, partitions: int) -> int:
    """The partition of an identity, as the HTTP collector picks it (app.collector)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions


def envelopes(messages: list[Message], size: int, partitions: int) -> list[tuple[int, bytes]]:
    """`{"batch": [...]}` envelopes of up to `size` events, each for one partition.

    As the HTTP collector writes them: an envelope holds events of one partition only, so each
    identity's events stay in one partition, in order. Returns (partition, envelope) in the order
    they are to be written.
    """
    pending: dict[int, list[bytes]] = {}
    out: list[tuple[int, bytes]] = []

    def flush(partition: int) -> None:
        out.append((partition, b'{"batch":[' + b",".join(pending.pop(partition)) + b"]}"))

    for message in messages:
        partition = partition_of(message.key, partitions)
        pending.setdefault(partition, []).append(message.value)
        if len(pending[partition]) >= size:
            flush(partition)
    for partition in sorted(pending):
        flush(partition)
    return out
