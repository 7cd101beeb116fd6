"""Reading rule files from disk: YAML → validated `RuleFile`s → a compiled `RuleBook`.

Every problem is reported with the file, the rule (or segment) id and the path of the bad field,
e.g. `examples/rules/cart.yaml: rule cart_reminder: if.all[1].count.within: count windows are
limited to 90d`, and all of them at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from engine.rules import RuleBook, RuleSetError, compile_rulebook
from schemas.rules import RuleFile

RULE_SUFFIXES = (".yaml", ".yml")


def rule_paths(path: Path) -> list[Path]:
    """The rule files at `path`: the file itself, or every YAML file of a folder, sorted."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in RULE_SUFFIXES and p.is_file())
    if path.is_file():
        return [path]
    raise RuleSetError(f"{path}: no such file or folder of rules")


def read_rule_files(path: Path) -> list[tuple[Path, RuleFile]]:
    """Parse and validate every rule file; raises RuleSetError listing every problem."""
    files: list[tuple[Path, RuleFile]] = []
    problems: list[str] = []
    for file in rule_paths(path):
        try:
            document = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            problems.append(f"{file}: not valid YAML: {exc}".replace("\n", " "))
            continue
        try:
            files.append((file, RuleFile.model_validate(document)))
        except ValidationError as exc:
            problems += [f"{file}: {_describe(error, document)}" for error in exc.errors()]
    if problems:
        raise RuleSetError("\n".join(problems))
    return files


def load_rulebook(path: Path, recent_items: int = 10) -> RuleBook:
    """The compiled rule set at `path`; raises RuleSetError naming every problem."""
    files = read_rule_files(path)
    try:
        return compile_rulebook(
            [rule_file for _, rule_file in files],
            recent_items=recent_items,
            sources=[str(file) for file, _ in files],
        )
    except RuleSetError as exc:
        # Problems of one rule already name its file; those across files get the folder.
        lines = str(exc).splitlines()
        raise RuleSetError(
            "\n".join(line if line.startswith(str(path)) else f"{path}: {line}" for line in lines)
        ) from exc


def field_path(loc: tuple[int | str, ...]) -> str:
    """`rules[0].if.all[1].count.within` from pydantic's location of an error.

    Conditions are a tagged union, and pydantic puts the tag in the location before the field of
    the same name (`all`, `all`, 0): the tag is folded away.
    """
    parts: list[str] = []
    for i, step in enumerate(loc):
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif i + 1 < len(loc) and loc[i + 1] == step:
            continue
        else:
            parts.append(f".{step}" if parts else str(step))
    return "".join(parts)


def _describe(error: Any, document: Any) -> str:
    loc = tuple(error["loc"])
    owner = ""
    if len(loc) >= 2 and loc[0] in ("rules", "segments") and isinstance(loc[1], int):
        items = document.get(loc[0]) if isinstance(document, dict) else None
        item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
        item_id = item.get("id") if isinstance(item, dict) else None
        kind = "rule" if loc[0] == "rules" else "segment"
        owner = f"{kind} {item_id or f'#{loc[1] + 1}'}: "
        loc = loc[2:]
    message = str(error["msg"]).removeprefix("Value error, ")
    path = field_path(loc)
    if not path:  # a check of the rule (or segment) as a whole: no field to name
        return f"{owner}{message}" if owner else f"file: {message}"
    return f"{owner}{path}: {message}"
