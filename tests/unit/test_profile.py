"""Specifications of engine.profile: how each record changes a user's state, and how it is shown."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from engine import windows
from engine.clock import DAY_MS, HOUR_MS, MINUTE_MS
from engine.profile import (
    ANONYMOUS_IDS_LIMIT,
    PROFILE_WINDOWS,
    SEEN_LIMIT,
    Applied,
    ProfileConfig,
    UserState,
    apply_record,
    merge_states,
    new_state,
    profile_view,
)
from engine.records import (
    AbsorbRecord,
    EventRecord,
    MergeRecord,
    TraitsRecord,
    UserRecord,
    merge_id,
)

CONFIG = ProfileConfig(recent_items=3)
T0 = 1_714_557_600_000  # 2024-05-01T10:00:00.000Z
T0_ISO = "2024-05-01T10:00:00.000Z"
USER = "u1"
ANON = "anon:a1"


# --- record builders ----------------------------------------------------------------------------


def event(key: str, rid: str, ts: int, kind: str = "track", **fields: Any) -> EventRecord:
    body: dict[str, Any] = {"type": kind, "messageId": rid}
    if key.startswith("anon:"):
        body["anonymousId"] = key.removeprefix("anon:")
    else:
        body["userId"] = key
    body.update(fields)
    return {"kind": "event", "key": key, "id": rid, "ts": ts, "ingested": ts, "event": body}


def track(key: str, rid: str, ts: int, name: str = "Clicked", **fields: Any) -> EventRecord:
    return event(key, rid, ts, "track", event=name, **fields)


def viewed(key: str, rid: str, ts: int, **props: Any) -> EventRecord:
    return track(key, rid, ts, "Product Viewed", properties=props)


def identify(key: str, rid: str, ts: int, **traits: Any) -> EventRecord:
    return event(key, rid, ts, "identify", traits=traits)


def traits(
    key: str,
    rid: str,
    ts: int,
    values: dict[str, Any] | None = None,
    unset: list[str] | None = None,
    source: str = "crm",
) -> TraitsRecord:
    return {
        "kind": "traits",
        "key": key,
        "id": rid,
        "ts": ts,
        "ingested": ts,
        "source": source,
        "set": values or {},
        "unset": unset or [],
    }


def merge(anonymous: str = ANON, into: str = USER) -> MergeRecord:
    return {"kind": "merge", "key": anonymous, "id": merge_id(anonymous, into), "into": into}


def apply_all(records: list[Any], state: UserState | None = None) -> UserState:
    for record in records:
        state = apply_record(state, record, CONFIG).state
    assert state is not None
    return state


def values(state: UserState) -> dict[str, Any]:
    return {name: trait["v"] for name, trait in state.get("traits", {}).items()}


def counts(state: UserState, now: int) -> dict[str, dict[str, int]]:
    return {
        name: {label: windows.count(counter, ms, now) for label, ms in PROFILE_WINDOWS.items()}
        for name, counter in state.get("counts", {}).items()
    }


# --- events: activity ---------------------------------------------------------------------------


def test_an_unknown_user_starts_from_a_new_state_keyed_by_the_record() -> None:
    applied = apply_record(None, track(USER, "e1", T0), CONFIG)
    assert applied.state["key"] == USER
    assert applied.state["events"] == 1
    assert applied.forward == []
    assert applied.duplicate is False


def test_first_and_last_seen_are_the_earliest_and_latest_event_times_in_any_arrival_order() -> None:
    state = apply_all(
        [track(USER, "e1", T0 + 200), track(USER, "e2", T0 + 100), track(USER, "e3", T0 + 300)]
    )
    assert state["first_seen"] == T0 + 100
    assert state["last_seen"] == T0 + 300


def test_any_call_but_an_alias_moves_first_and_last_seen() -> None:
    state = apply_all(
        [
            identify(USER, "i1", T0 - HOUR_MS),
            event(USER, "g1", T0, "group", groupId="g"),
            event(USER, "al1", T0 + DAY_MS, "alias", previousId="a1"),
        ]
    )
    assert state["first_seen"] == T0 - HOUR_MS
    assert state["last_seen"] == T0


def test_events_are_counted_by_name_and_identify_group_and_alias_are_not() -> None:
    state = apply_all(
        [
            track(USER, "e1", T0, "Signed Up"),
            track(USER, "e2", T0 + 1, "Signed Up"),
            event(USER, "p1", T0 + 2, "page", name="Home"),
            event(USER, "s1", T0 + 3, "screen", name="Cart"),
            identify(USER, "i1", T0 + 4, plan="pro"),
            event(USER, "g1", T0 + 5, "group", groupId="g"),
            event(USER, "al1", T0 + 6, "alias", previousId="a1"),
        ]
    )
    assert state["events"] == 4
    assert counts(state, T0 + 10) == {
        "Signed Up": {"1h": 2, "24h": 2, "7d": 2, "30d": 2},
        "Page Viewed": {"1h": 1, "24h": 1, "7d": 1, "30d": 1},
        "Screen Viewed": {"1h": 1, "24h": 1, "7d": 1, "30d": 1},
    }


def test_an_out_of_order_event_is_still_counted_in_its_own_window() -> None:
    state = apply_all([track(USER, "e1", T0), track(USER, "e2", T0 - 3 * HOUR_MS)])
    assert counts(state, T0)["Clicked"] == {"1h": 1, "24h": 2, "7d": 2, "30d": 2}


def test_anonymous_ids_seen_on_a_users_events_are_listed_once() -> None:
    state = apply_all(
        [
            track(USER, "e1", T0, anonymousId="a1"),
            track(USER, "e2", T0, anonymousId="a2"),
            track(USER, "e3", T0, anonymousId="a1"),
        ]
    )
    assert state["anonymous_ids"] == ["a1", "a2"]


def test_the_anonymous_id_list_keeps_the_latest_ids_up_to_its_limit() -> None:
    records = [
        track(USER, f"e{i}", T0 + i, anonymousId=f"a{i}") for i in range(ANONYMOUS_IDS_LIMIT + 2)
    ]
    state = apply_all(records)
    assert state["anonymous_ids"] == [f"a{i}" for i in range(2, ANONYMOUS_IDS_LIMIT + 2)]


def test_an_anonymous_profile_does_not_list_its_own_anonymous_id() -> None:
    state = apply_all([track(ANON, "e1", T0)])
    assert "anonymous_ids" not in state


# --- events: recently viewed items --------------------------------------------------------------


@pytest.mark.parametrize(
    ("props", "item_id"),
    [
        ({"product_id": "p1", "sku": "s1", "id": "i1"}, "p1"),
        ({"sku": "s1", "id": "i1"}, "s1"),
        ({"id": "i1"}, "i1"),
        ({"product_id": "", "sku": None, "id": 7}, "7"),
    ],
)
def test_a_product_viewed_remembers_its_product_id_else_sku_else_id(
    props: dict[str, Any], item_id: str
) -> None:
    state = apply_all([viewed(USER, "v1", T0, **props)])
    assert state["recent"] == [{"id": item_id, "at": T0}]


def test_a_viewed_item_keeps_its_name() -> None:
    state = apply_all([viewed(USER, "v1", T0, product_id="p1", name="Red Shoe")])
    assert state["recent"] == [{"id": "p1", "name": "Red Shoe", "at": T0}]


def test_only_product_viewed_events_with_an_id_are_remembered() -> None:
    state = apply_all(
        [
            viewed(USER, "v1", T0, name="No id"),
            track(USER, "e1", T0, "Product Added", properties={"product_id": "p1"}),
        ]
    )
    assert state["recent"] == []


def test_viewing_an_item_again_moves_it_to_the_front_once() -> None:
    state = apply_all(
        [
            viewed(USER, "v1", T0, product_id="p1"),
            viewed(USER, "v2", T0 + 1, product_id="p2"),
            viewed(USER, "v3", T0 + 2, product_id="p1"),
        ]
    )
    assert state["recent"] == [{"id": "p1", "at": T0 + 2}, {"id": "p2", "at": T0 + 1}]


def test_recent_items_are_bounded_by_the_profile_config() -> None:
    records = [viewed(USER, f"v{i}", T0 + i, product_id=f"p{i}") for i in range(5)]
    state = apply_all(records)
    assert [item["id"] for item in state["recent"]] == ["p4", "p3", "p2"]
    one = apply_record(None, records[0], ProfileConfig(recent_items=1)).state
    one = apply_record(one, records[1], ProfileConfig(recent_items=1)).state
    assert [item["id"] for item in one["recent"]] == ["p1"]


def test_recent_items_default_to_ten() -> None:
    assert ProfileConfig().recent_items == 10


def test_a_late_view_of_another_item_is_placed_by_its_time() -> None:
    state = apply_all(
        [viewed(USER, "v1", T0, product_id="p1"), viewed(USER, "v2", T0 - 1, product_id="p2")]
    )
    assert [item["id"] for item in state["recent"]] == ["p1", "p2"]


def test_a_late_older_view_of_an_item_does_not_move_it_back_in_time() -> None:
    state = apply_all(
        [
            viewed(USER, "v1", T0 + 2, product_id="p1"),
            viewed(USER, "v2", T0 + 1, product_id="p2"),
            viewed(USER, "v3", T0, product_id="p1"),  # arrives late
        ]
    )
    assert state["recent"] == [{"id": "p1", "at": T0 + 2}, {"id": "p2", "at": T0 + 1}]


# --- traits -------------------------------------------------------------------------------------


def test_identify_traits_are_merged_with_their_source_and_time() -> None:
    state = apply_all(
        [
            identify(USER, "i1", T0, plan="pro", name="Ada"),
            identify(USER, "i2", T0 + 1, plan="team"),
        ]
    )
    assert state["traits"] == {
        "plan": {"v": "team", "src": "identify", "at": T0 + 1},
        "name": {"v": "Ada", "src": "identify", "at": T0},
    }


def test_a_traits_record_sets_traits_with_its_source() -> None:
    state = apply_all([traits(USER, "c1", T0, {"role": "admin"}, source="hubspot")])
    assert state["traits"] == {"role": {"v": "admin", "src": "hubspot", "at": T0}}
    assert state["events"] == 0
    assert "first_seen" not in state


@pytest.mark.parametrize("crm_first", [True, False])
def test_the_most_recent_write_wins_per_trait_whatever_the_arrival_order(crm_first: bool) -> None:
    told_an_hour_ago = identify(USER, "i1", T0, plan="pro")
    crm_export_of_yesterday = traits(USER, "c1", T0 - DAY_MS, {"plan": "free", "role": "admin"})
    records: list[UserRecord] = [crm_export_of_yesterday, told_an_hour_ago]
    state = apply_all(records if crm_first else records[::-1])
    assert state["traits"] == {
        "plan": {"v": "pro", "src": "identify", "at": T0},
        "role": {"v": "admin", "src": "crm", "at": T0 - DAY_MS},
    }


def test_a_newer_crm_write_overrides_an_older_identify() -> None:
    state = apply_all(
        [identify(USER, "i1", T0, plan="pro"), traits(USER, "c1", T0 + 1, {"plan": "enterprise"})]
    )
    assert state["traits"]["plan"] == {"v": "enterprise", "src": "crm", "at": T0 + 1}


def test_a_traits_record_unsets_a_trait_and_the_profile_hides_it() -> None:
    state = apply_all(
        [
            traits(USER, "c1", T0, {"plan": "pro", "role": "admin"}),
            traits(USER, "p1", T0 + 1, unset=["plan"], source="profiles"),
        ]
    )
    assert state["traits"]["plan"] == {"v": None, "src": "profiles", "at": T0 + 1}
    view = profile_view(state, T0 + 2)
    assert view["traits"] == {"role": "admin"}
    assert set(view["trait_sources"]) == {"role"}


def test_an_unset_older_than_the_value_is_ignored() -> None:
    state = apply_all(
        [traits(USER, "c1", T0, {"plan": "pro"}), traits(USER, "p1", T0 - 1, unset=["plan"])]
    )
    assert values(state) == {"plan": "pro"}


def test_a_trait_unset_can_be_set_again_by_a_newer_write() -> None:
    state = apply_all(
        [
            traits(USER, "c1", T0, {"plan": "pro"}),
            traits(USER, "p1", T0 + 1, unset=["plan"]),
            traits(USER, "c2", T0 + 2, {"plan": "team"}),
        ]
    )
    assert values(state) == {"plan": "team"}


# --- idempotence --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        track(USER, "dup", T0),
        identify(USER, "dup", T0, plan="pro"),
        traits(USER, "dup", T0, {"plan": "pro"}),
    ],
    ids=["track", "identify", "traits"],
)
def test_a_record_applied_twice_is_a_duplicate_that_changes_nothing(record: UserRecord) -> None:
    state = apply_all([track(USER, "e0", T0 - 1), record])
    before = copy.deepcopy(state)
    applied = apply_record(state, copy.deepcopy(record), CONFIG)
    assert applied.duplicate is True
    assert applied.forward == []
    assert applied.state == before


def test_a_duplicate_is_recognised_by_record_id_alone() -> None:
    state = apply_all([track(USER, "m1", T0)])
    applied = apply_record(state, track(USER, "m1", T0 + HOUR_MS, "Other"), CONFIG)
    assert applied.duplicate is True
    assert state["events"] == 1


def test_the_profile_remembers_only_the_last_seen_limit_record_ids() -> None:
    records = [track(USER, f"e{i}", T0 + i) for i in range(SEEN_LIMIT + 1)]
    state = apply_all(records)
    assert len(state["seen"]) == SEEN_LIMIT
    assert apply_record(state, records[-1], CONFIG).duplicate is True
    # The oldest id is forgotten: a replay that old is applied again.
    again = apply_record(state, records[0], CONFIG)
    assert again.duplicate is False
    assert again.state["events"] == SEEN_LIMIT + 2
    assert len(again.state["seen"]) == SEEN_LIMIT


def test_record_ids_are_remembered_as_fingerprints_not_as_given() -> None:
    long_id = "m" * 200
    state = apply_all([track(USER, long_id, T0)])
    assert long_id not in state["seen"]
    assert all(len(fingerprint) == 16 for fingerprint in state["seen"])


# --- merging an anonymous profile into a user ---------------------------------------------------


def anonymous_visit() -> UserState:
    return apply_all(
        [
            track(ANON, "a-e1", T0 - DAY_MS, "Signed Up"),
            viewed(ANON, "a-v1", T0 - DAY_MS + 1, product_id="p9", name="Hat"),
            identify(ANON, "a-i1", T0 - DAY_MS + 2, plan="trial", colour="red"),
        ]
    )


def user_visit() -> UserState:
    return apply_all(
        [
            track(USER, "u-e1", T0, "Signed Up"),
            track(USER, "u-e2", T0 + MINUTE_MS, "Checked Out"),
            viewed(USER, "u-v1", T0 + 2 * MINUTE_MS, product_id="p1"),
            traits(USER, "u-c1", T0 - HOUR_MS, {"plan": "pro", "role": "admin"}),
        ]
    )


def test_a_merge_hands_the_anonymous_state_over_to_the_user_and_leaves_a_redirect() -> None:
    anonymous = anonymous_visit()
    expected_state = dict(anonymous)  # all of it, `seen` too: applied records stay applied
    applied = apply_record(copy.deepcopy(anonymous), merge(), CONFIG)
    assert applied.duplicate is False
    assert applied.state == {"key": ANON, "merged_into": USER}
    absorb: AbsorbRecord = {
        "kind": "absorb",
        "key": USER,
        "id": merge_id(ANON, USER),
        "source_key": ANON,
        "state": expected_state,
    }
    assert applied.forward == [absorb]


def test_merging_an_empty_anonymous_profile_only_leaves_a_redirect() -> None:
    applied = apply_record(None, merge(), CONFIG)
    assert applied.state == {"key": ANON, "merged_into": USER}
    assert applied.forward == []


@pytest.mark.parametrize(
    "record",
    [track(ANON, "late", T0), traits(ANON, "late", T0, {"plan": "pro"})],
    ids=["event", "traits"],
)
def test_records_to_a_redirected_profile_are_forwarded_re_keyed_to_the_user(
    record: UserRecord,
) -> None:
    redirect = apply_record(anonymous_visit(), merge(), CONFIG).state
    before = copy.deepcopy(redirect)
    applied = apply_record(redirect, record, CONFIG)
    assert applied.forward == [{**record, "key": USER}]
    assert applied.state == before
    assert applied.duplicate is False


def test_merges_and_absorbs_reaching_a_redirect_are_duplicates() -> None:
    redirect = apply_record(anonymous_visit(), merge(), CONFIG).state
    assert apply_record(redirect, merge(), CONFIG) == Applied(redirect, [], duplicate=True)
    absorb: AbsorbRecord = {
        "kind": "absorb",
        "key": ANON,
        "id": "x",
        "source_key": "anon:zz",
        "state": {},
    }
    assert apply_record(redirect, absorb, CONFIG).duplicate is True


def absorbed(user: UserState) -> UserState:
    [absorb] = apply_record(anonymous_visit(), merge(), CONFIG).forward
    applied = apply_record(user, absorb, CONFIG)
    assert applied.forward == []
    assert applied.duplicate is False
    return applied.state


def test_absorbing_an_anonymous_profile_merges_activity_traits_and_items() -> None:
    state = absorbed(user_visit())
    assert state["first_seen"] == T0 - DAY_MS
    assert state["last_seen"] == T0 + 2 * MINUTE_MS
    assert state["events"] == 3 + 2
    now = T0 + 3 * MINUTE_MS
    assert counts(state, now) == {
        "Signed Up": {"1h": 1, "24h": 2, "7d": 2, "30d": 2},
        "Checked Out": {"1h": 1, "24h": 1, "7d": 1, "30d": 1},
        "Product Viewed": {"1h": 1, "24h": 2, "7d": 2, "30d": 2},
    }
    # The user's CRM plan (an hour ago) is newer than the anonymous identify (a day ago).
    assert values(state) == {"plan": "pro", "role": "admin", "colour": "red"}
    assert state["traits"]["colour"] == {"v": "red", "src": "identify", "at": T0 - DAY_MS + 2}
    assert [item["id"] for item in state["recent"]] == ["p1", "p9"]
    assert state["recent"][1] == {"id": "p9", "name": "Hat", "at": T0 - DAY_MS + 1}
    assert state["anonymous_ids"] == ["a1"]


def test_absorbing_into_an_unknown_user_creates_the_user_from_the_anonymous_state() -> None:
    state = absorbed(new_state(USER))
    assert state["key"] == USER
    assert state["events"] == 2
    assert state["first_seen"] == T0 - DAY_MS
    assert values(state) == {"plan": "trial", "colour": "red"}


def test_an_absorb_is_applied_once() -> None:
    [absorb] = apply_record(anonymous_visit(), merge(), CONFIG).forward
    state = apply_record(user_visit(), absorb, CONFIG).state
    before = copy.deepcopy(state)
    applied = apply_record(state, copy.deepcopy(absorb), CONFIG)
    assert applied.duplicate is True
    assert applied.state == before


def test_a_record_already_applied_before_the_merge_is_a_duplicate_for_the_user() -> None:
    first_visit = track(ANON, "a-e1", T0 - DAY_MS, "Signed Up")
    anonymous = apply_all([first_visit])
    [absorb] = apply_record(anonymous, merge(), CONFIG).forward
    user = apply_record(user_visit(), absorb, CONFIG).state
    replayed: EventRecord = {**first_visit, "key": USER}
    applied = apply_record(user, replayed, CONFIG)
    assert applied.duplicate is True
    assert applied.state["events"] == 4  # 3 of the user + 1 absorbed, none twice


def test_a_whole_anonymous_journey_ends_up_on_the_user_profile() -> None:
    anonymous = apply_all([track(ANON, "e1", T0, "Signed Up"), event(ANON, "p1", T0 + 1, "page")])
    redirect = apply_record(anonymous, merge(), CONFIG)
    user = apply_all([*redirect.forward, track(USER, "e2", T0 + 2, "Signed Up")])
    late = apply_record(redirect.state, event(ANON, "p2", T0 + 3, "page"), CONFIG)
    user = apply_all(late.forward, user)
    view = profile_view(user, T0 + 4)
    assert view["events_total"] == 4
    assert view["counts"]["Signed Up"]["1h"] == 2
    assert view["counts"]["Page Viewed"]["1h"] == 2
    assert view["anonymous_ids"] == ["a1"]
    assert profile_view(redirect.state, T0 + 4) == {"user_id": ANON, "merged_into": USER}


# --- merge_states -------------------------------------------------------------------------------


def profile_a() -> UserState:
    return apply_all(
        [
            track(USER, "a1", T0 - 5 * DAY_MS, "Signed Up"),
            track(USER, "a2", T0 - 30 * MINUTE_MS, "Clicked", anonymousId="x1"),
            viewed(USER, "a3", T0 - 20 * MINUTE_MS, product_id="p1"),
            identify(USER, "a4", T0 - HOUR_MS, plan="pro", name="Ada"),
        ]
    )


def profile_b() -> UserState:
    return apply_all(
        [
            track(USER, "b1", T0 - 2 * HOUR_MS, "Clicked", anonymousId="x2"),
            track(USER, "b2", T0, "Clicked"),
            viewed(USER, "b3", T0 - 3 * DAY_MS, product_id="p2"),
            traits(USER, "b4", T0 - 2 * HOUR_MS, {"plan": "free", "role": "admin"}),
            traits(USER, "b5", T0 + 1, {"name": "Ada L."}),
        ]
    )


def test_merge_states_folds_the_other_profile_in() -> None:
    merged = merge_states(profile_a(), profile_b(), CONFIG)
    assert merged["first_seen"] == T0 - 5 * DAY_MS
    assert merged["last_seen"] == T0
    assert merged["events"] == 6
    assert values(merged) == {"plan": "pro", "name": "Ada L.", "role": "admin"}
    assert counts(merged, T0)["Clicked"] == {"1h": 2, "24h": 3, "7d": 3, "30d": 3}
    assert sorted(merged["anonymous_ids"]) == ["x1", "x2"]


def test_merge_states_is_order_independent() -> None:
    a_into_b = merge_states(profile_b(), profile_a(), CONFIG)
    b_into_a = merge_states(profile_a(), profile_b(), CONFIG)
    assert a_into_b["traits"] == b_into_a["traits"]
    for bound in ("first_seen", "last_seen", "events", "recent"):
        assert a_into_b[bound] == b_into_a[bound]
    for now in (T0, T0 + HOUR_MS, T0 + 2 * DAY_MS):
        assert counts(a_into_b, now) == counts(b_into_a, now)
    assert sorted(a_into_b["anonymous_ids"]) == sorted(b_into_a["anonymous_ids"])


def test_merge_states_does_not_change_the_other_profile() -> None:
    other = profile_b()
    before = copy.deepcopy(other)
    merge_states(profile_a(), other, CONFIG)
    assert other == before


def test_merge_states_is_order_independent_for_traits_written_at_the_same_time() -> None:
    a = apply_all([traits(USER, "a", T0, {"plan": "pro"}, source="crm")])
    b = apply_all([traits(USER, "b", T0, {"plan": "free"}, source="identify")])
    a_into_b = merge_states(copy.deepcopy(b), copy.deepcopy(a), CONFIG)
    b_into_a = merge_states(copy.deepcopy(a), copy.deepcopy(b), CONFIG)
    assert a_into_b["traits"] == b_into_a["traits"]


def test_merge_states_is_order_independent_for_an_item_viewed_in_both_profiles() -> None:
    a = apply_all([viewed(USER, "a", T0, product_id="p1")])
    b = apply_all([viewed(USER, "b", T0 - HOUR_MS, product_id="p1")])
    a_into_b = merge_states(copy.deepcopy(b), copy.deepcopy(a), CONFIG)
    b_into_a = merge_states(copy.deepcopy(a), copy.deepcopy(b), CONFIG)
    assert a_into_b["recent"] == b_into_a["recent"] == [{"id": "p1", "at": T0}]


# --- profile_view -------------------------------------------------------------------------------


def test_profile_view_shows_traits_activity_and_counts() -> None:
    state = apply_all(
        [
            track(USER, "e1", T0 - 2 * DAY_MS, "Signed Up", anonymousId="a1"),
            viewed(USER, "v1", T0, product_id="p1", name="Red Shoe"),
            identify(USER, "i1", T0, plan="pro"),
            traits(USER, "c1", T0 + 1, {"role": "admin", "old": "x"}),
            traits(USER, "c2", T0 + 2, unset=["old"]),
        ]
    )
    assert profile_view(state, T0 + 5) == {
        "user_id": USER,
        "anonymous": False,
        "anonymous_ids": ["a1"],
        "first_seen": "2024-04-29T10:00:00.000Z",
        "last_seen": T0_ISO,  # traits records are not activity
        "events_total": 2,
        "traits": {"plan": "pro", "role": "admin"},
        "trait_sources": {
            "plan": {"source": "identify", "updated_at": T0_ISO},
            "role": {"source": "crm", "updated_at": "2024-05-01T10:00:00.001Z"},
        },
        "recent_items": [{"id": "p1", "viewed_at": T0_ISO, "name": "Red Shoe"}],
        "counts": {
            "Product Viewed": {"1h": 1, "24h": 1, "7d": 1, "30d": 1},
            "Signed Up": {"1h": 0, "24h": 0, "7d": 1, "30d": 1},
        },
        "engagement_score": None,  # no score configured
        "pending_timers": [],
    }


def test_profile_view_lists_counts_by_event_name_in_order() -> None:
    state = apply_all([track(USER, "e1", T0, "Zeta"), track(USER, "e2", T0, "Alpha")])
    assert list(profile_view(state, T0)["counts"]) == ["Alpha", "Zeta"]


def test_profile_view_of_a_profile_without_activity() -> None:
    view = profile_view(new_state(ANON), T0)
    assert view["anonymous"] is True
    assert view["first_seen"] is None
    assert view["last_seen"] is None
    assert view["events_total"] == 0
    assert view["counts"] == {}
    assert view["recent_items"] == []


def test_profile_view_of_a_merged_profile_points_to_the_user() -> None:
    redirect = apply_record(anonymous_visit(), merge(), CONFIG).state
    assert profile_view(redirect, T0) == {"user_id": ANON, "merged_into": USER}


def test_a_negative_score_decayed_to_nothing_shows_as_zero_not_minus_zero() -> None:
    state = new_state("u")
    state["score"] = [-30.0, T0]
    view = profile_view(state, T0 + 365 * DAY_MS, score_half_life_ms=DAY_MS)
    assert repr(view["engagement_score"]) == "0.0"
