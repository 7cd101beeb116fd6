"""Property filters: dotted-path lookups and comparisons shared by rules, counters and scores.

`lookup`, `compare` and `matches` say what a filter means. `reader`, `comparator` and
`filters_test` give the same answers from functions specialized, once, to one path, operator and
value: those are what the engine evaluates for every record (tests/unit/test_predicates.py checks
both agree).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from schemas.rules import PropertyFilter

#: What `lookup` returns for a path that leads nowhere (distinct from a null value).
MISSING: Any = object()


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted path in nested dicts, or a sentinel when a step is missing."""
    return walk_path(data, path.split("."))


def walk_path(data: Any, steps: Sequence[str]) -> Any:
    """`lookup` of a path already split into its steps."""
    for step in steps:
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


#: Whether a value found compares to a condition's value as its operator says.
Comparator = Callable[[Any], bool]
#: Whether event properties pass a list of filters.
FilterTest = Callable[[Mapping[str, Any]], bool]
#: The value at a dotted path (or MISSING).
Reader = Callable[[Any], Any]

_ORDERS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def comparator(op: str, expected: Any) -> Comparator:
    """`found -> compare(found, op, expected)`, with the branches that depend only on the operator
    and the expected value taken once, here."""
    if op == "exists":
        return lambda found: found is not MISSING and found is not None
    if op == "not_exists":
        return lambda found: found is MISSING or found is None
    if op in ("eq", "ne"):
        equal = _equal_to(expected)
        return equal if op == "eq" else lambda found: not equal(found)
    order = _ORDERS.get(op)
    if order is not None and not isinstance(expected, bool):
        # As `compare`: numbers compare with numbers (booleans are not numbers), text with text.
        if isinstance(expected, int | float):
            return lambda found: (
                isinstance(found, int | float)
                and not isinstance(found, bool)
                and order(found, expected)
            )
        if isinstance(expected, str):
            return lambda found: isinstance(found, str) and order(found, expected)
    return lambda found: compare(found, op, expected)  # in, not_in, contains: rarer, as written


def _equal_to(expected: Any) -> Comparator:
    """Equality as `compare` means it (true is not 1); a missing value equals nothing."""
    if isinstance(expected, bool):
        return lambda found: found is expected  # the only booleans are True and False
    return lambda found: (
        found is not MISSING and not isinstance(found, bool) and bool(found == expected)
    )


def reader(path: str) -> Reader:
    """`data -> lookup(data, path)`, with the path split once."""
    steps = tuple(path.split("."))
    if len(steps) == 1:
        step = steps[0]
        # Properties are always a dict: a plain `get` then, the general walk otherwise.
        return lambda data: (
            data.get(step, MISSING) if type(data) is dict else walk_path(data, steps)
        )
    return lambda data: walk_path(data, steps)


def filters_test(filters: Sequence[PropertyFilter]) -> FilterTest:
    """`properties -> matches(properties, filters)`."""
    if len(filters) == 1 and "." not in filters[0].property:
        # The most common filter, one property by name: read and compared in one call.
        only = filters[0]
        step, check = only.property, comparator(only.op, only.value)
        return lambda props: check(
            props.get(step, MISSING) if type(props) is dict else walk_path(props, (step,))
        )
    tests = tuple((reader(f.property), comparator(f.op, f.value)) for f in filters)
    if not tests:
        return lambda props: True

    def every(props: Mapping[str, Any]) -> bool:
        return all(check(read(props)) for read, check in tests)

    return every
