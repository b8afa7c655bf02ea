"""/api/v1/contention-profiles (D14): admins edit, viewers read; one validation; Execute Now
through the API waits on a profile, and the runs list says which one."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import BACKFILL, SALES, Api
from tests.api.test_platforms import is_problem

URL = "/api/v1/contention-profiles"


def cap(**fields: object) -> dict[str, object]:
    return {
        "name": "cap",
        "type": "concurrency",
        "max_concurrent": 1,
        "platforms": ["demo"],
    } | fields


async def test_admins_create_edit_link_and_delete_viewers_only_read(api: Api) -> None:
    admin, viewer, operator = api.auth("admin"), api.auth("viewer"), api.auth("operator")
    is_problem(await api.client.post(URL, headers=operator, json=cap()), 403)
    created = await api.client.post(URL, headers=admin, json=cap(queue_timeout_s=600))
    assert created.status_code == 201, created.text
    profile = created.json()
    assert created.headers["Location"] == f"{URL}/{profile['id']}"
    assert profile | {"id": 0, "created_at": "", "updated_at": ""} == {
        "id": 0,
        "name": "cap",
        "type": "concurrency",
        "enabled": True,
        "scope": "per_platform",
        "description": "",
        "max_concurrent": 1,
        "limit": None,
        "window_s": None,
        "algorithm": "token_bucket",
        "queue_size_limit": None,
        "queue_timeout_s": 600.0,
        "exceed_action": "queue",
        "platform_ids": [api.platform_id],
        "task_ids": [],
        "created_at": "",
        "updated_at": "",
    }
    one = f"{URL}/{profile['id']}"
    assert (await api.client.get(URL, headers=viewer)).json() == [profile]
    assert (await api.client.get(one, headers=viewer)).json() == profile
    is_problem(await api.client.patch(one, headers=viewer, json={"enabled": False}), 403)
    edited = await api.client.patch(
        one, headers=admin, json={"max_concurrent": 3, "queue_timeout_s": None}
    )
    assert (edited.json()["max_concurrent"], edited.json()["queue_timeout_s"]) == (3, None)
    unlinked = await api.client.post(f"{one}/unlinks", headers=admin, json={"platforms": ["demo"]})
    assert unlinked.json()["platform_ids"] == []
    missing = is_problem(
        await api.client.post(f"{one}/links", headers=admin, json={"tasks": [12]}), 404
    )
    assert "No Task with id 12" in str(missing["detail"])
    task = await api.client.post(
        "/api/v1/tasks", headers=admin, json={"name": "nightly", "job_id": api.job_ids[SALES]}
    )
    assert task.status_code == 201, task.text
    linked = await api.client.post(
        f"{one}/links", headers=admin, json={"tasks": [task.json()["id"]]}
    )
    assert linked.json()["task_ids"] == [task.json()["id"]]
    assert (await api.client.delete(one, headers=admin)).status_code == 204
    is_problem(await api.client.get(one, headers=viewer), 404)


async def test_bad_fields_are_refused_with_the_field_named(api: Api) -> None:
    admin = api.auth("admin")
    missing = is_problem(
        await api.client.post(URL, headers=admin, json={"name": "x", "type": "concurrency"}), 400
    )
    assert "Max Concurrent is required" in str(missing["detail"])
    wrong = is_problem(
        await api.client.post(URL, headers=admin, json=cap(exceed_action="explode")), 400
    )
    assert "Exceed Action 'explode' is not one of queue, reject, defer" in str(wrong["detail"])
    html = is_problem(
        await api.client.post(URL, headers=admin, json=cap(name="<b>\u202eevil")), 400
    )
    assert "text-direction control" in str(html["detail"])
    await api.client.post(URL, headers=admin, json=cap())
    is_problem(await api.client.post(URL, headers=admin, json=cap()), 409)
    (profile,) = (await api.client.get(URL, headers=admin)).json()
    locked = await api.client.patch(f"{URL}/{profile['id']}", headers=admin, json={"type": "rate"})
    is_problem(locked, 422)
    is_problem(
        await api.client.post(URL, headers=admin, json=cap(name="y", platforms=["nope"])), 404
    )
    assert [p["name"] for p in (await api.client.get(URL, headers=admin)).json()] == ["cap"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.text(max_size=300), limit=st.one_of(st.integers(), st.text(max_size=20)))
async def test_hostile_values_never_make_a_500(api: Api, name: str, limit: object) -> None:
    response = await api.client.post(
        URL,
        headers=api.auth("admin"),
        json={"name": name, "type": "rate", "limit": limit, "window_s": 60},
    )
    assert response.status_code in (201, 400, 409, 422), response.text
    if response.status_code == 201:
        await api.client.delete(f"{URL}/{response.json()['id']}", headers=api.auth("admin"))


async def test_execute_now_waits_on_the_profile_and_the_runs_list_says_which(api: Api) -> None:
    admin = api.auth("admin")
    await api.client.post(URL, headers=admin, json=cap())
    job = api.job_ids[BACKFILL]
    runs: list[httpx.Response] = [
        await api.client.post(f"/api/v1/jobs/{job}/runs", headers=admin, json={}) for _ in range(2)
    ]
    await api.step()
    listed = (await api.client.get("/api/v1/runs", headers=admin)).json()
    by_id = {run["id"]: run for run in listed}
    waiting = by_id[runs[1].json()["id"]]
    assert waiting["status"] == "Queued"
    assert waiting["message"] == "Waiting for profile 'cap' (1 of 1 running)"
    assert by_id[runs[0].json()["id"]]["status"] in ("Starting", "Running")
    (profile,) = (await api.client.get(URL, headers=admin)).json()
    usage = await api.client.get(f"{URL}/{profile['id']}/usage", headers=api.auth("viewer"))
    assert usage.json() == [
        {
            "platform_id": api.platform_id,
            "platform": "demo",
            "running": 1,
            "started_in_window": None,
            "waiting": 1,
            "text": "demo: 1 of 1 running, 1 waiting",
        }
    ]
