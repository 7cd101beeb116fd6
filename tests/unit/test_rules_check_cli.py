"""Specifications of `kairos rules check` and `kairos rules schema`, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "rules"
COMMITTED_SCHEMA = ROOT / "docs" / "rules.schema.json"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def check(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["rules", "check", *(str(a) for a in args)])
    out, err = capsys.readouterr()
    return code, out, err


TYPO_RULE = """
    rules:
      - id: viewed_twice
        when: {event: Product Veiwed}
        then:
          type: nudge
          channel: in_app
          content: {text: "Still looking?"}
"""


def test_the_example_rules_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(capsys, EXAMPLES)

    assert code == 0, out + err
    assert "0 errors" in err


def test_the_example_rules_pass_when_run_as_a_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "rules", "check", str(EXAMPLES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 errors, 0 warnings" in done.stderr


def test_a_file_that_is_not_yaml_fails_naming_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, "broken.yaml", "rules: [\n  - id: x\n")

    code, _, err = check(capsys, path)

    assert code == 1
    assert f"{path}: not valid YAML" in err
    assert "rules check: invalid" in err


def test_a_bad_field_fails_naming_the_file_the_rule_and_the_field_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "long.yaml",
        """
        rules:
          - id: x
            when: {event: Product Viewed}
            if:
              count: {event: Product Viewed, within: 100d}
              value: 2
            then: {type: t, channel: email}
        """,
    )

    code, _, err = check(capsys, path)

    assert code == 1
    assert f"{path}: rule x: if.count.within: count windows are limited to 90d" in err


def test_a_problem_of_the_whole_rule_names_the_rule_and_no_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "timed.yaml",
        """
        rules:
          - id: within_no_unless
            when: {event: Product Added}
            within: 30m
            then: {type: t, channel: email}
        """,
    )

    code, _, err = check(capsys, path)

    assert code == 1
    assert f"{path}: rule within_no_unless: `unless` and `within` go together" in err


def test_an_unreachable_condition_fails_the_check(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "never.yaml",
        """
        rules:
          - id: first_visit
            when: {event: Page Viewed}
            if:
              count: {event: Page Viewed, within: 90d}
              op: eq
              value: 0
            then: {type: t, channel: in_app}
        """,
    )

    code, out, err = check(capsys, path)

    assert code == 1
    assert f"{path}: error: rule first_visit: if: count of 'Page Viewed' eq 0 can never hold" in (
        out
    )
    assert "1 error, 0 warnings" in err


def test_a_typo_in_an_event_name_is_a_warning_against_a_sample_and_fails_with_strict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, "typo.yaml", TYPO_RULE)
    sample = write(
        tmp_path,
        "sample.jsonl",
        """
        {"type": "track", "event": "Product Viewed", "userId": "u1", "properties": {}}
        not a json line
        {"batch": [{"type": "page", "userId": "u1", "properties": {"path": "/"}}]}
        """,
    )
    expected = (
        f"{path}: warning: rule viewed_twice: event 'Product Veiwed' never occurs in the sample "
        "(did you mean 'Product Viewed'?)"
    )

    code, out, err = check(capsys, path, "--sample", sample)
    assert code == 0
    assert expected in out.splitlines()
    assert "0 errors, 1 warning" in err

    code, out, _ = check(capsys, path, "--sample", sample, "--strict")
    assert code == 1
    assert expected in out.splitlines()


def test_without_a_sample_event_names_are_not_checked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path, "typo.yaml", TYPO_RULE)

    code, out, _ = check(capsys, path, "--strict")

    assert code == 0
    assert out == ""


def test_the_schema_is_json_titled_kairos_rule_file_and_matches_the_committed_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["rules", "schema"])
    out, _ = capsys.readouterr()

    assert code == 0
    schema = json.loads(out)
    assert schema["title"] == "Kairos rule file"
    if COMMITTED_SCHEMA.exists():
        committed = json.loads(COMMITTED_SCHEMA.read_text(encoding="utf-8"))
        assert schema == committed, "regenerate: kairos rules schema > docs/rules.schema.json"


def test_exists_with_a_value_fails_rather_than_ignoring_the_value(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "plan.yaml",
        """
        rules:
          - id: pro_users
            when: {event: Page Viewed}
            if: {trait: plan, op: exists, value: pro}
            then: {type: t, channel: email, content: {a: b}}
        """,
    )

    code, _, err = check(capsys, path)

    assert code == 1
    assert f"{path}: rule pro_users: if.trait: op exists takes no value" in err


def test_problems_across_files_name_the_files_and_come_together(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = write(
        tmp_path,
        "one.yaml",
        """
        rules:
          - id: a
            when: {event: X}
            if: {segment: nope}
            then: {type: x, channel: email, content: {a: b}}
          - id: low
            when: {score_below: 20}
            then: {type: x, channel: email, content: {a: b}}
        """,
    )
    second = write(
        tmp_path,
        "two.yaml",
        """
        rules:
          - id: a
            when: {event: X}
            then: {type: x, channel: email, content: {a: b}}
        """,
    )

    code, _, err = check(capsys, tmp_path)

    assert code == 1
    assert f"{second}: rule a: declared more than once (also in {first})" in err
    assert f"{first}: rule a: unknown segment 'nope'" in err
    assert "need an engagement_score block" in err
