"""Specifications of what `kairos replay` prints about its input, run as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import cli

RULES = """
rules:
  - id: welcome
    when: {event: Signed Up}
    then:
      type: welcome
      channel: email
      content: {subject: "Welcome"}
"""
TRACK = b'{"type":"track","userId":"u","event":"Signed Up"}'


def replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[bytes], *args: str
) -> tuple[int, str, str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    code = cli.main(["replay", str(events), "--rules", str(rules), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_rejected_line_is_reported_by_its_line_number_in_the_file_blank_lines_included(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = replay(tmp_path, capsys, [TRACK, b"   ", b"", b"bad"])

    assert code == 0
    assert "line 4: rejected: not valid JSON" in err
    assert "1 rejected" in err


def test_the_summary_says_one_trigger_and_two_events_not_one_triggers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, err = replay(tmp_path, capsys, [TRACK, b'{"type":"page","userId":"u"}'])

    assert err.splitlines()[-1] == (
        "replay: 2 events, 1 trigger, 0 suppressed, 0 rejected, 0 timers fired, 0 timers pending"
    )


CAPPED = """
contact_policy:
  caps:
    - {channel: email, max: 1, within: 1d}
rules:
  - id: welcome
    when: {event: Signed Up}
    then: {type: welcome, channel: email}
"""


def test_json_output_is_cloudevents_only_and_held_back_triggers_go_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "capped.yaml"
    rules.write_text(CAPPED, encoding="utf-8")
    events = tmp_path / "events.jsonl"
    second = TRACK.replace(b'"type"', b'"messageId":"m2","type"')
    events.write_bytes(TRACK + b"\n" + second + b"\n")
    code = cli.main(["replay", str(events), "--rules", str(rules), "--json"])
    out, err = capsys.readouterr()

    assert code == 0
    [line] = out.splitlines()
    assert json.loads(line)["specversion"] == "1.0"
    held = [json.loads(entry) for entry in err.splitlines() if entry.startswith("{")]
    assert [entry["suppressed"]["reason"] for entry in held] == ["channel_cap"]
