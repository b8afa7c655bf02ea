"""The lazy command table, the help texts and the one exit-status table (issue 10)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polysync.cli.common import EXIT_CODES
from polysync.cli.main import COMMANDS, app, load_command, reflow

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_table_says_what_each_command_says_of_itself(name: str) -> None:
    command = load_command(name)
    first_paragraph = (command.help or "").split("\n\n")[0]
    assert COMMANDS[name].help == first_paragraph


def test_help_lists_every_command_without_importing_one() -> None:
    listed = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert listed.exit_code == 0
    for name, entry in COMMANDS.items():
        assert re.search(rf"│ {re.escape(name)}\s+{re.escape(entry.help[:40])}", listed.output)


def test_reflow_joins_the_lines_of_each_paragraph() -> None:
    text = """First line
    and more.

    Second paragraph
    goes on."""
    assert reflow(text) == "First line and more.\n\nSecond paragraph goes on."
    assert reflow(inspect.cleandoc("\b\n  keep\n  this")) == "\b\nkeep\nthis"


@pytest.mark.parametrize("document", ["README.md", "docs/cli.md"])
def test_the_documented_exit_statuses_are_the_table_in_code(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    marker = text.index("<!-- exit-codes:")
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", text[marker:], re.MULTILINE)
    table = [(int(code), meaning) for code, meaning in rows[: len(EXIT_CODES)]]
    assert table == list(EXIT_CODES)


def test_run_help_states_the_same_exit_statuses() -> None:
    shown = CliRunner().invoke(app, ["run", "--help"], terminal_width=300).output
    sentence = " ".join(shown.split())
    assert "1 the run failed or was cancelled" in sentence
    assert "2 bad input" in sentence
    assert "3 Databricks refused to start it or could not be reached" in sentence
