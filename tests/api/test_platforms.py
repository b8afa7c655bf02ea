"""Platforms: CRUD, secret references only, Test connectivity, Get Pipelines, import."""

from __future__ import annotations

import httpx
import pytest

from polysync.domain.records import NewPlatform
from tests.api.conftest import BACKFILL, FRAUD, SALES, TOKEN_VARIABLE, Api
from tests.conftest import TEST_TOKEN


def is_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert isinstance(problem["type"], str)
    assert isinstance(problem["title"], str)
    assert isinstance(problem["detail"], str)
    return problem


async def test_create_read_update_delete(api: Api) -> None:
    admin = api.auth("admin")
    created = await api.client.post(
        "/api/v1/platforms",
        headers=admin,
        json={
            "name": "prod",
            "workspace_url": "https://adb-42.7.azuredatabricks.net/",
            "auth": {
                "method": "entra_service_principal",
                "tenant_id": "tenant-1",
                "client_id": "client-1",
                "client_secret": "env:PROD_SP_SECRET",
            },
            "description": "production",
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"] == f"/api/v1/platforms/{body['id']}"
    assert body["workspace_url"] == "https://adb-42.7.azuredatabricks.net"
    assert body["auth"] == {
        "method": "entra_service_principal",
        "tenant_id": "tenant-1",
        "client_id": "client-1",
        "client_secret": "env:PROD_SP_SECRET",
    }
    assert body["auth_method"] == "entra_service_principal"
    read = await api.client.get(f"/api/v1/platforms/{body['id']}", headers=api.auth("viewer"))
    assert read.json() == body
    patched = await api.client.patch(
        f"/api/v1/platforms/{body['id']}", headers=admin, json={"name": "prod-eu"}
    )
    assert patched.status_code == 200
    assert patched.json()["name"] == "prod-eu"
    assert patched.json()["description"] == "production"
    deleted = await api.client.delete(f"/api/v1/platforms/{body['id']}", headers=admin)
    assert deleted.status_code == 204
    is_problem(await api.client.get(f"/api/v1/platforms/{body['id']}", headers=admin), 404)


async def test_a_secret_value_is_refused_and_never_echoed(api: Api) -> None:
    secret = "dapi0123456789abcdef0123456789abcdef"
    response = await api.client.post(
        "/api/v1/platforms",
        headers=api.auth("admin"),
        json={
            "name": "leaky",
            "workspace_url": "https://adb-1.1.azuredatabricks.net",
            "auth": {"method": "pat", "token": secret},
        },
    )
    problem = is_problem(response, 400)
    assert "secret reference" in str(problem["detail"])
    assert secret not in response.text
    patched = await api.client.patch(
        f"/api/v1/platforms/{api.platform_id}",
        headers=api.auth("admin"),
        json={"auth": {"method": "pat", "token": secret}},
    )
    is_problem(patched, 400)
    assert secret not in patched.text


async def test_no_answer_carries_the_resolved_secret(api: Api) -> None:
    viewer = api.auth("viewer")
    for path in ("/api/v1/platforms", f"/api/v1/platforms/{api.platform_id}"):
        response = await api.client.get(path, headers=viewer)
        assert response.status_code == 200
        assert TEST_TOKEN not in response.text
        assert f"env:{TOKEN_VARIABLE}" in response.text  # the reference is shown
    tested = await api.client.post(
        f"/api/v1/platforms/{api.platform_id}/test", headers=api.auth("operator")
    )
    assert tested.status_code == 200
    assert TEST_TOKEN not in tested.text


async def test_duplicate_name_conflicts_and_bad_input_is_422(api: Api) -> None:
    admin = api.auth("admin")
    body = {
        "name": "demo",
        "workspace_url": "https://adb-1.1.azuredatabricks.net",
        "auth": {"method": "pat", "token": "env:X"},
    }
    is_problem(await api.client.post("/api/v1/platforms", headers=admin, json=body), 409)
    invalid = await api.client.post(
        "/api/v1/platforms", headers=admin, json={"name": "", "auth": {}}
    )
    problem = is_problem(invalid, 422)
    fields = {e["field"] for e in problem["errors"]}  # type: ignore[attr-defined]
    assert {"body.name", "body.workspace_url"} <= fields
    bad_url = {**body, "name": "x", "workspace_url": "ftp://nowhere"}
    is_problem(await api.client.post("/api/v1/platforms", headers=admin, json=bad_url), 400)


async def test_delete_with_active_runs_conflicts(api: Api) -> None:
    job = await api.services.store.get_job(api.job_ids[BACKFILL])
    await api.services.execute(job, {})
    response = await api.client.delete(
        f"/api/v1/platforms/{api.platform_id}", headers=api.auth("admin")
    )
    assert "active run(s)" in str(is_problem(response, 409)["detail"])


async def test_connectivity_failure_is_a_502_with_the_reason(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG_TOKEN", "dapi-wrong-token-000000000000000")
    wrong = await api.services.add_platform(
        NewPlatform(
            name="wrong",
            workspace_url=api.harness.base_url,
            auth={"method": "pat", "token": "env:WRONG_TOKEN"},
        )
    )
    response = await api.client.post(
        f"/api/v1/platforms/{wrong.id}/test", headers=api.auth("operator")
    )
    problem = is_problem(response, 502)
    assert "dapi-wrong-token" not in response.text
    assert str(problem["type"]).endswith("databricks-auth")


async def test_get_pipelines_classifies_and_marks_imported_jobs(api: Api) -> None:
    response = await api.client.get(
        f"/api/v1/platforms/{api.platform_id}/pipelines", headers=api.auth("operator")
    )
    assert response.status_code == 200
    listed = {job["external_id"]: job for job in response.json()}
    assert listed[SALES]["kind"] == "Databricks Workflow"
    assert listed[SALES]["task_count"] == 4
    assert listed[SALES]["imported_job_id"] == api.job_ids[SALES]
    assert any(j["kind"] == "Databricks Job" for j in listed.values())
    assert any(j["imported_job_id"] is None for j in listed.values())


async def test_import_selected_all_and_bad_ids(api: Api) -> None:
    admin = api.auth("admin")
    path = f"/api/v1/platforms/{api.platform_id}/import"
    selected = await api.client.post(path, headers=admin, json={"external_ids": [FRAUD, "abc"]})
    assert selected.status_code == 200
    body = selected.json()
    assert body["imported"] == 1
    assert body["failed"] == 1
    by_id = {r["external_id"]: r for r in body["results"]}
    assert by_id[FRAUD]["created"] is False  # already imported: updated, settings kept
    assert by_id["abc"]["error"].startswith("INVALID_PARAMETER_VALUE: job_id")
    everything = await api.client.post(path, headers=admin, json={"all": True})
    assert everything.status_code == 200
    assert everything.json()["failed"] == 0
    assert everything.json()["imported"] > 3
    is_problem(await api.client.post(path, headers=admin, json={}), 400)
    is_problem(
        await api.client.post(path, headers=admin, json={"all": True, "external_ids": [SALES]}),
        400,
    )


async def test_a_taken_name_is_one_conflict_from_services(api: Api) -> None:
    """The 409 comes from the one application layer (ConflictError), not from the route."""
    response = await api.client.post(
        "/api/v1/platforms",
        headers=api.auth("admin"),
        json={
            "name": "demo",
            "workspace_url": api.harness.base_url,
            "auth": {"method": "pat", "token": "env:SOME_TOKEN"},
        },
    )
    problem = is_problem(response, 409)
    assert problem["type"].endswith("/conflict")  # type: ignore[union-attr]
    assert "already exists" in str(problem["detail"])
