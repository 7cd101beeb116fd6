"""Property filters: dotted-path lookups and comparisons shared by rules, counters and scores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from schemas.rules import PropertyFilter

#: What `lookup` returns for a path that leads nowhere (distinct from a null value).
MISSING: Any = object()


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted path in nested dicts, or a sentinel when a step is missing."""
    for step in path.split("."):
        if not isinstance(data, Mapping) or step not in data:
            return MISSING
        data = data[step]
    return data


def compare(found: Any, op: str, expected: Any) -> bool:
    """`found op expected`, never raising: incomparable values simply do not match."""
    if op == "exists":
        return found is not MISSING and found is not None
    if op == "not_exists":
        return found is MISSING or found is None
    if found is MISSING:
        return op in ("ne", "not_in")
    if op == "eq":
        return _equal(found, expected)
    if op == "ne":
        return not _equal(found, expected)
    if op == "in":
        return any(_equal(found, option) for option in expected)
    if op == "not_in":
        return not any(_equal(found, option) for option in expected)
    if op == "contains":
        if isinstance(found, str):
            return isinstance(expected, str) and expected in found
        return isinstance(found, list) and expected in found
    numbers = (int, float)
    if isinstance(found, bool) or isinstance(expected, bool):
        return False
    same_kind = (isinstance(found, numbers) and isinstance(expected, numbers)) or (
        isinstance(found, str) and isinstance(expected, str)
    )
    if not same_kind:
        return False
    if op == "gt":
        return bool(found > expected)
    if op == "gte":
        return bool(found >= expected)
    if op == "lt":
        return bool(found < expected)
    if op == "lte":
        return bool(found <= expected)
    raise ValueError(f"unknown op {op!r}")


def _equal(a: Any, b: Any) -> bool:
    """Equality as JSON means it: true is not 1 (Python's True == 1 is)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def matches(properties: Mapping[str, Any], filters: list[PropertyFilter]) -> bool:
    """Whether event properties pass every filter."""
    return all(compare(lookup(properties, f.property), f.op, f.value) for f in filters)


def describe_filters(filters: list[PropertyFilter]) -> str:
    return " and ".join(f"{f.property} {f.op} {show(f.value)}" for f in filters)


def counter_key(event: str, where: list[PropertyFilter]) -> str:
    """The name of the counter of `event`s passing `where` in a user's counts.

    Unfiltered counts are kept under the plain event name; filtered ones under the name and the
    canonical JSON of the filters, so that rules with the same filter share one counter.
    """
    if not where:
        return event
    spec = [[f.property, f.op, f.value] for f in where]
    return f"{event}|{orjson.dumps(spec, option=orjson.OPT_SORT_KEYS).decode()}"


def show(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return repr(value) if isinstance(value, str) else str(value)
