"""Specifications of timers in the offline replay: on the event-time clock, as a live run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from app import cli
from app.replay import ReplayResult, replay
from engine.clock import HOUR_MS, MINUTE_MS, iso
from engine.rules import RuleBook, compile_rulebook
from schemas.rules import RuleFile
from schemas.triggers import Trigger

T0 = 1_795_000_000_000
DUE = T0 + 30 * MINUTE_MS

CART = """
rules:
  - id: cart_abandoned
    when:
      event: Product Added
    unless:
      event: Order Completed
      match: [cart_id]
    within: 30m
    then:
      type: cart_reminder
      channel: email
      content:
        subject: "Still thinking about {{ event.properties.name | default: 'your cart' }}?"
"""


@pytest.fixture(scope="module")
def book() -> RuleBook:
    return compile_rulebook([RuleFile.model_validate(yaml.safe_load(CART))])


class Script:
    """A sequence of Segment events for one test, written as JSONL lines."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def add(self, at: int, **event: Any) -> Script:
        event.setdefault("messageId", f"m{len(self.lines)}")
        event["timestamp"] = iso(at)
        self.lines.append(orjson.dumps(event))
        return self

    def track(self, at: int, user: str, event: str, **properties: Any) -> Script:
        return self.add(at, type="track", userId=user, event=event, properties=properties)

    def page(self, at: int, user: str, path: str = "/") -> Script:
        return self.add(at, type="page", userId=user, name=path, properties={"path": path})

    def run(self, book: RuleBook, **options: Any) -> ReplayResult:
        result = replay(self.lines, book, **options)
        assert result.rejected == []
        for trigger in result.triggers:
            Trigger.model_validate(trigger)
        return result


def reminders(result: ReplayResult) -> list[dict[str, Any]]:
    return [t for t in result.triggers if t["type"] == "kairos.trigger.cart_reminder"]


def test_a_cart_timer_fires_at_its_due_time_when_later_events_move_the_clock(
    book: RuleBook,
) -> None:
    script = Script().track(T0, "ada", "Product Added", cart_id="c1", name="Lamp")
    script.page(T0 + 2 * HOUR_MS, "bob")  # another user's event moves the clock past the due time
    result = script.run(book)
    [reminder] = reminders(result)
    assert reminder["subject"] == "ada"
    assert reminder["time"] == iso(DUE)
    assert reminder["data"]["content"]["subject"] == "Still thinking about Lamp?"
    assert reminder["data"]["explanation"]["timer"]["armed_by"] == {
        "id": "m0",
        "event": "Product Added",
    }
    assert (result.timers_fired, result.timers_pending) == (1, 0)


def test_a_checkout_in_time_cancels_the_reminder(book: RuleBook) -> None:
    script = Script().track(T0, "ada", "Product Added", cart_id="c1")
    script.track(T0 + 10 * MINUTE_MS, "ada", "Order Completed", cart_id="c1")
    result = script.run(book, until=lambda last: last + HOUR_MS)
    assert reminders(result) == []
    assert (result.timers_fired, result.timers_pending) == (0, 0)


def test_a_checkout_after_the_due_time_comes_too_late(book: RuleBook) -> None:
    script = Script().track(T0, "ada", "Product Added", cart_id="c1")
    script.track(T0 + 40 * MINUTE_MS, "ada", "Order Completed", cart_id="c1")
    [reminder] = reminders(script.run(book))
    assert reminder["time"] == iso(DUE)


def test_without_later_events_the_timer_stays_pending(book: RuleBook) -> None:
    result = Script().track(T0, "ada", "Product Added", cart_id="c1").run(book)
    assert result.triggers == []
    assert (result.timers_fired, result.timers_pending) == (0, 1)


def test_until_moves_the_clock_after_the_last_event_so_pending_timers_fire(
    book: RuleBook,
) -> None:
    script = Script().track(T0, "ada", "Product Added", cart_id="c1")
    result = script.run(book, until=lambda last: last + 31 * MINUTE_MS)
    [reminder] = reminders(result)
    assert reminder["time"] == iso(DUE)
    assert (result.timers_fired, result.timers_pending) == (1, 0)


def test_until_short_of_the_due_time_leaves_the_timer_pending(book: RuleBook) -> None:
    script = Script().track(T0, "ada", "Product Added", cart_id="c1")
    result = script.run(book, until=lambda last: last + 30 * MINUTE_MS - 1)
    assert result.triggers == []
    assert result.timers_pending == 1


@pytest.mark.parametrize(
    ("moment", "fires"),
    [(iso(DUE), True), (iso(DUE + HOUR_MS), True), (iso(DUE - 1), False), (iso(T0 - 1), False)],
)
def test_until_as_an_iso_moment(book: RuleBook, moment: str, fires: bool) -> None:
    until = cli._until(moment)
    assert until is not None
    result = Script().track(T0, "ada", "Product Added", cart_id="c1").run(book, until=until)
    assert len(reminders(result)) == int(fires)
    assert result.timers_pending == int(not fires)


def write_files(tmp_path: Path, script: Script) -> tuple[Path, Path]:
    rules = tmp_path / "cart.yaml"
    rules.write_text(CART, encoding="utf-8")
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(script.lines) + b"\n")
    return rules, events


def test_the_cli_fires_pending_timers_with_until(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Script().track(T0, "ada", "Product Added", cart_id="c1", name="Lamp")
    rules, events = write_files(tmp_path, script)
    code = cli.main(["replay", str(events), "--rules", str(rules), "--until", "+1h", "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    [line] = out.splitlines()
    trigger = json.loads(line)
    Trigger.model_validate(trigger)
    assert trigger["type"] == "kairos.trigger.cart_reminder"
    assert trigger["time"] == iso(DUE)
    assert trigger["data"]["explanation"]["timer"]["kind"] == "absence"
    assert "1 timer fired" in err
    assert "0 timers pending" in err


def test_the_cli_without_until_reports_the_timer_pending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules, events = write_files(tmp_path, Script().track(T0, "ada", "Product Added", cart_id="c1"))
    assert cli.main(["replay", str(events), "--rules", str(rules), "--json"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "0 timers fired, 1 timer pending" in err


def test_the_cli_rejects_an_until_that_is_neither_a_duration_nor_a_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules, events = write_files(tmp_path, Script().track(T0, "ada", "Product Added", cart_id="c1"))
    assert cli.main(["replay", str(events), "--rules", str(rules), "--until", "soon"]) == 2
    assert "--until" in capsys.readouterr().err


def test_an_until_written_without_its_plus_is_answered_with_the_plus_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules, events = write_files(tmp_path, Script().track(T0, "ada", "Product Added", cart_id="c1"))
    assert cli.main(["replay", str(events), "--rules", str(rules), "--until", "1d"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("--until: '1d' is neither +DURATION, after the last event (e.g. +1d)")
    assert "ISO 8601" in line


def two_users() -> Script:
    """Two users acting at the same instants, one user's line first at each instant."""
    script = Script()
    script.track(T0, "ada", "Product Added", cart_id="a1")
    script.track(T0, "bob", "Product Added", cart_id="b1")
    script.track(T0 + 5 * MINUTE_MS, "ada", "Product Added", cart_id="a2")
    script.page(T0 + 5 * MINUTE_MS, "bob")
    script.track(T0 + 20 * MINUTE_MS, "ada", "Order Completed", cart_id="a2")
    script.track(T0 + 20 * MINUTE_MS, "bob", "Order Completed", cart_id="b1")
    script.page(T0 + 30 * MINUTE_MS, "ada")  # at a1's due time: it fires first
    script.track(T0 + 30 * MINUTE_MS, "bob", "Product Added", cart_id="b2")
    script.page(T0 + 45 * MINUTE_MS, "ada")
    script.page(T0 + 45 * MINUTE_MS, "bob")
    return script


def by_user(result: ReplayResult) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for trigger in result.triggers:
        found.setdefault(trigger["subject"], []).append((trigger["time"], trigger["id"]))
    return {user: sorted(items) for user, items in found.items()}


def test_replaying_the_same_file_twice_gives_the_same_trigger_ids(book: RuleBook) -> None:
    until = {"until": lambda last: last + HOUR_MS}
    first, second = two_users().run(book, **until), two_users().run(book, **until)
    assert [t["id"] for t in first.triggers] == [t["id"] for t in second.triggers]
    assert first.triggers == second.triggers
    assert len(first.triggers) == 2


def user_lines(script: Script, user: str) -> list[bytes]:
    return [line for line in script.lines if orjson.loads(line)["userId"] == user]


@pytest.mark.parametrize("order", ["ada_first", "bob_first", "bob_first_at_each_instant"])
def test_the_order_of_lines_of_different_users_does_not_change_a_users_triggers(
    book: RuleBook, order: str
) -> None:
    script = two_users()
    ada, bob = user_lines(script, "ada"), user_lines(script, "bob")
    if order == "ada_first":
        lines = ada + bob
    elif order == "bob_first":
        lines = bob + ada
    else:
        lines = [line for pair in zip(bob, ada, strict=True) for line in pair]
    until = {"until": lambda last: last + HOUR_MS}
    reordered = Script()
    reordered.lines = lines
    expected = by_user(script.run(book, **until))
    assert [time for time, _ in expected["ada"]] == [iso(DUE)]
    assert [time for time, _ in expected["bob"]] == [iso(T0 + 60 * MINUTE_MS)]
    assert by_user(reordered.run(book, **until)) == expected


@pytest.mark.parametrize("link", ["identify", "alias"])
def test_an_anonymous_visitors_cart_reminder_follows_them_to_their_user(
    book: RuleBook, link: str
) -> None:
    script = Script().add(
        T0,
        type="track",
        anonymousId="a1",
        event="Product Added",
        properties={"cart_id": "c1"},
    )
    if link == "identify":
        script.add(T0 + MINUTE_MS, type="identify", userId="ada", anonymousId="a1")
    else:
        script.add(T0 + MINUTE_MS, type="alias", userId="ada", previousId="a1")
    result = script.run(book, until=lambda last: last + HOUR_MS)
    [reminder] = reminders(result)
    assert reminder["subject"] == "ada"
    assert reminder["time"] == iso(DUE)
