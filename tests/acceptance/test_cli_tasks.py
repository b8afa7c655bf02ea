"""`polysync tasks ...` and `polysync taskruns ...` as a user types them (issue 12)."""

from __future__ import annotations

import pytest

from tests.acceptance.test_cli import Cli, emulator_url

__all__ = ["emulator_url"]


@pytest.fixture(scope="module")
def home(emulator_url: str, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    shared = Cli(tmp_path_factory.mktemp("tasks") / "home", emulator_url)
    shared.add_demo_platform()
    shared.ok("import", "demo", "--all")
    return shared


def test_create_list_show_preview_edit_and_delete_tasks(home: Cli) -> None:
    created = home.ok(
        "tasks", "create", "ingest", "--job", "nightly-sales-etl", "--platform", "demo",
        "-s", "0 2 * * *", "--timezone", "Europe/London", "-p", "batch_size=700", "--json",
    ).json()  # fmt: skip
    assert created["name"] == "ingest"
    assert created["schedules"][0]["timezone"] == "Europe/London"
    assert created["parameters"] == {"batch_size": "700"}
    assert created["next_fire"] is not None
    assert len(created["preview"]) == 10
    home.ok(
        "tasks", "create", "scoring", "--job", "fraud-scoring", "--platform", "demo",
        "-d", "ingest", "-p", "model_version={{upstream.ingest.parameters.batch_size}}",
        "--retries", "2", "--backoff", "Linear", "--retry-delay", "30", "--strategy", "Restart",
    )  # fmt: skip
    listed = home.ok("tasks", "list", "--json").json()
    assert [t["name"] for t in listed] == ["ingest", "scoring"]
    assert listed[1]["dependencies"] == [{"upstream": "ingest", "condition": "on_success"}]
    assert listed[1]["retry"]["max_attempts"] == 3
    table = home.ok("tasks", "list").stdout
    assert "ingest" in table
    assert "scoring" in table
    preview = home.ok("tasks", "preview", "ingest", "-n", "3", "--json").json()
    assert len(preview) == 3
    assert all(p["schedule"] == 0 for p in preview)
    # A loop is refused at save, naming it: exit 2, JSON error code.
    loop = home("tasks", "edit", "ingest", "-d", "scoring", "--json")
    assert loop.code == 2
    error = loop.json()["error"]
    assert error["code"] == "invalid-task"
    assert "ingest → scoring → ingest" in error["message"]
    bad = home(
        "tasks", "create", "x", "--job", "fraud-scoring", "--platform", "demo", "-s", "H 2 * * *"
    )
    assert bad.code == 2
    assert "cron" in bad.output
    assert "Traceback" not in bad.output
    # A Task others depend on cannot be deleted.
    refused = home("tasks", "delete", "ingest", "--yes", "--json")
    assert refused.code == 2
    assert refused.json()["error"]["code"] == "conflict"
    paused = home.ok("tasks", "pause", "ingest", "--json").json()
    assert paused["paused"] is True
    assert paused["next_fire"] is None
    shown = home.ok("tasks", "show", "scoring").stdout
    assert "ingest (on_success)" in shown


def test_run_once_then_taskruns_list_show_cancel(home: Cli) -> None:
    home.ok(
        "tasks", "create", "backfill", "--job", "warehouse-backfill", "--platform", "demo",
        "--timeout", "3600",
    )  # fmt: skip
    queued = home.ok("tasks", "run-once", "backfill", "--json").json()
    assert queued["status"] == "Queued"
    assert queued["trigger"] == "Manual"
    listed = home.ok("taskruns", "list", "--task", "backfill", "--json").json()
    assert [r["id"] for r in listed] == [queued["id"]]
    shown = home.ok("taskruns", "show", str(queued["id"]), "--json").json()
    assert shown["events"][0]["status"] == "Queued"
    cancelled = home.ok("taskruns", "cancel", str(queued["id"]), "--json").json()
    assert cancelled["status"] == "Cancelled"
    again = home("taskruns", "cancel", str(queued["id"]), "--json")
    assert again.code == 2
    assert again.json()["error"]["code"] == "conflict"
    repair = home("taskruns", "repair", str(queued["id"]))
    assert repair.code == 2
    assert "never started a run" in repair.output
    missing = home("taskruns", "show", "999999", "--json")
    assert missing.code == 2
    assert missing.json()["error"]["code"] == "not-found"
