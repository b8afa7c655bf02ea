"""GET parameters from a JSON body, the Workspace API and the Pipelines API over the ASGI
transport, on a manual clock."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.conftest import EmulatorHarness


async def test_every_get_takes_its_parameters_from_a_json_body(
    emulator: EmulatorHarness, api: httpx.AsyncClient
) -> None:
    job = emulator.state.create_job(
        {"name": "j", "tasks": [{"task_key": "t", "notebook_task": {"notebook_path": "/t"}}]}
    )
    run_id = (await api.post("/api/2.2/jobs/run-now", json={"job_id": job.job_id})).json()["run_id"]
    # As Airflow's deferrable trigger sends it: GET with the parameters in a JSON body.
    got = await api.request("GET", "/api/2.1/jobs/runs/get", json={"run_id": run_id})
    assert got.status_code == 200
    assert got.json()["run_id"] == run_id
    by_body = await api.request("GET", "/api/2.2/jobs/get", json={"job_id": job.job_id})
    assert by_body.json()["job_id"] == job.job_id
    listed = await api.request(
        "GET", "/api/2.2/jobs/runs/list", json={"job_id": job.job_id, "active_only": True}
    )
    assert [r["run_id"] for r in listed.json()["runs"]] == [run_id]
    status = await api.request("GET", "/api/2.0/workspace/get-status", json={"path": "/Shared"})
    assert status.json()["object_type"] == "DIRECTORY"
    # The query string wins over the body; a body that is not an object is a 400.
    both = await api.request("GET", f"/api/2.2/jobs/runs/get?run_id={run_id}", json={"run_id": 1})
    assert both.json()["run_id"] == run_id
    bad = await api.request("GET", "/api/2.2/jobs/runs/get", content=b"[1]")
    assert bad.status_code == 400
    assert bad.json()["error_code"] == "MALFORMED_REQUEST"
    missing = await api.request("GET", "/api/2.2/jobs/runs/get", json={})
    assert missing.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "Missing required field: run_id",
    }


async def test_workspace_errors_have_the_real_shapes(api: httpx.AsyncClient) -> None:
    missing = await api.get("/api/2.0/workspace/list", params={"path": "/Users/nobody"})
    assert missing.status_code == 404
    assert missing.json() == {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": "Path (/Users/nobody) doesn't exist.",
    }
    relative = await api.get("/api/2.0/workspace/get-status", params={"path": "Shared"})
    assert relative.status_code == 400
    no_parent = await api.post(
        "/api/2.0/workspace/import",
        json={
            "path": "/Shared/a/b",
            "language": "SQL",
            "content": base64.b64encode(b"select 1").decode(),
        },
    )
    assert no_parent.status_code == 404
    assert no_parent.json()["message"] == "The parent folder (/Shared/a) does not exist."
    no_language = await api.post(
        "/api/2.0/workspace/import", json={"path": "/Shared/n", "content": ""}
    )
    assert no_language.status_code == 400
    not_base64 = await api.post(
        "/api/2.0/workspace/import", json={"path": "/Shared/n", "language": "R", "content": "@@@"}
    )
    assert not_base64.status_code == 400
    raw = await api.post(
        "/api/2.0/workspace/import",
        json={
            "path": "/Shared/data.csv",
            "format": "RAW",
            "content": base64.b64encode(b"a,b\n").decode(),
        },
    )
    assert raw.status_code == 200
    info = (
        await api.get("/api/2.0/workspace/get-status", params={"path": "/Shared/data.csv"})
    ).json()
    assert (info["object_type"], info["size"]) == ("FILE", 4)
    over = await api.post("/api/2.0/workspace/mkdirs", json={"path": "/Shared/data.csv/x"})
    assert over.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
    root = await api.post("/api/2.0/workspace/delete", json={"path": "/"})
    assert root.status_code == 400
    empty = await api.post("/api/2.0/workspace/mkdirs", json={"path": "/Shared/empty"})
    assert empty.status_code == 200
    assert (await api.get("/api/2.0/workspace/list", params={"path": "/Shared/empty"})).json() == {}


async def test_a_pipeline_update_walks_its_states_on_the_clock(
    emulator: EmulatorHarness, api: httpx.AsyncClient
) -> None:
    pipeline_id = (await api.post("/api/2.0/pipelines", json={"name": "p"})).json()["pipeline_id"]
    await api.post(
        f"/emulator/pipelines/{pipeline_id}/script",
        json={"waiting_s": 10, "initializing_s": 5, "setting_up_s": 2, "duration_s": 20},
    )
    update_id = (await api.post(f"/api/2.0/pipelines/{pipeline_id}/updates", json={})).json()[
        "update_id"
    ]

    async def state() -> str:
        body = (await api.get(f"/api/2.0/pipelines/{pipeline_id}/updates/{update_id}")).json()
        return str(body["update"]["state"])

    timeline = []
    for step_s in (0, 10, 5, 2, 19, 1):
        emulator.clock.advance(step_s)
        timeline.append(await state())
    assert timeline == [
        "WAITING_FOR_RESOURCES",
        "INITIALIZING",
        "SETTING_UP_TABLES",
        "RUNNING",
        "RUNNING",
        "COMPLETED",
    ]
    events = (
        await api.get(
            f"/api/2.0/pipelines/{pipeline_id}/events",
            params={
                "order_by": "timestamp asc",
                "filter": f"origin.update_id='{update_id}'",
                "max_results": 100,
            },
        )
    ).json()["events"]
    assert [e["details"].get("update_progress", {}).get("state") for e in events] == [
        None,
        "CREATED",
        "WAITING_FOR_RESOURCES",
        "INITIALIZING",
        "SETTING_UP_TABLES",
        "RUNNING",
        "COMPLETED",
    ]
    assert events[0]["message"] == f"Update {update_id[:6]} started by API call."
    newest_first = (await api.get(f"/api/2.0/pipelines/{pipeline_id}/events")).json()["events"]
    assert newest_first[0]["details"] == {"update_progress": {"state": "COMPLETED"}}


@pytest.mark.parametrize(
    ("path", "status", "error_code"),
    [
        ("/api/2.0/pipelines/nope", 404, "RESOURCE_DOES_NOT_EXIST"),
        ("/api/2.0/pipelines/nope/updates/u", 404, "RESOURCE_DOES_NOT_EXIST"),
        ("/api/2.0/pipelines?max_results=101", 400, "INVALID_PARAMETER_VALUE"),
        ("/api/2.0/pipelines?filter=state%3D'RUNNING'", 400, "INVALID_PARAMETER_VALUE"),
    ],
)
async def test_pipeline_errors(
    api: httpx.AsyncClient, path: str, status: int, error_code: str
) -> None:
    answer = await api.get(path)
    assert answer.status_code == status
    assert answer.json()["error_code"] == error_code


async def test_pipeline_list_filters_and_pages(api: httpx.AsyncClient) -> None:
    for name in ("sales-bronze", "sales-silver", "hr-gold"):
        await api.post("/api/2.0/pipelines", json={"name": name})
    sales = (await api.get("/api/2.0/pipelines", params={"filter": "name LIKE 'sales%'"})).json()
    assert sorted(s["name"] for s in sales["statuses"]) == ["sales-bronze", "sales-silver"]
    first = (await api.get("/api/2.0/pipelines", params={"max_results": 2})).json()
    second = (
        await api.get(
            "/api/2.0/pipelines", params={"page_token": first["next_page_token"], "max_results": 2}
        )
    ).json()
    assert len(first["statuses"]) == 2
    assert len(second["statuses"]) == 1
    assert "next_page_token" not in second
    bad_event_filter = await api.get(
        f"/api/2.0/pipelines/{first['statuses'][0]['pipeline_id']}/events",
        params={"filter": "level ~ 'x'"},
    )
    assert bad_event_filter.status_code == 400
