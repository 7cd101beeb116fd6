"""Specifications of engine.identity: normalizing ids, keying events, resolving their owner."""

from __future__ import annotations

import sys
import unicodedata
from typing import Any

import pytest

from engine.identity import (
    ANONYMOUS_PREFIX,
    MAX_ID_LENGTH,
    InvalidIdentifier,
    Resolution,
    anonymous_key,
    identity_key,
    is_anonymous_key,
    normalize_id,
    resolve,
)

# --- normalize_id -------------------------------------------------------------------------------


def test_ids_are_trimmed() -> None:
    assert normalize_id("  user-42\t") == "user-42"


def test_email_user_ids_are_trimmed_and_lower_cased() -> None:
    assert normalize_id("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"


def test_non_email_ids_keep_their_case() -> None:
    assert normalize_id("AbC-123") == "AbC-123"
    # An @ alone does not make an e-mail address.
    assert normalize_id("Team@Home") == "Team@Home"


def test_integer_ids_are_stringified() -> None:
    assert normalize_id(42) == "42"
    assert normalize_id(0) == "0"


@pytest.mark.parametrize("raw", [None, "", "   ", "\t\n", True, False])
def test_absent_blank_and_boolean_ids_normalize_to_none(raw: object) -> None:
    assert normalize_id(raw) is None


def test_an_id_of_the_maximum_length_is_accepted() -> None:
    raw = "x" * MAX_ID_LENGTH
    assert normalize_id(raw) == raw


def test_length_is_measured_after_trimming() -> None:
    raw = "  " + "x" * MAX_ID_LENGTH + "  "
    assert normalize_id(raw) == "x" * MAX_ID_LENGTH


def test_an_id_longer_than_the_maximum_is_invalid() -> None:
    with pytest.raises(InvalidIdentifier, match="longer than"):
        normalize_id("x" * (MAX_ID_LENGTH + 1))


@pytest.mark.parametrize("raw", ["ab\x00cd", "a\tb", "line\nbreak", "del\x7f", "esc\x1b[0m"])
def test_ids_with_control_characters_are_invalid(raw: str) -> None:
    with pytest.raises(InvalidIdentifier, match="control characters"):
        normalize_id(raw)


def test_control_characters_are_exactly_those_of_unicode_category_cc() -> None:
    controls = [cp for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Cc"]
    for cp in controls:
        with pytest.raises(InvalidIdentifier, match="control characters"):
            normalize_id(f"a{chr(cp)}b")
    for cp in (0x20, 0xA0, 0x2028, 0x200B, 0xFEFF, 0x1F600):  # separators, format, emoji
        assert normalize_id(f"a{chr(cp)}b") == f"a{chr(cp)}b"
    assert len(controls) == 65


def test_invalid_identifier_is_a_value_error() -> None:
    assert issubclass(InvalidIdentifier, ValueError)


# --- keys ---------------------------------------------------------------------------------------


def test_anonymous_keys_carry_the_anonymous_prefix() -> None:
    key = anonymous_key("a1")
    assert key == ANONYMOUS_PREFIX + "a1"
    assert is_anonymous_key(key)
    assert not is_anonymous_key("u1")


def test_identity_key_is_the_anonymous_id_when_there_is_one() -> None:
    event: dict[str, object] = {"type": "track", "anonymousId": "a1", "userId": "u1", "event": "X"}
    assert identity_key(event) == "a1"


def test_identity_key_is_the_user_id_without_an_anonymous_id() -> None:
    assert identity_key({"type": "identify", "userId": "u1"}) == "u1"


def test_identity_key_of_an_alias_is_its_previous_id() -> None:
    event: dict[str, object] = {
        "type": "alias",
        "previousId": "a1",
        "userId": "u1",
        "anonymousId": "a9",
    }
    assert identity_key(event) == "a1"


# --- resolve ------------------------------------------------------------------------------------


def track(**ids: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Clicked", **ids}


def test_an_anonymous_event_without_a_link_belongs_to_the_anonymous_profile() -> None:
    assert resolve(track(anonymousId="a1"), None) == Resolution("anon:a1")


def test_an_anonymous_event_of_a_linked_visitor_belongs_to_the_user() -> None:
    assert resolve(track(anonymousId="a1"), "u1") == Resolution("u1")


def test_an_event_with_only_a_user_id_belongs_to_that_user_and_changes_no_link() -> None:
    resolution = resolve(track(userId="u1"), None)
    assert resolution == Resolution("u1", link=None, merge_from=None)


def test_the_first_event_with_both_ids_links_and_merges_the_anonymous_profile() -> None:
    resolution = resolve(track(anonymousId="a1", userId="u1"), None)
    assert resolution == Resolution("u1", link="u1", merge_from="anon:a1")


def test_an_identify_with_both_ids_links_like_any_other_call() -> None:
    event: dict[str, object] = {"type": "identify", "anonymousId": "a1", "userId": "u1"}
    assert resolve(event, None) == Resolution("u1", link="u1", merge_from="anon:a1")


def test_both_ids_already_linked_to_the_same_user_change_nothing() -> None:
    resolution = resolve(track(anonymousId="a1", userId="u1"), "u1")
    assert resolution == Resolution("u1", link=None, merge_from=None)


def test_both_ids_linked_to_another_user_re_link_without_merging() -> None:
    resolution = resolve(track(anonymousId="a1", userId="u2"), "u1")
    assert resolution == Resolution("u2", link="u2", merge_from=None)


def test_a_first_alias_links_its_previous_id_and_merges_it() -> None:
    event: dict[str, object] = {"type": "alias", "previousId": "a1", "userId": "u1"}
    assert resolve(event, None) == Resolution("u1", link="u1", merge_from="anon:a1")


def test_an_alias_seen_again_changes_nothing() -> None:
    event: dict[str, object] = {"type": "alias", "previousId": "a1", "userId": "u1"}
    assert resolve(event, "u1") == Resolution("u1")


def test_an_alias_to_another_user_re_links_without_merging() -> None:
    event: dict[str, object] = {"type": "alias", "previousId": "a1", "userId": "u2"}
    assert resolve(event, "u1") == Resolution("u2", link="u2", merge_from=None)


def test_an_alias_links_its_previous_id_not_its_anonymous_id() -> None:
    event: dict[str, object] = {
        "type": "alias",
        "previousId": "a1",
        "anonymousId": "a9",
        "userId": "u1",
    }
    assert resolve(event, None).merge_from == "anon:a1"
