"""Internal topics carry one record or an envelope of many per message; readers take both."""

from __future__ import annotations

import orjson
import pytest

from agents.envelopes import unpack


def test_an_envelope_unpacks_to_its_records_in_order() -> None:
    records = [{"kind": "event", "key": "u1", "id": "1"}, {"kind": "event", "key": "u2", "id": "2"}]
    assert unpack(orjson.dumps(records)) == records


def test_a_single_record_unpacks_to_a_list_of_one() -> None:
    assert unpack(b'{"kind": "tick", "now": 5}') == [{"kind": "tick", "now": 5}]


@pytest.mark.parametrize("value", [b"", None, b"{not json"])
def test_an_undecodable_message_raises_value_error(value: bytes | None) -> None:
    with pytest.raises(ValueError):
        unpack(value)
