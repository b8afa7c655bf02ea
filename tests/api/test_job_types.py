"""The Notebook and Pipeline job types through the REST API: platform attributes, Get Pipelines,
import by External Id, the job's parameters, Execute Now with overrides, watch, cancel."""

from __future__ import annotations

from typing import Any

from polysync.domain.records import Run
from tests.api.conftest import Api
from tests.api.test_platforms import is_problem

NOTEBOOK_PATH = "/Shared/polysync-demo/daily_sales_report"
FAILING_NOTEBOOK = "/Shared/polysync-demo/forecast_demand"
SALES_PIPELINE = "6f1c2b7e-3a4d-4e5f-8a9b-0c1d2e3f4a5b"
IOT_PIPELINE = "0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d"


async def import_ids(api: Api, *external_ids: str) -> dict[str, int]:
    response = await api.client.post(
        f"/api/v1/platforms/{api.platform_id}/import",
        headers=api.auth("admin"),
        json={"external_ids": list(external_ids)},
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert all(r["error"] is None for r in results), results
    return {r["external_id"]: r["job_id"] for r in results}


async def execute(api: Api, job_id: int, **overrides: str) -> dict[str, Any]:
    response = await api.client.post(
        f"/api/v1/jobs/{job_id}/runs", headers=api.auth("operator"), json={"parameters": overrides}
    )
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


async def run_of(api: Api, run_id: int) -> dict[str, Any]:
    response = await api.client.get(f"/api/v1/runs/{run_id}", headers=api.auth("viewer"))
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


async def start_then_cancel(api: Api, job_id: int) -> Run:
    """Execute Now, let the engine start it, cancel through the API, drive it to the end."""
    running = await execute(api, job_id)
    await api.step()
    cancel = await api.client.post(
        f"/api/v1/runs/{running['id']}/cancel", headers=api.auth("operator")
    )
    assert cancel.status_code in (200, 202), cancel.text
    return await api.drive(running["id"])


async def test_get_pipelines_lists_every_job_type(api: Api) -> None:
    response = await api.client.get(
        f"/api/v1/platforms/{api.platform_id}/pipelines", headers=api.auth("operator")
    )
    assert response.status_code == 200
    kinds: dict[str, set[str]] = {}
    for job in response.json():
        kinds.setdefault(job["kind"], set()).add(job["external_id"])
    assert NOTEBOOK_PATH in kinds["Databricks Notebook"]
    assert kinds["Databricks Pipeline"] == {SALES_PIPELINE, IOT_PIPELINE}
    assert len(kinds["Databricks Workflow"]) == 7


async def test_notebook_attributes_import_execute_fail_and_cancel(api: Api) -> None:
    ids = await import_ids(api, NOTEBOOK_PATH, FAILING_NOTEBOOK)
    job = await api.client.get(f"/api/v1/jobs/{ids[NOTEBOOK_PATH]}", headers=api.auth("viewer"))
    body = job.json()
    assert body["job_type"] == "Databricks Notebook"
    region = next(p for p in body["parameters"] if p["name"] == "region")
    assert region["choices"] == ["emea", "apac", "amer"]
    assert region["source"] == "dbutils.widgets.dropdown"

    # Without compute: a 4xx problem naming what to set, and no run recorded.
    refused = await api.client.post(
        f"/api/v1/jobs/{ids[NOTEBOOK_PATH]}/runs",
        headers=api.auth("operator"),
        json={"parameters": {"region": "apac"}},
    )
    assert is_problem(refused, refused.status_code)
    assert 400 <= refused.status_code < 500
    assert "serverless=true" in refused.json()["detail"]

    patched = await api.client.patch(
        f"/api/v1/platforms/{api.platform_id}",
        headers=api.auth("admin"),
        json={"options": {"attributes": {"cluster_id_unused": "", "serverless": "true"}}},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["options"]["attributes"]["serverless"] == "true"

    bad = await api.client.post(
        f"/api/v1/jobs/{ids[NOTEBOOK_PATH]}/runs",
        headers=api.auth("operator"),
        json={"parameters": {"region": "mars"}},
    )
    assert bad.status_code in {400, 422}
    run = await execute(api, ids[NOTEBOOK_PATH], region="apac")
    done = await api.drive(run["id"])
    assert done.status.value == "Success"
    shown = await run_of(api, run["id"])
    assert shown["parameters_sent"] == {"region": "apac"}
    assert shown["databricks_run_id"].isdigit()

    failing = await execute(api, ids[FAILING_NOTEBOOK])
    failed = await api.drive(failing["id"])
    assert failed.status.value == "Failed"
    assert "no package called 'forecast'" in failed.message

    cancelled = await start_then_cancel(api, ids[FAILING_NOTEBOOK])
    assert cancelled.status.value == "Cancelled"


async def test_pipeline_import_execute_fail_and_cancel(api: Api) -> None:
    ids = await import_ids(api, SALES_PIPELINE, IOT_PIPELINE)
    job = await api.client.get(f"/api/v1/jobs/{ids[SALES_PIPELINE]}", headers=api.auth("viewer"))
    parameters = {p["name"]: p for p in job.json()["parameters"]}
    assert parameters["full_refresh"]["sent_at_run_time"] is True
    assert parameters["source_path"]["reference_only"] is True
    assert parameters["source_path"]["sent_at_run_time"] is False

    refused = await api.client.post(
        f"/api/v1/jobs/{ids[SALES_PIPELINE]}/runs",
        headers=api.auth("operator"),
        json={"parameters": {"source_path": "/elsewhere"}},
    )
    assert 400 <= refused.status_code < 500
    assert "reference only" in refused.json()["detail"]

    run = await execute(api, ids[SALES_PIPELINE], full_refresh="true")
    done = await api.drive(run["id"])
    assert done.status.value == "Success"
    assert done.run_id is not None
    assert done.run_id.startswith(f"{SALES_PIPELINE}:")
    shown = await run_of(api, run["id"])
    assert shown["parameters_sent"] == {"full_refresh": "true"}
    assert f"#joblist/pipelines/{SALES_PIPELINE}/updates/" in shown["run_page_url"]

    failing = await execute(api, ids[IOT_PIPELINE])
    failed = await api.drive(failing["id"])
    assert failed.status.value == "Failed"
    assert "TABLE_OR_VIEW_NOT_FOUND" in failed.message

    cancelled = await start_then_cancel(api, ids[SALES_PIPELINE])
    assert cancelled.status.value == "Cancelled"
    assert "stops its active update" in cancelled.message
