"""Every route against every caller: no key, a bad key, viewer, operator, admin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from polysync.api import create_api_key, list_api_keys, revoke_api_key, verify_api_key
from polysync.api.keys import hash_key
from tests.api.conftest import BACKFILL, ROLES, SALES, Api, demo_platform

RANK = {"viewer": 1, "operator": 2, "admin": 3}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {platform}, {spare}, {job}, {active_run}, {done_run}, {task}, ... filled in
    role: str | None  # the least role allowed; None: no authentication
    ok: int
    body: dict[str, Any] | None = None


ROUTES = [
    Route("GET", "/health", None, 200),
    Route("GET", "/metrics", "viewer", 200),
    Route("GET", "/api/v1/platforms", "viewer", 200),
    Route(
        "POST",
        "/api/v1/platforms",
        "admin",
        201,
        {
            "name": "another",
            "workspace_url": "https://adb-1.1.azuredatabricks.net",
            "auth": {"method": "pat", "token": "env:ANOTHER_TOKEN"},
        },
    ),
    Route("GET", "/api/v1/platforms/{platform}", "viewer", 200),
    Route("PATCH", "/api/v1/platforms/{platform}", "admin", 200, {"description": "edited"}),
    Route("DELETE", "/api/v1/platforms/{spare}", "admin", 204),
    Route("POST", "/api/v1/platforms/{platform}/test", "operator", 200),
    Route("GET", "/api/v1/platforms/{platform}/pipelines", "operator", 200),
    Route("POST", "/api/v1/platforms/{platform}/import", "admin", 200, {"external_ids": [SALES]}),
    Route("GET", "/api/v1/jobs", "viewer", 200),
    Route("GET", "/api/v1/jobs/{job}", "viewer", 200),
    Route("PATCH", "/api/v1/jobs/{job}", "operator", 200, {"description": "edited"}),
    Route("POST", "/api/v1/jobs/{job}/sync-parameters", "operator", 200),
    Route("POST", "/api/v1/jobs/{job}/runs", "operator", 201, {"parameters": {"env": "dev"}}),
    Route("GET", "/api/v1/runs", "viewer", 200),
    Route("GET", "/api/v1/runs/{active_run}", "viewer", 200),
    Route("GET", "/api/v1/runs/{done_run}/events", "viewer", 200),
    Route("POST", "/api/v1/runs/{active_run}/cancel", "operator", 202),
    # The role is checked first; `done_run` never reached Databricks, so an operator gets 409 (D13).
    Route("POST", "/api/v1/runs/{done_run}/repair", "operator", 409),
    # Tasks (D12): viewers read, operators pause/resume (and run once, cancel, repair: in
    # tests/api/test_tasks.py, as a second success of those is a 4xx), admins edit.
    Route("GET", "/api/v1/tasks", "viewer", 200),
    Route("POST", "/api/v1/tasks", "admin", 201, {"name": "another", "job": SALES}),
    Route("GET", "/api/v1/tasks/{task}", "viewer", 200),
    Route("PATCH", "/api/v1/tasks/{task}", "admin", 200, {"description": "edited"}),
    Route("DELETE", "/api/v1/tasks/{spare_task}", "admin", 204),
    Route("POST", "/api/v1/tasks/{task}/pause", "operator", 200),
    Route("POST", "/api/v1/tasks/{task}/resume", "operator", 200),
    Route("GET", "/api/v1/tasks/{task}/preview", "viewer", 200),
    Route("POST", "/api/v1/tasks/preview", "viewer", 200, {"schedules": [{"cron": "@daily"}]}),
    Route("GET", "/api/v1/tasks/{task}/runs", "viewer", 200),
    Route("GET", "/api/v1/taskruns", "viewer", 200),
    Route("GET", "/api/v1/taskruns/{task_run}", "viewer", 200),
]
CALLERS = ("none", "bad", *ROLES)


def expected(route: Route, caller: str) -> int:
    if route.role is None:
        return route.ok
    if caller in ("none", "bad"):
        return 401
    return route.ok if RANK[caller] >= RANK[route.role] else 403


async def seed(api: Api) -> dict[str, int]:
    services = api.services
    spare = await services.add_platform(demo_platform(api.harness, "spare"))
    active = await services.execute(await services.store.get_job(api.job_ids[BACKFILL]), {})
    # Submitted: a run never sent would end Cancelled at the first cancel (H5), and the later
    # callers would find nothing left to cancel.
    await services.dispatch(active.id)
    done = await services.engine.submit(await services.store.get_job(api.job_ids[SALES]), {})
    await services.store.record_failure(done.id, "refused (test)", services.now())
    task = await services.tasks.create({"name": "nightly", "job_id": api.job_ids[SALES]})
    spare_task = await services.tasks.create({"name": "spare", "job_id": api.job_ids[SALES]})
    task_run = await services.tasks.run_once(task.name)
    assert task.id is not None
    assert spare_task.id is not None
    assert task_run.id is not None
    return {
        "task": task.id,
        "spare_task": spare_task.id,
        "task_run": task_run.id,
        "platform": api.platform_id,
        "spare": spare.id,
        "job": api.job_ids[SALES],
        "active_run": active.id,
        "done_run": done.id,
    }


def headers_for(api: Api, caller: str) -> dict[str, str]:
    if caller == "none":
        return {}
    if caller == "bad":
        return {"Authorization": "Bearer psk_notarealkey0000000000000000000000000000000"}
    return api.auth(caller)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_route_answers_each_caller_by_role(api: Api, route: Route) -> None:
    """One database per route; callers in rising order of power, so the one success that
    changes state (a delete, a cancel) comes after every refusal has been checked."""
    ids = await seed(api)
    answers = {}
    for caller in CALLERS:
        response = await api.client.request(
            route.method,
            route.path.format(**ids),
            json=route.body,
            headers=headers_for(api, caller),
        )
        answers[caller] = response.status_code
        check_problem(response)
    assert answers == {caller: expected(route, caller) for caller in CALLERS}


def check_problem(response: httpx.Response) -> None:
    if response.status_code in (401, 403):
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == response.status_code
        assert set(problem) >= {"type", "title", "status", "detail"}
    if response.status_code == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_x_api_key_header_authenticates_too(api: Api) -> None:
    response = await api.client.get("/api/v1/platforms", headers={"X-API-Key": api.keys["viewer"]})
    assert response.status_code == 200
    assert [p["name"] for p in response.json()] == ["demo"]


async def test_forbidden_names_the_role_needed_and_the_keys_role(api: Api) -> None:
    response = await api.client.post(
        f"/api/v1/jobs/{api.job_ids[SALES]}/runs", json={}, headers=api.auth("viewer")
    )
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert "operator role" in detail
    assert "viewer role" in detail
    assert api.keys["viewer"] not in detail


async def test_keys_are_stored_hashed_and_a_revoked_key_stops_working(api: Api) -> None:
    record, plaintext = await create_api_key(api.store, "ci", "operator")
    assert plaintext.startswith("psk_")
    assert len(plaintext) > 40
    assert record.prefix == plaintext[:12]
    assert record.secret_hash == hash_key(plaintext)
    assert plaintext not in repr(await list_api_keys(api.store))
    ok = await api.client.get("/api/v1/runs", headers={"X-API-Key": plaintext})
    assert ok.status_code == 200
    revoked = await revoke_api_key(api.store, record.prefix)
    assert revoked.revoked_at is not None
    refused = await api.client.get("/api/v1/runs", headers={"X-API-Key": plaintext})
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]


async def test_a_key_with_a_known_prefix_but_other_secret_is_refused(api: Api) -> None:
    real = api.keys["admin"]
    forged = real[:12] + "x" * (len(real) - 12)
    assert await verify_api_key(api.store, forged) is None
    assert await verify_api_key(api.store, real) is not None
    assert await verify_api_key(api.store, "psk_") is None
    assert await verify_api_key(api.store, "") is None


async def test_unknown_role_is_refused(api: Api) -> None:
    with pytest.raises(Exception, match="Unknown role 'root'"):
        await create_api_key(api.store, "x", "root")
