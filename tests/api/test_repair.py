"""`POST /api/v1/runs/{id}/repair` (D13): operator role; 202 with the run Running again, the
engine sends one jobs/runs/repair and the run follows it to Success; 409 for any other run."""

from __future__ import annotations

from polysync.emulator.spec import TaskScript
from tests.api.conftest import BACKFILL, FRAUD, Api
from tests.api.test_platforms import is_problem
from tests.api.test_runs import execute


def repair_posts(api: Api) -> int:
    return sum(
        1
        for r in api.harness.app.emulator.stats.recent()
        if r.method == "POST" and r.path.endswith("jobs/runs/repair")
    )


async def test_an_operator_repairs_a_failed_run_and_it_ends_success(api: Api) -> None:
    run = await execute(api, FRAUD)
    failed = await api.drive(run["id"])
    assert failed.status.value == "Failed"
    api.harness.state.script_task(int(FRAUD), "build_features", TaskScript(duration_s=6))
    path = f"/api/v1/runs/{run['id']}/repair"
    is_problem(await api.client.post(path, headers=api.auth("viewer")), 403)
    response = await api.client.post(path, headers=api.auth("operator"))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["detail"].startswith(
        "Repair #1 requested (tasks: build_features, score, publish_alerts)"
    )
    summary = body["run"]
    assert (summary["status"], summary["terminal"], summary["ended_at"]) == ("Running", False, None)
    assert summary["repair"]["number"] == 1
    assert summary["repair"]["task_keys"] == ["build_features", "score", "publish_alerts"]
    assert summary["repair"]["pending"] is True
    assert summary["repair"]["requested_by"].startswith("api:operator")
    assert repair_posts(api) == 0
    final = await api.drive(run["id"])
    assert final.status.value == "Success"
    assert repair_posts(api) == 1
    read = (await api.client.get(f"/api/v1/runs/{run['id']}", headers=api.auth("viewer"))).json()
    assert read["repair"]["pending"] is False
    assert read["repair"]["repair_id"]
    assert [e["status"] for e in read["events"]][-4:-1].count("Failed") == 0
    messages = [e["message"] for e in read["events"]]
    assert "Repair #1 requested (tasks: build_features, score, publish_alerts)" in messages
    # A successful run is not repaired: 409, and nothing is sent.
    again = is_problem(await api.client.post(path, headers=api.auth("operator")), 409)
    assert "is Success: only a Failed or Cancelled run" in again["detail"]
    assert repair_posts(api) == 1


async def test_an_active_or_unknown_run_is_not_repaired(api: Api) -> None:
    run = await execute(api, BACKFILL)
    await api.step(60)
    path = f"/api/v1/runs/{run['id']}/repair"
    status = (await api.store.get_run(run["id"])).status.value
    assert status in ("Starting", "Running")
    problem = is_problem(await api.client.post(path, headers=api.auth("operator")), 409)
    assert problem["detail"] == (
        f"Run {run['id']} is {status}: only a Failed or Cancelled run that reached Databricks "
        "can be repaired. Wait for it to end, then repair it."
    )
    is_problem(await api.client.post("/api/v1/runs/999/repair", headers=api.auth("operator")), 404)
    is_problem(await api.client.post("/api/v1/runs/0/repair", headers=api.auth("operator")), 422)
    assert repair_posts(api) == 0
