"""The emulator's Jobs API over HTTP (ASGI transport): shapes, version differences, paging, errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import EmulatorHarness


def many_tasks(count: int) -> list[dict[str, Any]]:
    return [
        {"task_key": f"task_{i:03d}", "notebook_task": {"notebook_path": f"/n/{i}"}}
        for i in range(count)
    ]


def seed(emulator: EmulatorHarness, count: int, *, big_every: int = 0) -> list[int]:
    ids = []
    for index in range(count):
        n_tasks = 120 if big_every and index % big_every == 0 else (1 if index % 3 else 3)
        job = emulator.state.create_job({"name": f"job-{index:03d}", "tasks": many_tasks(n_tasks)})
        emulator.clock.advance(1)  # distinct created_time, so the order is defined
        ids.append(job.job_id)
    return ids


async def page_all(api: httpx.AsyncClient, version: str, **params: Any) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 7, **params}
    for _ in range(100):
        body = (await api.get(f"/api/{version}/jobs/list", params=query)).raise_for_status().json()
        jobs += body.get("jobs", [])
        if version == "2.0":
            if not body["has_more"]:
                return jobs
            query["offset"] = query.get("offset", 0) + query["limit"]
        else:
            token = body.get("next_page_token")
            if not token:
                return jobs
            query["page_token"] = token
    raise AssertionError("paging did not end")


async def test_list_pages_to_the_end_newest_first_in_every_version(
    emulator: EmulatorHarness, api: httpx.AsyncClient
) -> None:
    ids = seed(emulator, 30)
    for version in ("2.0", "2.1", "2.2"):
        jobs = await page_all(api, version)
        assert [j["job_id"] for j in jobs] == list(reversed(ids)), version


async def test_list_root_has_more_and_tokens_differ_by_version(
    emulator: EmulatorHarness, api: httpx.AsyncClient
) -> None:
    seed(emulator, 10)
    v20 = (await api.get("/api/2.0/jobs/list", params={"limit": 3})).json()
    v21 = (await api.get("/api/2.1/jobs/list", params={"limit": 3})).json()
    v22 = (await api.get("/api/2.2/jobs/list", params={"limit": 3})).json()
    assert v20["has_more"] is True
    assert "next_page_token" not in v20
    assert v21["has_more"] is True
    assert "next_page_token" in v21
    assert "has_more" not in v22
    assert "next_page_token" in v22
    assert all("tasks" not in j["settings"] for j in v21["jobs"] + v22["jobs"] + v20["jobs"])
    assert {j["settings"]["format"] for j in v20["jobs"]} <= {"SINGLE_TASK", "MULTI_TASK"}


async def test_list_expand_tasks_over_100_per_version(
    emulator: EmulatorHarness, api: httpx.AsyncClient
) -> None:
    seed(emulator, 1, big_every=1)
    v21 = (await api.get("/api/2.1/jobs/list", params={"expand_tasks": "true"})).json()["jobs"][0]
    v22 = (await api.get("/api/2.2/jobs/list", params={"expand_tasks": "true"})).json()["jobs"][0]
    assert "tasks" not in v21["settings"]  # the reported 2.1 behaviour for jobs over 100 tasks
    assert len(v22["settings"]["tasks"]) == 100
    assert v22["has_more"] is True


async def test_list_name_filter_is_exact_and_case_insensitive(
    emulator: EmulatorHarness, api: httpx.AsyncClient
) -> None:
    seed(emulator, 5)
    body = (await api.get("/api/2.1/jobs/list", params={"name": "JOB-003"})).json()
    assert [j["settings"]["name"] for j in body["jobs"]] == ["job-003"]
    empty = (await api.get("/api/2.1/jobs/list", params={"name": "job-00"})).json()
    assert "jobs" not in empty
    assert empty["has_more"] is False


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 101}, "Invalid limit 101 - it has to be no more than 100."),
        (
            {"offset": 1001},
            "The supplied offset 1001 has exceeded the value of 1000 allowed for this parameter."
            "Please use the page_token parameter to paginate",
        ),
        ({"page_token": "garbage!"}, "Invalid page token"),
    ],
)
async def test_list_refuses_bad_paging(
    api: httpx.AsyncClient, params: dict[str, Any], message: str
) -> None:
    response = await api.get("/api/2.1/jobs/list", params=params)
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert message in response.json()["message"]


async def test_get_job_pages_tasks_in_22_only(
    emulator: EmulatorHarness, api: httpx.AsyncClient
) -> None:
    job = emulator.state.create_job(
        {
            "name": "wide",
            "parameters": [{"name": "p", "default": "1"}],
            "tasks": many_tasks(250),
        }
    )
    full = (await api.get("/api/2.1/jobs/get", params={"job_id": job.job_id})).json()
    assert len(full["settings"]["tasks"]) == 250
    assert "next_page_token" not in full
    keys: list[str] = []
    params: dict[str, Any] = {"job_id": job.job_id}
    pages = 0
    while True:
        page = (await api.get("/api/2.2/jobs/get", params=params)).json()
        pages += 1
        keys += [t["task_key"] for t in page["settings"]["tasks"]]
        if pages > 1:
            assert page["settings"]["parameters"] == []
        if "next_page_token" not in page:
            break
        params["page_token"] = page["next_page_token"]
    assert pages == 3
    assert keys == [t["task_key"] for t in full["settings"]["tasks"]]


async def test_missing_job_and_run_answer_the_legacy_400(api: httpx.AsyncClient) -> None:
    for response, message in [
        (
            await api.get("/api/2.1/jobs/get", params={"job_id": 998654886170278}),
            "Job 998654886170278 does not exist.",
        ),
        (await api.post("/api/2.1/jobs/run-now", json={"job_id": 5}), "Job 5 does not exist."),
        (await api.get("/api/2.1/jobs/runs/get", params={"run_id": 77}), "Run 77 does not exist."),
        (
            await api.post("/api/2.1/jobs/runs/cancel", json={"run_id": 77}),
            "Run 77 does not exist.",
        ),
    ]:
        assert response.status_code == 400
        assert response.json() == {"error_code": "INVALID_PARAMETER_VALUE", "message": message}


async def test_run_now_then_watch_to_success(
    emulator: EmulatorHarness, api: httpx.AsyncClient
) -> None:
    job = emulator.state.create_job(
        {
            "name": "etl",
            "parameters": [{"name": "env", "default": "prod"}],
            "tasks": [
                {"task_key": "a", "emulator": {"duration_s": 5}},
                {"task_key": "b", "depends_on": [{"task_key": "a"}], "emulator": {"duration_s": 5}},
            ],
        }
    )
    started = await api.post(
        "/api/2.1/jobs/run-now", json={"job_id": job.job_id, "job_parameters": {"env": "dev"}}
    )
    assert started.status_code == 200
    assert set(started.json()) == {"run_id", "number_in_job"}
    run_id = started.json()["run_id"]
    seen = []
    for _ in range(20):
        run = (await api.get("/api/2.1/jobs/runs/get", params={"run_id": run_id})).json()
        seen.append(run["state"]["life_cycle_state"])
        if run["state"]["life_cycle_state"] == "TERMINATED":
            break
        emulator.clock.advance(2)
    assert seen[0] == "PENDING"
    assert "RUNNING" in seen
    assert "TERMINATING" in seen
    assert run["state"]["result_state"] == "SUCCESS"
    assert run["job_parameters"] == [{"name": "env", "default": "prod", "value": "dev"}]
    assert run["run_page_url"] == (
        f"{emulator.base_url}/?o=1234567890123456#job/{job.job_id}/run/{run_id}"
    )
    assert [t["task_key"] for t in run["tasks"]] == ["a", "b"]


async def test_runs_get_pages_tasks_in_22(
    emulator: EmulatorHarness, api: httpx.AsyncClient
) -> None:
    job = emulator.state.create_job({"name": "wide", "tasks": many_tasks(130)})
    run_id = (await api.post("/api/2.2/jobs/run-now", json={"job_id": job.job_id})).json()["run_id"]
    first = (await api.get("/api/2.2/jobs/runs/get", params={"run_id": run_id})).json()
    assert len(first["tasks"]) == 100
    assert first["has_more"] is True
    second = (
        await api.get(
            "/api/2.2/jobs/runs/get",
            params={"run_id": run_id, "page_token": first["next_page_token"]},
        )
    ).json()
    assert len(second["tasks"]) == 30
    assert "next_page_token" not in second
    whole = (await api.get("/api/2.1/jobs/runs/get", params={"run_id": run_id})).json()
    assert len(whole["tasks"]) == 130


async def test_get_output_per_task_and_refused_on_the_parent(
    emulator: EmulatorHarness, api: httpx.AsyncClient
) -> None:
    job = emulator.state.create_job(
        {
            "name": "f",
            "tasks": [
                {
                    "task_key": "a",
                    "emulator": {"outcome": "failure", "duration_s": 1, "error": "KeyError: 'x'"},
                },
                {"task_key": "b"},
            ],
        }
    )
    run_id = (await api.post("/api/2.1/jobs/run-now", json={"job_id": job.job_id})).json()["run_id"]
    emulator.clock.advance(60)
    parent = await api.get("/api/2.1/jobs/runs/get-output", params={"run_id": run_id})
    assert parent.status_code == 400
    assert parent.json()["message"] == (
        "Retrieving the output of runs with multiple tasks is not supported. "
        "Please retrieve the output of each individual task run instead."
    )
    run = (await api.get("/api/2.1/jobs/runs/get", params={"run_id": run_id})).json()
    task_run = next(t for t in run["tasks"] if t["task_key"] == "a")
    output = (
        await api.get("/api/2.1/jobs/runs/get-output", params={"run_id": task_run["run_id"]})
    ).json()
    assert output["error"] == "KeyError: 'x'"
    assert output["metadata"]["state"]["result_state"] == "FAILED"


async def test_runs_list_filters_and_pages(
    emulator: EmulatorHarness, api: httpx.AsyncClient
) -> None:
    job = emulator.state.create_job(
        {
            "name": "r",
            "max_concurrent_runs": 50,
            "tasks": [{"task_key": "a", "emulator": {"duration_s": 100}}],
        }
    )
    other = emulator.state.create_job(
        {"name": "o", "tasks": [{"task_key": "a", "emulator": {"duration_s": 1}}]}
    )
    ids = []
    for _ in range(30):
        ids.append(
            (await api.post("/api/2.1/jobs/run-now", json={"job_id": job.job_id})).json()["run_id"]
        )
        emulator.advance(1)  # both clocks: the real one refills the run-now rate limit
    await api.post("/api/2.1/jobs/run-now", json={"job_id": other.job_id})
    emulator.clock.advance(20)  # the other job's run is done; the 30 long runs are not
    collected: list[int] = []
    params: dict[str, Any] = {"job_id": job.job_id, "active_only": "true", "limit": 25}
    while True:
        body = (await api.get("/api/2.2/jobs/runs/list", params=params)).json()
        collected += [r["run_id"] for r in body.get("runs", [])]
        assert "has_more" not in body
        if not body.get("next_page_token"):
            break
        params["page_token"] = body["next_page_token"]
    assert collected == list(reversed(ids))
    done = (await api.get("/api/2.1/jobs/runs/list", params={"completed_only": "true"})).json()
    assert [r["job_id"] for r in done["runs"]] == [other.job_id]
    assert "tasks" not in done["runs"][0]
    both = await api.get(
        "/api/2.1/jobs/runs/list", params={"active_only": "true", "completed_only": "true"}
    )
    assert both.status_code == 400
    too_many = await api.get("/api/2.1/jobs/runs/list", params={"limit": 26})
    assert too_many.json()["message"] == "Invalid limit 26 - it has to be no more than 25."
    # expand_tasks: each entry carries its task runs with their states (what a sweep reads),
    # still 25 a page at most (reference §6).
    params = {"active_only": "true", "expand_tasks": "true", "limit": 25}
    expanded = (await api.get("/api/2.1/jobs/runs/list", params=params)).json()
    assert len(expanded["runs"]) == 25
    assert expanded["has_more"] is True
    tasks = [run["tasks"] for run in expanded["runs"]]
    assert all(len(run_tasks) == 1 for run_tasks in tasks)
    assert {run_tasks[0]["state"]["life_cycle_state"] for run_tasks in tasks} == {"RUNNING"}
    # start_time_from is inclusive (epoch ms).
    newest = expanded["runs"][0]
    since = {"start_time_from": newest["start_time"], "active_only": "true"}
    recent = (await api.get("/api/2.1/jobs/runs/list", params=since)).json()["runs"]
    assert [r["run_id"] for r in recent] == [newest["run_id"]]


async def test_cancel_all_cancels_the_jobs_active_runs(
    emulator: EmulatorHarness, api: httpx.AsyncClient
) -> None:
    job = emulator.state.create_job(
        {
            "name": "c",
            "max_concurrent_runs": 5,
            "tasks": [{"task_key": "a", "emulator": {"duration_s": 100}}],
        }
    )
    for _ in range(3):
        await api.post("/api/2.1/jobs/run-now", json={"job_id": job.job_id})
    assert (
        await api.post("/api/2.1/jobs/runs/cancel-all", json={"job_id": job.job_id})
    ).json() == {}
    emulator.clock.advance(5)
    runs = (await api.get("/api/2.1/jobs/runs/list", params={"job_id": job.job_id})).json()["runs"]
    assert [r["state"]["result_state"] for r in runs] == ["CANCELED"] * 3


async def test_create_get_delete_and_22_queue_default(api: httpx.AsyncClient) -> None:
    settings = {
        "name": "made-by-sdk",
        "tasks": [{"task_key": "a", "notebook_task": {"notebook_path": "/a"}}],
    }
    job_22 = (await api.post("/api/2.2/jobs/create", json=settings)).json()["job_id"]
    job_21 = (await api.post("/api/2.1/jobs/create", json=settings)).json()["job_id"]
    got_22 = (await api.get("/api/2.2/jobs/get", params={"job_id": job_22})).json()
    got_21 = (await api.get("/api/2.1/jobs/get", params={"job_id": job_21})).json()
    assert got_22["settings"]["queue"] == {"enabled": True}
    assert "queue" not in got_21["settings"]
    assert got_21["settings"]["tasks"] == settings["tasks"]
    assert (await api.post("/api/2.1/jobs/delete", json={"job_id": job_21})).json() == {}
    gone = await api.get("/api/2.1/jobs/get", params={"job_id": job_21})
    assert gone.json()["message"] == f"Job {job_21} does not exist."


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ("{not json", "MALFORMED_REQUEST", "Could not parse request object"),
        (
            '{"job_id": 1, "job_parameters": "x"}',
            "MALFORMED_REQUEST",
            "Expected object for field 'job_parameters', found STRING",
        ),
        ('{"job_id": "abc"}', "MALFORMED_REQUEST", "Expected integer for field 'job_id'"),
        ("{}", "INVALID_PARAMETER_VALUE", "Missing required field: job_id"),
    ],
)
async def test_run_now_refuses_malformed_bodies(
    api: httpx.AsyncClient, body: str, code: str, fragment: str
) -> None:
    response = await api.post(
        "/api/2.1/jobs/run-now", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == code
    assert fragment in response.json()["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/2.1/jobs/nope",
        "/api/3.0/jobs/list",
        "/api/2.1/clusters/list",
        "/api/2.1/jobs/runs/get/extra",
    ],
)
async def test_unknown_paths_are_404(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path)
    assert response.status_code == 404
    assert response.json()["message"] == f"Bad Target: {path}"


async def test_wrong_method_is_404(api: httpx.AsyncClient) -> None:
    assert (await api.get("/api/2.1/jobs/run-now")).status_code == 404


async def test_control_plane_scripts_a_task_and_reports_runs(
    emulator: EmulatorHarness, api: httpx.AsyncClient
) -> None:
    seeded = await api.post(
        "/emulator/jobs",
        json={
            "name": "scripted",
            "tasks": [{"task_key": "a"}, {"task_key": "b", "depends_on": ["a"]}],
        },
    )
    job_id = seeded.json()["job_ids"][0]
    scripted = await api.post(
        f"/emulator/jobs/{job_id}/tasks/a/script", json={"outcome": "failure", "duration_s": 3}
    )
    assert scripted.status_code == 200
    run_id = (await api.post("/api/2.1/jobs/run-now", json={"job_id": job_id})).json()["run_id"]
    advanced = await api.post("/emulator/clock/advance", json={"seconds": 30})
    assert advanced.json()["now_ms"] == emulator.state.now_ms
    summary = (await api.get("/emulator/runs", params={"job_id": job_id})).json()
    assert summary["runs"] == [
        {
            "run_id": run_id,
            "job_id": job_id,
            "run_type": "JOB_RUN",
            "repairs": [],
            "life_cycle_state": "INTERNAL_ERROR",
            "result_state": "FAILED",
            "idempotency_token": None,
            "job_parameters": {},
        }
    ]
    assert (await api.post("/emulator/reset")).json() == {"jobs": 0}
    assert (await api.get("/emulator/runs")).json()["runs"] == []
    bad = await api.post(f"/emulator/jobs/{job_id}/tasks/a/script", json={"outcome": "explode"})
    assert bad.status_code == 400


async def test_control_plane_forgets_a_run_whatever_its_state(
    emulator: EmulatorHarness, api: httpx.AsyncClient
) -> None:
    job = emulator.state.create_job({"name": "long", "tasks": [{"task_key": "a"}]})
    run_id = (await api.post("/api/2.1/jobs/run-now", json={"job_id": job.job_id})).json()["run_id"]
    refused = await api.post("/api/2.1/jobs/runs/delete", json={"run_id": run_id})
    assert refused.status_code == 400  # runs/delete refuses an active run, as Databricks does
    assert (await api.delete(f"/emulator/runs/{run_id}")).status_code == 200
    gone = await api.get("/api/2.1/jobs/runs/get", params={"run_id": run_id})
    assert gone.status_code == 400
    assert gone.json()["message"] == f"Run {run_id} does not exist."
    emulator.clock.advance(120)  # its lifecycle ends unseen
    assert (await api.get("/emulator/runs")).json() == {"runs": [], "active": 0}
    assert (await api.delete(f"/emulator/runs/{run_id}")).status_code == 400


async def test_demo_workspace_loads_with_its_jobs(demo_emulator: EmulatorHarness) -> None:
    async with demo_emulator.client() as api:
        jobs = (
            await api.get("/api/2.1/jobs/list", params={"limit": 100, "expand_tasks": "true"})
        ).json()["jobs"]
    names = {j["settings"]["name"]: len(j["settings"]["tasks"]) for j in jobs}
    assert names["nightly-sales-etl"] == 4
    assert names["vacuum-delta-tables"] == 1
    assert sum(1 for n in names.values() if n > 1) >= 5
    assert all("emulator" not in t for j in jobs for t in j["settings"]["tasks"])
