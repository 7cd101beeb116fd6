"""The documentation tells the truth about what a user can configure and where data goes."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings
from app.topics import all_topics

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_page_lists_every_setting_and_nothing_else() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    documented = {line.split("`")[1] for line in page.splitlines() if line.startswith("| `KAIROS_")}
    assert documented == {f"KAIROS_{name.upper()}" for name in Settings.model_fields}


def test_topics_page_names_every_topic() -> None:
    page = (ROOT / "docs" / "topics.md").read_text()
    for spec in all_topics(Settings()):
        assert f"`{spec.name}`" in page, spec.name


def test_committed_rule_schema_is_the_one_the_models_generate() -> None:
    import json

    from schemas.rules import rule_file_schema

    committed = json.loads((ROOT / "docs" / "rules.schema.json").read_text())
    assert committed == rule_file_schema(), (
        "regenerate: kairos rules schema > docs/rules.schema.json"
    )
