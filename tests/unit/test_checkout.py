"""The tests test the checkout they are in, whatever else the environment has installed."""

from __future__ import annotations

from pathlib import Path

from app import cli

CHECKOUT = Path(__file__).resolve().parents[2]


def test_the_code_under_test_is_this_checkouts_even_with_another_installed_editable() -> None:
    # A git worktree shares the main checkout's venv, whose editable install points there.
    assert Path(cli.__file__).resolve().parents[1] == CHECKOUT
