"""Envelopes and written-back changelog records stay under Kafka's message size limit."""

from __future__ import annotations

from app.chunks import chunked


def test_items_are_grouped_in_order_under_the_byte_limit() -> None:
    items = [bytes([65 + i]) * 30 for i in range(10)]
    groups = list(chunked(items, max_bytes=100))
    assert [item for group in groups for item in group] == items
    assert all(sum(len(i) + 1 for i in group) <= 100 for group in groups)
    assert [len(group) for group in groups] == [3, 3, 3, 1]


def test_an_item_over_the_limit_travels_alone() -> None:
    items = [b"a", b"x" * 500, b"b"]
    assert list(chunked(items, max_bytes=100)) == [[b"a"], [b"x" * 500], [b"b"]]


def test_the_item_count_is_bounded_too() -> None:
    groups = list(chunked([b"1"] * 5, max_bytes=1000, max_items=2))
    assert [len(group) for group in groups] == [2, 2, 1]


def test_nothing_in_nothing_out() -> None:
    assert list(chunked([])) == []
