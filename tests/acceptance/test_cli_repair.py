"""`polysync runs repair` (D13) as a user types it, against the served emulator: a Failed run
is repaired in place (one jobs/runs/repair, one Databricks run) and followed to Success."""

from __future__ import annotations

import httpx
import pytest

from tests.acceptance.test_cli import (  # noqa: F401 - fixtures
    Cli,
    emulator_url,
    no_traceback,
    workspace,
)


def endpoint_calls(url: str, endpoint: str) -> int:
    stats = httpx.get(f"{url}/emulator/stats").json()
    return int(stats["endpoints"].get(endpoint, {}).get("total", 0))


@pytest.fixture(scope="module")
def flaky(workspace: Cli) -> str:  # noqa: F811 - the imported fixture
    """A three-task workflow whose middle task fails on its first attempt and succeeds when it
    runs again (as after a fix), imported into the shared home."""
    seeded = httpx.post(
        f"{workspace.url}/emulator/jobs",
        json={
            "name": "flaky-etl",
            "tasks": [
                {"task_key": "extract", "emulator": {"duration_s": 5}},
                {
                    "task_key": "transform",
                    "depends_on": [{"task_key": "extract"}],
                    "emulator": {"duration_s": 5, "attempts": ["failure", "success"]},
                },
                {"task_key": "load", "depends_on": [{"task_key": "transform"}]},
            ],
        },
    )
    seeded.raise_for_status()
    job_id = str(seeded.json()["job_ids"][0])
    workspace.ok("import", "demo", "--job-id", job_id)
    return job_id


def test_a_failed_run_is_repaired_and_followed_to_success(
    workspace: Cli,  # noqa: F811 - the imported fixture
    flaky: str,
) -> None:
    failed = workspace("run", flaky, "--platform", "demo", "--json")
    assert failed.code == 1, failed.output
    run = failed.json()
    assert run["status"] == "Failed"
    repairs_before = endpoint_calls(workspace.url, "jobs/runs/repair")
    runs_before = endpoint_calls(workspace.url, "jobs/run-now")
    repaired = workspace("runs", "repair", str(run["id"]), "--json")
    assert repaired.code == 0, repaired.output
    body = repaired.json()
    assert body["status"] == "Success"
    assert body["databricks_run_id"] == run["databricks_run_id"]
    assert body["repair"]["number"] == 1
    assert body["repair"]["task_keys"] == ["transform", "load"]
    assert body["repair"]["repair_id"] is not None
    assert body["repair"]["requested_by"].startswith("cli:")
    assert endpoint_calls(workspace.url, "jobs/runs/repair") == repairs_before + 1
    assert endpoint_calls(workspace.url, "jobs/run-now") == runs_before  # no new run
    shown = workspace.ok("runs", "show", str(run["id"]), "--json").json()
    history = [(e["status"], e["message"]) for e in shown["events"]]
    assert ("Running", "Repair #1 requested (tasks: transform, load)") in history
    assert [status for status, _ in history][-1] == "Success"
    # A successful run is not repaired again: exit 2, a clear reason, nothing sent.
    again = workspace("runs", "repair", str(run["id"]))
    assert again.code == 2, again.output
    assert f"Run {run['id']} is Success: only a Failed or Cancelled run" in again.stderr
    no_traceback(again)
    assert endpoint_calls(workspace.url, "jobs/runs/repair") == repairs_before + 1


def test_repair_without_waiting_prints_the_request(
    workspace: Cli,  # noqa: F811 - the imported fixture
    flaky: str,
) -> None:
    failed = workspace("run", flaky, "--platform", "demo", "--json")
    assert failed.code == 1, failed.output
    run_id = str(failed.json()["id"])
    requested = workspace.ok("runs", "repair", run_id, "--no-wait")
    assert "Repair #1 requested (tasks: transform, load)." in requested.stdout
    finished = workspace("runs", "watch", run_id)
    assert finished.code == 0, finished.output
    unknown = workspace("runs", "repair", "999999")
    assert unknown.code == 2
    assert "No run with id 999999" in unknown.stderr
