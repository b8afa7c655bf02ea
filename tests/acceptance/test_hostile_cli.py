"""The installed CLI against a hostile workspace (issue 9), in subprocesses: every string it
answers carries terminal escape sequences, HTML and `javascript:` links, and one job's answer
never ends. Nothing of it reaches the terminal raw; the endless answer fails the import of that
one job, and nothing hangs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from polysync.emulator.serving import run_in_thread
from tests.acceptance.test_cli import TOKEN_VAR, Cli, Result
from tests.hostile_workspace import ENDLESS_ID, RUN_ID, SCRIPT, WORKFLOW_ID, hostile_workspace

# What a terminal would obey: ESC, BEL, CR, C1 controls (CSI 0x9b), NUL. Not piped output's
# concern alone: with no TTY Rich writes no styling, so any of these came from the workspace.
OBEYED = re.compile("[\x00\x07\x1b\r\x80-\x9f]")


@pytest.fixture(scope="module")
def hostile_url() -> Iterator[str]:
    url, stop = run_in_thread(hostile_workspace())
    try:
        yield url
    finally:
        stop()


def clean(result: Result) -> Result:
    found = OBEYED.search(result.output)
    assert found is None, f"raw {found.group()!r} in: {result.output!r}"
    return result


def test_nothing_the_workspace_says_reaches_the_terminal_raw(
    hostile_url: str, tmp_path: Path
) -> None:
    cli = Cli(tmp_path / "home", hostile_url)
    clean(cli.ok("platform", "add", "hostile", "--url", hostile_url, "--token", f"env:{TOKEN_VAR}"))
    found = clean(cli.ok("discover", "hostile"))
    assert "\\x1b" in found.stdout  # shown as a visible escape, not swallowed
    imported = clean(
        cli("import", "hostile", "--job-id", str(WORKFLOW_ID), "--job-id", str(ENDLESS_ID))
    )
    assert imported.code == 3, imported.output
    assert "larger than 16,777,216 bytes" in imported.stdout
    shown = clean(cli.ok("jobs", "show", str(WORKFLOW_ID), "--platform", "hostile"))
    assert "first line" in shown.stdout
    assert "second line" in shown.stdout  # the description's line break is kept
    assert "\ufffd\\x00" not in shown.stdout  # NUL and lone surrogates became U+FFFD at entry
    assert "\ufffd\ufffd\ufffd" in shown.stdout
    ran = clean(cli("run", str(WORKFLOW_ID), "--platform", "hostile", "--wait"))
    assert ran.code == 1, ran.output  # the run failed, as the workspace says
    assert "javascript:" not in ran.output  # the hostile run page is never shown
    clean(cli.ok("runs", "list"))
    assert [run["status"] for run in clean(cli.ok("runs", "list", "--json")).json()] == ["Failed"]
    details = clean(cli.ok("runs", "show", "1"))
    # D7 amended: the fallback with the job and the run each in its slot.
    assert f"{hostile_url}/#job/{WORKFLOW_ID}/run/{RUN_ID}" in details.stdout
    assert "see below" in details.stdout
    assert "It failed:" in details.stdout
    assert "\ufffd\ufffd\ufffd" in details.stdout  # the run message, stored and shown


def test_json_output_escapes_them_too(hostile_url: str, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home", hostile_url)
    cli.ok("platform", "add", "hostile", "--url", hostile_url, "--token", f"env:{TOKEN_VAR}")
    listed = clean(cli.ok("discover", "hostile", "--json"))
    names = {job["name"] for job in listed.json()}
    assert any(SCRIPT in name and "\x1b" in name for name in names)  # intact once parsed
    assert json.loads(listed.stdout) == listed.json()
