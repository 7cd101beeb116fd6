"""How Kairos names and reads a Segment event, whatever its type.

Rules and counters speak of events by one name: a track's `event`, and `Page Viewed` /
`Screen Viewed` for page and screen calls (the names Segment's destinations use for them).
"""

from __future__ import annotations

from typing import Any

PAGE_VIEWED = "Page Viewed"
SCREEN_VIEWED = "Screen Viewed"
PRODUCT_VIEWED = "Product Viewed"

#: Calls that are user behaviour: they are counted and move last_seen.
BEHAVIOURAL_TYPES = frozenset({"track", "page", "screen"})


def event_name(event: dict[str, Any]) -> str | None:
    """The name counters and rules use for this event, or None for non-behavioural calls."""
    kind = event.get("type")
    if kind == "track":
        name = event.get("event")
        return str(name) if name else None
    if kind == "page":
        return PAGE_VIEWED
    if kind == "screen":
        return SCREEN_VIEWED
    return None


def properties(event: dict[str, Any]) -> dict[str, Any]:
    """The event's properties; for pages and screens their `name` and `category` are included."""
    props = event.get("properties")
    result: dict[str, Any] = dict(props) if isinstance(props, dict) else {}
    if event.get("type") in ("page", "screen"):
        for field in ("name", "category"):
            if field in event and field not in result:
                result[field] = event[field]
    return result


def viewed_item(event: dict[str, Any]) -> tuple[str, str | None] | None:
    """(item id, item name) of a `Product Viewed` event (Segment e-commerce spec), else None."""
    if event.get("type") != "track" or event.get("event") != PRODUCT_VIEWED:
        return None
    props = properties(event)
    for field in ("product_id", "sku", "id"):
        value = props.get(field)
        if value not in (None, ""):
            name = props.get("name")
            return str(value), (str(name) if name is not None else None)
    return None
