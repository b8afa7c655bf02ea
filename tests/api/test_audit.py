"""Audit (issue 9): runs record who executed and who cancelled them; platform and job changes
record who made them; only admins read the trail."""

from __future__ import annotations

from typing import Any

from polysync.domain.access import Actor
from polysync.services import Services
from tests.api.conftest import BACKFILL, SALES, TOKEN_VARIABLE, Api


async def key_actor(api: Api, role: str) -> str:
    record = await api.store.find_api_key(api.keys[role][:12])
    assert record is not None
    return f"api:{record.name} ({record.prefix})"


async def trail(api: Api, **query: Any) -> list[dict[str, Any]]:
    answer = await api.client.get("/api/v1/audit-events", params=query, headers=api.auth("admin"))
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()
    return events


async def test_a_run_records_who_executed_it_and_who_cancelled_it(api: Api) -> None:
    executed = await api.client.post(
        f"/api/v1/jobs/{api.job_ids[BACKFILL]}/runs", headers=api.auth("operator"), json={}
    )
    assert executed.status_code == 201, executed.text
    run = executed.json()
    operator = await key_actor(api, "operator")
    assert run["executed_by"] == operator
    assert run["cancelled_by"] is None
    cancelled = await api.client.post(f"/api/v1/runs/{run['id']}/cancel", headers=api.auth("admin"))
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["run"]["cancelled_by"] == await key_actor(api, "admin")
    stored = await api.store.get_run(run["id"])
    assert (stored.executed_by, stored.cancelled_by) == (operator, await key_actor(api, "admin"))


async def test_platform_changes_record_who_made_them(api: Api) -> None:
    admin = await key_actor(api, "admin")
    created = await api.client.post(
        "/api/v1/platforms",
        headers=api.auth("admin"),
        json={
            "name": "second",
            "workspace_url": api.harness.base_url,
            "auth": {"method": "pat", "token": f"env:{TOKEN_VARIABLE}"},
        },
    )
    assert created.status_code == 201, created.text
    platform_id = created.json()["id"]
    edited = await api.client.patch(
        f"/api/v1/platforms/{platform_id}",
        headers=api.auth("admin"),
        json={"description": "the second one", "cluster_id": "0101-abc"},
    )
    assert edited.status_code == 200, edited.text
    deleted = await api.client.delete(f"/api/v1/platforms/{platform_id}", headers=api.auth("admin"))
    assert deleted.status_code == 204
    events = await trail(api, subject_type="platform", subject_id=platform_id)
    assert [(e["action"], e["actor"]) for e in events] == [
        ("platform.delete", admin),
        ("platform.update", admin),
        ("platform.create", admin),
    ]
    assert events[1]["detail"] == "changed cluster_id, description"
    assert events[0]["subject"] == "platform 'second'"  # kept after the platform is gone


async def test_job_changes_record_who_made_them(api: Api) -> None:
    job_id = api.job_ids[SALES]
    operator = await key_actor(api, "operator")
    edited = await api.client.patch(
        f"/api/v1/jobs/{job_id}",
        headers=api.auth("operator"),
        json={"description": "nightly", "parameters": [{"name": "env", "stored_value": "prod"}]},
    )
    assert edited.status_code == 200, edited.text
    synced = await api.client.post(
        f"/api/v1/jobs/{job_id}/sync-parameters", headers=api.auth("operator")
    )
    assert synced.status_code == 200, synced.text
    imported = await api.client.post(
        f"/api/v1/platforms/{api.platform_id}/import",
        headers=api.auth("admin"),
        json={"external_ids": [SALES]},
    )
    assert imported.status_code == 200, imported.text
    events = await trail(api, subject_type="job", subject_id=job_id)
    assert [(e["action"], e["actor"]) for e in events[:3]] == [
        ("job.import", await key_actor(api, "admin")),
        ("job.sync", operator),
        ("job.update", operator),
    ]
    assert events[2]["detail"] == "changed description, parameters 'env'"
    assert "prod" not in events[2]["detail"]  # names, never values


async def test_only_admins_read_the_trail(api: Api) -> None:
    for role in ("viewer", "operator"):
        answer = await api.client.get("/api/v1/audit-events", headers=api.auth(role))
        assert answer.status_code == 403


async def test_services_record_the_actor_they_are_given(api: Api) -> None:
    services: Services = api.services
    job = await services.store.get_job(api.job_ids[SALES])
    run = await services.execute(job, {}, actor=Actor("cli", "alice"))
    assert (await services.store.get_run(run.id)).executed_by == "cli:alice"
