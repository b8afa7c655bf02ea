"""One tolerant decoder on the product path: answers the wire models would refuse (tags that are
not text, names that are numbers, a run whose fields have odd types, an entry with no job id)
are decoded by the job types over real HTTP (httpx ASGI transport), never rejected whole."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from polysync.clock import ManualClock
from polysync.databricks.client import DatabricksClient
from polysync.databricks.settings import PatAuthSettings, WorkspaceSettings
from polysync.domain.models import RunStatus
from polysync.errors import DatabricksError
from polysync.jobtypes.databricks.workflow import DatabricksWorkflowJobType

URL = "https://adb-1.1.azuredatabricks.net"
ODD_JOB = {
    "job_id": 7,
    "creator_user_name": 12,
    "created_time": "yesterday",
    "settings": {
        "name": 42,
        "tags": {"team": "data", "cost": 3, "7": None},
        "tasks": [{"task_key": "a"}, {"task_key": "b"}],
        "parameters": [{"name": "env", "default": 1}, {"default": "no name"}, "junk"],
    },
}
ODD_RUN = {
    "run_id": 9,
    "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS", "state_message": 5},
    "status": "not an object",
    "tasks": [{"task_key": 3, "run_id": "x", "state": []}, "junk"],
    "start_time": "noon",
    "run_page_url": ["not", "a", "url"],
    "job_parameters": "odd",
}

# A run-now answer with odd optional fields: the run started (it has a run id), so the start
# must be confirmed; a strict model would call it unconfirmed and resend it for ever.
ODD_START = {"run_id": 9, "number_in_job": "nine", "run_page_url": {"not": "a url"}}


def odd_workspace() -> Starlette:
    async def jobs_list(request: Request) -> JSONResponse:
        return JSONResponse({"jobs": [ODD_JOB, {"job_id": "seven"}, {"settings": {}}, "junk"]})

    async def jobs_get(request: Request) -> JSONResponse:
        return JSONResponse(ODD_JOB)

    async def runs_get(request: Request) -> JSONResponse:
        return JSONResponse(ODD_RUN)

    async def runs_list(request: Request) -> JSONResponse:
        return JSONResponse({"runs": [ODD_RUN, {"run_id": "nine"}, "junk"], "has_more": False})

    async def run_now(request: Request) -> JSONResponse:
        return JSONResponse(ODD_START)

    return Starlette(
        routes=[
            Route("/api/{version}/jobs/run-now", run_now, methods=["POST"]),
            Route("/api/{version}/jobs/list", jobs_list),
            Route("/api/{version}/jobs/get", jobs_get),
            Route("/api/{version}/jobs/runs/get", runs_get),
            Route("/api/{version}/jobs/runs/list", runs_list),
        ]
    )


@pytest.fixture
def workflow(monkeypatch: pytest.MonkeyPatch) -> DatabricksWorkflowJobType:
    monkeypatch.setenv("POLYSYNC_ODD_TOKEN", "dapi-odd-token-0000")
    settings = WorkspaceSettings(url=URL, auth=PatAuthSettings(token="env:POLYSYNC_ODD_TOKEN"))
    client = DatabricksClient(
        settings, transport=httpx.ASGITransport(app=odd_workspace()), clock=ManualClock(0)
    )
    return DatabricksWorkflowJobType(client)


async def test_the_wire_models_refuse_what_the_product_path_reads(
    workflow: DatabricksWorkflowJobType,
) -> None:
    # The typed client methods stay strict (for callers that want models) ...
    with pytest.raises(DatabricksError, match="unexpected answer"):
        await workflow.client.get_job(7)
    with pytest.raises(DatabricksError, match="unexpected answer"):
        await workflow.client.get_run(9)


async def test_discovery_keeps_what_it_can_read(workflow: DatabricksWorkflowJobType) -> None:
    (found,) = await workflow.discover()  # ... the job type reads them anyway
    assert found.external_id == "7"
    assert found.name == "job 7"  # a name that is not text is not shown
    assert found.tags == {"team": "data"}
    assert found.task_count == 2
    assert found.creator is None
    assert found.created_time_ms is None


async def test_import_keeps_what_it_can_read(workflow: DatabricksWorkflowJobType) -> None:
    job = await workflow.import_job("7")
    assert [p.name for p in job.parameters] == ["env"]
    assert job.parameters[0].default == "1"
    assert job.tags == {"team": "data"}


async def test_poll_and_sweep_decode_odd_runs(workflow: DatabricksWorkflowJobType) -> None:
    snapshot = await workflow.poll("9")
    assert snapshot.status is RunStatus.SUCCESS
    assert snapshot.start_time_ms is None
    assert snapshot.run_page_url is not None
    assert snapshot.run_page_url.startswith(URL)
    active = await workflow.active_runs()
    assert set(active) == {"9"}


async def test_a_start_with_odd_optional_fields_is_confirmed(
    workflow: DatabricksWorkflowJobType,
) -> None:
    job = await workflow.import_job("7")
    started = await workflow.start(job, {}, idempotency_token="polysync-odd-start")
    assert started.run_id == "9"
    assert started.run_page_url.startswith(URL)  # ours, built from the run id (D7)
