"""The Task and TaskRun routes over Services on a real SQLite file (ASGI transport, manual
clock at 2025-06-15 14:13:20 UTC): roles (D12: viewers read, operators run/pause/cancel/repair,
admins create/edit/delete), the JSON shapes, 422 naming the field, 409 for transitions."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.api.conftest import FRAUD, SALES, Api

TASKS = "/api/v1/tasks"
TASKRUNS = "/api/v1/taskruns"


def _task(api: Api, name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "job_id": api.job_ids[SALES], **fields}


async def _create(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    answer = await api.client.post(TASKS, json=body, headers=api.auth("admin"))
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def test_an_admin_creates_a_task_with_a_schedule_and_a_dependency(api: Api) -> None:
    ingest = await _create(api, _task(api, "ingest"))
    body = _task(
        api,
        "report",
        parameters={"env": "dev", "run_date": "{{upstream.ingest.parameters.run_date}}"},
        schedules=[{"cron": "0 2 * * *", "timezone": "Europe/London"}],
        dependencies=[{"upstream": "ingest", "condition": "on_completion"}],
        priority=70,
        timeout_s=3600,
        retry={"enabled": True, "max_attempts": 4, "backoff": "Linear", "initial_delay_s": 30},
    )
    answer = await api.client.post(TASKS, json=body, headers=api.auth("admin"))
    assert answer.status_code == 201, answer.text
    report = answer.json()
    assert answer.headers["location"] == f"/api/v1/tasks/{report['id']}"
    assert report["parameters"] == body["parameters"]
    assert report["schedules"] == [
        {
            "cron": "0 2 * * *",
            "timezone": "Europe/London",
            "starts_at": None,
            "ends_at": None,
            "paused": False,
            "misfire_policy": "run-latest",
            "misfire_cap": 10,
        }
    ]
    assert report["dependencies"] == [{"upstream": "ingest", "condition": "on_completion"}]
    assert report["retry"]["backoff"] == "Linear"
    assert report["retry"]["max_attempts"] == 4
    assert (report["priority"], report["timeout_s"], report["concurrency_cap"]) == (70, 3600, 1)
    assert report["job"]["id"] == api.job_ids[SALES]
    assert report["job"]["name"] == "nightly-sales-etl"
    # 02:00 in London on 16 June 2025 is 01:00 UTC (BST); the clock is at 15 June 14:13 UTC.
    assert report["next_fire"] == "2025-06-16T01:00:00Z"
    assert report["last_run"] is None
    assert ingest["next_fire"] is None  # no schedule

    listed = (await api.client.get(TASKS, headers=api.auth("viewer"))).json()
    assert [t["name"] for t in listed] == ["ingest", "report"]
    read = await api.client.get(f"{TASKS}/{report['id']}", headers=api.auth("viewer"))
    assert read.json() == report

    preview = await api.client.get(
        f"{TASKS}/{report['id']}/preview", params={"count": 3}, headers=api.auth("viewer")
    )
    assert preview.json() == {
        "fire_times": [
            {"at": "2025-06-16T01:00:00Z", "schedule": 0},
            {"at": "2025-06-17T01:00:00Z", "schedule": 0},
            {"at": "2025-06-18T01:00:00Z", "schedule": 0},
        ]
    }


async def test_preview_of_unsaved_schedules_crosses_a_dst_change(api: Api) -> None:
    body = {
        "schedules": [
            {
                "cron": "30 1 * * *",
                "timezone": "Europe/London",
                "starts_at": "2026-03-27T12:00:00Z",
            },
            {"cron": "0 0 1 4 *", "timezone": "UTC"},
        ]
    }
    answer = await api.client.post(
        f"{TASKS}/preview", params={"count": 5}, json=body, headers=api.auth("viewer")
    )
    assert answer.status_code == 200, answer.text
    # 01:30 does not exist on 29 March 2026 in London: it fires when the gap ends (02:00 BST).
    # The second schedule's 1 April 2025 has passed: its next is 1 April 2026 00:00 UTC.
    assert answer.json()["fire_times"] == [
        {"at": "2026-03-28T01:30:00Z", "schedule": 0},
        {"at": "2026-03-29T01:00:00Z", "schedule": 0},
        {"at": "2026-03-30T00:30:00Z", "schedule": 0},
        {"at": "2026-03-31T00:30:00Z", "schedule": 0},
        {"at": "2026-04-01T00:00:00Z", "schedule": 1},
    ]
    refused = await api.client.post(
        f"{TASKS}/preview",
        json={"schedules": [{"cron": "0 30 6 ? * MON-FRI"}]},
        headers=api.auth("viewer"),
    )
    assert refused.status_code == 422
    problem = refused.json()
    assert problem["errors"][0]["field"] == "schedules[0].cron"
    assert "30 6 * * MON-FRI" in problem["detail"]  # the Quartz expression's five-field form


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"schedules": [{"cron": "61 * * * *"}]}, "schedules[0].cron", "61"),
        (
            {"schedules": [{"cron": "0 2 * * *", "timezone": "Europe/Londn"}]},
            "schedules[0].timezone",
            "Europe/London",
        ),
        ({"priority": 500}, "priority", "500"),
        ({"dependencies": [{"upstream": "nowhere"}]}, "dependencies", "nowhere"),
        ({"parameters": {"not_a_parameter": "1"}}, "parameters.not_a_parameter", "not_a_parameter"),
        ({"parameters": {"env": "{{upstream.ingest.run_id}}"}}, "parameters.env", "ingest"),
        ({"name": "a.b"}, "name", "'.'"),
        ({"name": "bad\x07name"}, "name", "control"),
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts", "0"),
    ],
)
async def test_a_task_that_cannot_be_saved_is_refused_naming_the_field(
    api: Api, changes: dict[str, Any], field: str, words: str
) -> None:
    answer = await api.client.post(
        TASKS, json={**_task(api, "t"), **changes}, headers=api.auth("admin")
    )
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert problem["errors"][0]["field"].startswith(field)
    assert words.lower() in problem["detail"].lower()
    assert (await api.client.get(TASKS, headers=api.auth("admin"))).json() == []


async def test_a_loop_of_dependencies_is_refused_naming_it(api: Api) -> None:
    await _create(api, _task(api, "a"))
    await _create(api, _task(api, "b", dependencies=[{"upstream": "a"}]))
    c = await _create(api, _task(api, "c", dependencies=[{"upstream": "b"}]))
    a_id = (await api.client.get(TASKS, headers=api.auth("admin"))).json()[0]["id"]
    answer = await api.client.patch(
        f"{TASKS}/{a_id}", json={"dependencies": [{"upstream": "c"}]}, headers=api.auth("admin")
    )
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["errors"][0]["field"] == "dependencies"
    assert "a → b → c → a" in problem["detail"]
    # Nothing was saved: a still has no upstream.
    assert (await api.client.get(f"{TASKS}/{a_id}", headers=api.auth("admin"))).json()[
        "dependencies"
    ] == []
    assert c["dependencies"] == [{"upstream": "b", "condition": "on_success"}]


async def test_patch_changes_only_what_it_sends_and_the_job_is_locked(api: Api) -> None:
    task = await _create(
        api, _task(api, "nightly", timeout_s=60, schedules=[{"cron": "@daily"}], priority=10)
    )
    url = f"{TASKS}/{task['id']}"
    answer = await api.client.patch(
        url, json={"priority": 90, "timeout_s": None}, headers=api.auth("admin")
    )
    assert answer.status_code == 200, answer.text
    edited = answer.json()
    assert (edited["priority"], edited["timeout_s"]) == (90, None)
    assert edited["schedules"][0]["cron"] == "@daily"
    moved = await api.client.patch(
        url, json={"job_id": api.job_ids[FRAUD]}, headers=api.auth("admin")
    )
    assert moved.status_code == 422
    assert moved.json()["errors"][0]["field"] == "job_id"
    unknown = await api.client.patch(url, json={"colour": "red"}, headers=api.auth("admin"))
    assert unknown.status_code == 422
    assert (await api.client.get(url, headers=api.auth("admin"))).json() == edited


async def test_roles_decide_who_reads_runs_and_edits(api: Api) -> None:
    task = await _create(api, _task(api, "nightly", schedules=[{"cron": "@daily"}]))
    url = f"{TASKS}/{task['id']}"
    for role in ("viewer", "operator"):
        create = await api.client.post(TASKS, json=_task(api, "x"), headers=api.auth(role))
        assert create.status_code == 403, role
        patch = await api.client.patch(url, json={"priority": 1}, headers=api.auth(role))
        assert patch.status_code == 403, role
        assert (await api.client.delete(url, headers=api.auth(role))).status_code == 403
    for action in ("pause", "resume", "run-once"):
        viewer = await api.client.post(f"{url}/{action}", headers=api.auth("viewer"))
        assert viewer.status_code == 403, action
        assert "operator" in viewer.json()["detail"]
    assert (await api.client.get(url)).status_code == 401

    paused = await api.client.post(f"{url}/pause", headers=api.auth("operator"))
    assert paused.status_code == 200
    assert (paused.json()["paused"], paused.json()["next_fire"]) == (True, None)
    resumed = await api.client.post(f"{url}/resume", headers=api.auth("operator"))
    assert resumed.json()["paused"] is False
    assert resumed.json()["next_fire"] == "2025-06-16T00:00:00Z"
    assert (await api.client.get(url, headers=api.auth("admin"))).json()["priority"] == 50


async def test_run_once_queues_a_manual_task_run_which_can_be_cancelled_once(api: Api) -> None:
    task = await _create(api, _task(api, "nightly"))
    answer = await api.client.post(f"{TASKS}/{task['id']}/run-once", headers=api.auth("operator"))
    assert answer.status_code == 201, answer.text
    task_run = answer.json()
    assert answer.headers["location"] == f"/api/v1/taskruns/{task_run['id']}"
    assert (task_run["trigger"], task_run["status"], task_run["task_id"]) == (
        "Manual",
        "Queued",
        task["id"],
    )
    assert task_run["events"][0]["status"] == "Queued"
    listed = await api.client.get(f"{TASKS}/{task['id']}/runs", headers=api.auth("viewer"))
    assert [r["id"] for r in listed.json()] == [task_run["id"]]
    everywhere = await api.client.get(
        TASKRUNS, params={"status": "Queued"}, headers=api.auth("viewer")
    )
    assert [r["id"] for r in everywhere.json()] == [task_run["id"]]
    summary = (await api.client.get(f"{TASKS}/{task['id']}", headers=api.auth("viewer"))).json()
    assert summary["last_run"]["id"] == task_run["id"]

    url = f"{TASKRUNS}/{task_run['id']}"
    assert (await api.client.post(f"{url}/cancel", headers=api.auth("viewer"))).status_code == 403
    cancelled = await api.client.post(f"{url}/cancel", headers=api.auth("operator"))
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["status"] == "Cancelled"
    again = await api.client.post(f"{url}/cancel", headers=api.auth("operator"))
    assert again.status_code == 409
    assert "already Cancelled" in again.json()["detail"]
    # Cancelled while Queued: no run was ever started, so there is nothing to repair.
    repair = await api.client.post(f"{url}/repair", headers=api.auth("operator"))
    assert repair.status_code == 409
    assert "never started a run" in repair.json()["detail"]
    read = (await api.client.get(url, headers=api.auth("viewer"))).json()
    assert [e["status"] for e in read["events"]] == ["Queued", "Cancelled"]


async def test_run_once_pressed_twice_at_one_instant_queues_two_task_runs(api: Api) -> None:
    # The manual clock does not move between the presses: the same instant, twice.
    task = await _create(api, _task(api, "nightly", concurrency_cap=1))
    url = f"{TASKS}/{task['id']}/run-once"
    first = await api.client.post(url, headers=api.auth("operator"))
    second = await api.client.post(url, headers=api.auth("operator"))
    assert (first.status_code, second.status_code) == (201, 201), second.text
    one, two = first.json(), second.json()
    assert one["id"] != two["id"]
    assert (one["trigger"], two["trigger"]) == ("Manual", "Manual")
    assert (one["status"], two["status"]) == ("Queued", "Queued")
    assert one["queued_at"] == two["queued_at"]
    step = datetime.fromisoformat(two["scheduled_for"]) - datetime.fromisoformat(
        one["scheduled_for"]
    )
    assert step == timedelta(microseconds=1)  # its own instant, a microsecond on
    listed = await api.client.get(f"{TASKS}/{task['id']}/runs", headers=api.auth("viewer"))
    assert sorted(r["id"] for r in listed.json()) == sorted([one["id"], two["id"]])
    # A third press, still at that instant, is a third TaskRun.
    third = await api.client.post(url, headers=api.auth("operator"))
    assert third.status_code == 201, third.text
    assert datetime.fromisoformat(third.json()["scheduled_for"]) - datetime.fromisoformat(
        two["scheduled_for"]
    ) == timedelta(microseconds=1)


async def test_run_once_runs_the_job_and_a_failed_task_run_is_repaired(api: Api) -> None:
    task = await _create(api, {"name": "fraud", "job_id": api.job_ids[FRAUD]})
    queued = (
        await api.client.post(f"{TASKS}/{task['id']}/run-once", headers=api.auth("operator"))
    ).json()
    url = f"{TASKRUNS}/{queued['id']}"
    for _ in range(500):  # the engine starts it and follows its run (fraud-scoring fails)
        await api.step()
        body = (await api.client.get(url, headers=api.auth("viewer"))).json()
        if body["status"] in ("Succeeded", "Failed", "Cancelled"):
            break
    assert body["status"] == "Failed"
    (attempt,) = body["attempts"]
    assert (attempt["kind"], attempt["status"]) == ("start", "Failed")
    run = await api.client.get(f"/api/v1/runs/{attempt['run_id']}", headers=api.auth("viewer"))
    assert run.json()["status"] == "Failed"
    assert run.json()["job_id"] == api.job_ids[FRAUD]

    assert (await api.client.post(f"{url}/repair", headers=api.auth("viewer"))).status_code == 403
    repaired = await api.client.post(f"{url}/repair", headers=api.auth("operator"))
    assert repaired.status_code == 202, repaired.text
    body = repaired.json()
    assert body["status"] == "Running"
    assert [(a["number"], a["kind"]) for a in body["attempts"]] == [(1, "start"), (2, "repair")]
    assert body["events"][-1]["message"] == "reopened by a repair"
    twice = await api.client.post(f"{url}/repair", headers=api.auth("operator"))
    assert twice.status_code == 409


async def test_delete_refuses_a_task_others_depend_on(api: Api) -> None:
    upstream = await _create(api, _task(api, "up"))
    downstream = await _create(api, _task(api, "down", dependencies=[{"upstream": "up"}]))
    refused = await api.client.delete(f"{TASKS}/{upstream['id']}", headers=api.auth("admin"))
    assert refused.status_code == 409
    assert "down" in refused.json()["detail"]
    gone = await api.client.delete(f"{TASKS}/{downstream['id']}", headers=api.auth("admin"))
    assert gone.status_code == 204
    assert (
        await api.client.delete(f"{TASKS}/{upstream['id']}", headers=api.auth("admin"))
    ).status_code == 204
    missing = await api.client.get(f"{TASKS}/{upstream['id']}", headers=api.auth("admin"))
    assert missing.status_code == 404
    assert (await api.client.get(f"{TASKRUNS}/999", headers=api.auth("viewer"))).status_code == 404


async def test_hostile_text_comes_back_as_data(api: Api) -> None:
    name = "<script>alert(1)</script> & 'quotes'"
    description = "line one\nline two <b>bold</b> \u202e reversed"
    task = await _create(api, _task(api, name, description=description, tags={"<k>": '"v"'}))
    read = (await api.client.get(f"{TASKS}/{task['id']}", headers=api.auth("viewer"))).json()
    assert (read["name"], read["description"], read["tags"]) == (name, description, {"<k>": '"v"'})
