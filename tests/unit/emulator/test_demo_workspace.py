"""The shipped demo workspace: its jobs keep their ids; notebooks, pipelines and the vault."""

from __future__ import annotations

import base64

from polysync.emulator.spec import load_workspace
from tests.conftest import EmulatorHarness

DEMO_JOB_IDS = {
    914275016372845,
    527703982144019,
    306118823409576,
    681940257713388,
    449205713860021,
    772318640951237,
    158820374466712,
    203947718265530,
    390176625581204,
    611504932871059,
}


def test_demo_jobs_keep_their_ids() -> None:
    assert {entry.job_id for entry in load_workspace("demo").jobs} == DEMO_JOB_IDS


async def test_demo_notebooks_in_four_languages_with_widgets(
    demo_emulator: EmulatorHarness,
) -> None:
    async with demo_emulator.client() as api:
        listed = (
            await api.get("/api/2.0/workspace/list", params={"path": "/Shared/polysync-demo"})
        ).json()["objects"]
        assert sorted(o["language"] for o in listed) == ["PYTHON", "R", "SCALA", "SQL"]
        sources = {}
        for obj in listed:
            exported = await api.get("/api/2.0/workspace/export", params={"path": obj["path"]})
            sources[obj["language"]] = base64.b64decode(exported.json()["content"]).decode()
    assert sources["PYTHON"].startswith("# Databricks notebook source\n")
    for kind in ("text", "dropdown", "combobox", "multiselect"):
        assert f"dbutils.widgets.{kind}(" in sources["PYTHON"]
    assert "CREATE WIDGET TEXT as_of" in sources["SQL"]
    assert sources["SQL"].startswith("-- Databricks notebook source\n")
    assert "dbutils.widgets.dropdown(" in sources["SCALA"]
    assert "dbutils.widgets.combobox(" in sources["R"]


async def test_demo_pipelines_one_completes_one_fails(demo_emulator: EmulatorHarness) -> None:
    async with demo_emulator.client() as api:
        statuses = (await api.get("/api/2.0/pipelines")).json()["statuses"]
        ids = {s["name"]: s["pipeline_id"] for s in statuses}
        updates = {}
        for name, pipeline_id in ids.items():
            answer = await api.post(f"/api/2.0/pipelines/{pipeline_id}/updates", json={})
            updates[name] = answer.json()["update_id"]
        demo_emulator.clock.advance(3600)
        states = {}
        for name, pipeline_id in ids.items():
            got = await api.get(f"/api/2.0/pipelines/{pipeline_id}/updates/{updates[name]}")
            states[name] = got.json()["update"]["state"]
        errors = (
            await api.get(
                f"/api/2.0/pipelines/{ids['iot-telemetry-dlt']}/events",
                params={"filter": "level='ERROR'"},
            )
        ).json()["events"]
    assert states == {"sales-medallion-dlt": "COMPLETED", "iot-telemetry-dlt": "FAILED"}
    assert {e["event_type"] for e in errors} == {"flow_progress", "update_progress"}
    assert "TABLE_OR_VIEW_NOT_FOUND" in errors[0]["error"]["exceptions"][0]["message"]


def test_the_demo_vault_holds_the_demo_token() -> None:
    spec = load_workspace("demo")
    assert spec.vault is not None
    assert spec.vault.secrets["databricks-token"].value.get_secret_value() in spec.auth.tokens


async def test_a_demo_notebook_runs_through_runs_submit(demo_emulator: EmulatorHarness) -> None:
    async with demo_emulator.client() as api:
        body = {
            "run_name": "forecast",
            "tasks": [
                {
                    "task_key": "forecast",
                    "notebook_task": {"notebook_path": "/Shared/polysync-demo/forecast_demand"},
                }
            ],
        }
        run_id = (await api.post("/api/2.2/jobs/runs/submit", json=body)).json()["run_id"]
        demo_emulator.clock.advance(120)
        run = (await api.get("/api/2.2/jobs/runs/get", params={"run_id": run_id})).json()
        output = await api.get(
            "/api/2.2/jobs/runs/get-output", params={"run_id": run["tasks"][0]["run_id"]}
        )
    assert run["state"]["result_state"] == "FAILED"
    assert output.json()["error"].startswith("Error in library(forecast)")


async def test_control_plane_vault_summary_never_shows_values(
    demo_emulator: EmulatorHarness,
) -> None:
    async with demo_emulator.client() as api:
        answer = await api.get("/emulator/vault")
        rotated = await api.put(
            "/emulator/vault/secrets/databricks-token", json={"value": "dapi-2"}
        )
    assert answer.status_code == 200
    assert [s["name"] for s in answer.json()["secrets"]] == ["databricks-token", "sp-client-secret"]
    assert "dapi-demo-token" not in answer.text
    assert rotated.status_code == 200
    assert "dapi-2" not in rotated.text
