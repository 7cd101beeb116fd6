"""Splitting many serialized items into Kafka messages of bounded size."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

#: Bytes of items per message at most: half of Kafka's default 1 MB message and request limits,
#: which a message over it would break (the producer refuses it, and Faust then stops the agent).
MESSAGE_BYTES = 512 * 1024


def chunked(
    items: Iterable[bytes], max_bytes: int = MESSAGE_BYTES, max_items: int | None = None
) -> Iterator[list[bytes]]:
    """The items in order, in groups of at most `max_bytes` (and `max_items`) each.

    An item larger than `max_bytes` is a group of its own: items are never split.
    """
    group: list[bytes] = []
    size = 0
    for item in items:
        full = max_items is not None and len(group) >= max_items
        if group and (full or size + len(item) > max_bytes):
            yield group
            group, size = [], 0
        group.append(item)
        size += len(item) + 1  # and its separator
    if group:
        yield group
