"""`polysync profiles ...` (D14) on a real SQLite file: create, list, show, edit, link, unlink,
delete, with --json and with hostile values (exit 2, the field named, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from polysync.cli.main import app


@pytest.fixture
def polysync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("POLYSYNC_HOME", str(tmp_path))
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), terminal_width=200)

    for name in ("east", "west"):
        added = invoke(
            "platform", "add", name, "--url", "https://adb-1.1.azuredatabricks.net",
            "--token", "env:X",
        )  # fmt: skip
        assert added.exit_code == 0, added.output
    return invoke


def test_create_list_show_edit_link_unlink_delete(polysync: Any) -> None:
    created = polysync(
        "profiles", "create", "cap", "--type", "concurrency", "--max-concurrent", "5",
        "--queue-timeout-s", "600", "--scope", "global", "-P", "east", "-P", "west", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    profile = json.loads(created.stdout)
    assert (profile["max_concurrent"], profile["scope"], len(profile["platform_ids"])) == (
        5,
        "global",
        2,
    )
    rate = polysync(
        "profiles", "create", "pace", "--type", "rate", "--limit", "10", "--window-s", "60",
        "--algorithm", "leaky-bucket", "-P", "east",
    )  # fmt: skip
    assert rate.exit_code == 0, rate.output
    assert "10 per 60 s (leaky bucket)" in polysync("profiles", "show", "pace").stdout
    assert "5 running at once" in polysync("profiles", "show", "cap").stdout
    (cap_now,) = json.loads(polysync("profiles", "show", "cap", "--json").stdout)["now"]
    assert cap_now == {
        "platform_id": None,
        "platform": None,
        "running": 0,
        "started_in_window": None,
        "waiting": 0,
        "text": "all linked platforms: 0 of 5 running, 0 waiting",
    }
    (pace_now,) = json.loads(polysync("profiles", "show", "pace", "--json").stdout)["now"]
    assert pace_now["text"] == "east: 0 of 10 started in the last 60 s, 0 waiting"
    listed = polysync("profiles", "list")
    assert listed.exit_code == 0
    assert "pace" in listed.stdout
    edited = polysync("profiles", "edit", "cap", "--disable", "--no-queue-timeout", "--json")
    assert (json.loads(edited.stdout)["enabled"], json.loads(edited.stdout)["queue_timeout_s"]) == (
        False,
        None,
    )
    unlinked = polysync("profiles", "unlink", "cap", "-P", "west")
    assert unlinked.exit_code == 0, unlinked.output
    shown = polysync("profiles", "show", "cap")
    assert "Platforms         east" in shown.stdout
    # No Task 42 here: the link is refused, naming it, and nothing is written.
    missing = polysync("profiles", "link", "cap", "--task", "42", "--json")
    assert missing.exit_code == 2, missing.output
    assert "No Task with id 42" in missing.output
    assert json.loads(polysync("profiles", "show", "cap", "--json").stdout)["task_ids"] == []
    assert polysync("profiles", "delete", "pace", "--yes").exit_code == 0
    assert [p["name"] for p in json.loads(polysync("profiles", "list", "--json").stdout)] == ["cap"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--type", "concurrency"), "Max Concurrent is required"),
        (("--type", "rate", "--limit", "10"), "Window Seconds is required"),
        (("--type", "sideways"), "The type 'sideways' is not one of concurrency, rate"),
        (("--type", "rate", "--limit", "1e9", "--window-s", "5"), "Limit '1e9' is not a whole"),
        (("--type", "concurrency", "--max-concurrent", "0"), "from 1 to 100000, not 0"),
        (("--type", "rate", "--limit", "1", "--window-s", "nan"), "Window Seconds must be from"),
        (("--type", "concurrency", "--max-concurrent", "2", "-P", "nowhere"), "No platform"),
        (("--type", "concurrency", "--max-concurrent", "2", "--task", "-1"), "A Task is named"),
    ],
)
def test_bad_values_exit_2_and_write_nothing(
    polysync: Any, args: tuple[str, ...], said: str
) -> None:
    result = polysync("profiles", "create", "p", *args)
    assert result.exit_code == 2
    assert said in result.output
    assert json.loads(polysync("profiles", "list", "--json").stdout) == []


def test_the_type_is_locked_and_a_name_is_unique(polysync: Any) -> None:
    polysync("profiles", "create", "cap", "--type", "concurrency", "--max-concurrent", "1")
    again = polysync("profiles", "create", "cap", "--type", "concurrency", "--max-concurrent", "1")
    assert again.exit_code == 2
    assert "already exists" in again.output
    changed = polysync("profiles", "edit", "cap", "--limit", "5")
    assert changed.exit_code == 2
    assert "Limit belongs to rate profiles" in changed.output
    hostile = polysync("profiles", "create", "<script>\x1b[2J", "--type", "rate")
    assert hostile.exit_code == 2
    assert "ESC character" in hostile.output
