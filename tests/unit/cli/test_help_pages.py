"""Every command's --help renders (exit 0): help text goes through Rich markup, where a
bracketed `[/VERSION]` in a docstring is a closing tag and crashed `polysync vaults --help`
with a MarkupError traceback (found by trying the CLI)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from polysync.cli.main import COMMANDS, app, load_command


def _command_paths(command: Any, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths.extend(_command_paths(sub, (*prefix, name)))
    return paths


PATHS = [()] + [path for name in COMMANDS for path in _command_paths(load_command(name), (name,))]


def test_the_walk_reaches_the_newest_commands() -> None:
    assert {("vaults",), ("vaults", "add"), ("tasks", "create"), ("taskruns", "repair")} <= set(
        PATHS
    )


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "polysync")
def test_help_renders(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=120)
    assert result.exit_code == 0, (path, result.output, result.exception)
    assert "Usage:" in result.output
