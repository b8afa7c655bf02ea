"""The Task pages over httpx (no browser): the editor's form saved through the services, errors
marking their field and tab, roles, escaping, the TaskRun page and the home page's timeline."""

from __future__ import annotations

import json
import re
from typing import Any

from polysync.tasks.states import TaskRunStatus
from tests.web.test_security import App, app  # noqa: F401 - `app` is the fixture

HOSTILE = "<img src=x onerror=alert(1)>\u202e'\"&amp;"


def _form(csrf: str, job_id: int, **fields: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "csrf_token": csrf,
        "name": "nightly",
        "job_id": str(job_id),
        "description": "",
        "tags": "",
        "parameter_name": ["env", "batch_size"],
        "parameter_value": ["dev", ""],
        "schedule_cron": ["0 2 * * *"],
        "schedule_timezone": ["Europe/London"],
        "schedule_misfire_policy": ["run-latest"],
        "schedule_misfire_cap": ["10"],
        "schedule_starts_at": [""],
        "schedule_ends_at": [""],
        "schedule_paused": ["no"],
        "priority": "60",
        "concurrency_cap": "1",
        "on_overlap": "queue",
        "timeout_s": "",
        "retry_max_attempts": "3",
        "retry_backoff": "Exponential",
        "retry_initial_delay_s": "60",
        "retry_max_delay_s": "3600",
        "retry_strategy": "",
    }
    form.update(fields)
    return form


async def _create(app: App, csrf: str, **fields: Any) -> int:  # noqa: F811
    answer = await app.client.post("/tasks", data=_form(csrf, app.job_id, **fields))
    assert answer.status_code == 303, answer.text
    match = re.fullmatch(r"/tasks/(\d+)\?notice=created", answer.headers["location"])
    assert match is not None, answer.headers["location"]
    return int(match.group(1))


async def test_an_admin_creates_a_task_from_the_editor(app: App) -> None:  # noqa: F811
    csrf = await app.sign_in("admin")
    empty = await app.client.get("/tasks")
    assert 'href="/tasks/new">Create a Task</a>' in empty.text
    editor = await app.client.get(f"/tasks/new?job_id={app.job_id}")
    assert editor.status_code == 200, editor.text[-3000:]
    for tab in ("General", "Settings", "Dependencies", "Scheduling", "Runtime Settings"):
        assert f">{tab}</button>" in editor.text
    assert 'name="parameter_name" value="batch_size"' in editor.text  # the Job's parameters

    upstream = await _create(app, csrf, name="ingest", schedule_cron=[""])
    task_id = await _create(
        app,
        csrf,
        dependency_upstream=["ingest"],
        dependency_condition=["on_failure"],
        retry_enabled="on",
        retry_backoff="Linear",
        timeout_s="900",
        tags="team=data\nnightly",
    )
    task = await app.services.tasks.get(task_id)
    assert task.parameters == {"env": "dev"}  # an empty value leaves the parameter unset
    assert [(d.upstream, d.condition.value) for d in task.dependencies] == [
        ("ingest", "on_failure")
    ]
    assert [(s.cron, s.timezone) for s in task.schedules] == [("0 2 * * *", "Europe/London")]
    assert (task.priority, task.timeout_s, task.retry.enabled) == (60, 900, True)
    assert task.retry.backoff.value == "Linear"
    assert dict(task.tags) == {"team": "data", "nightly": ""}

    page = await app.client.get(f"/tasks/{task_id}?notice=created")
    assert "Task created." in page.text
    assert "data-task-graph='{" in page.text
    assert "/static/vendor/dagre.min.js" in page.text
    assert f'"id": {upstream}' in page.text  # the diagram's JSON holds the upstream
    listed = await app.client.get("/tasks")
    assert f'href="/tasks/{task_id}">nightly</a>' in listed.text
    assert "never run" in listed.text

    saved = await app.client.post(
        f"/tasks/{task_id}", data=_form(csrf, app.job_id, priority="80", schedule_cron=[""])
    )
    assert saved.status_code == 303
    edited = await app.services.tasks.get(task_id)
    assert (edited.priority, edited.schedules, edited.dependencies) == (80, (), ())


async def test_an_invalid_field_is_marked_on_its_tab_and_nothing_is_saved(app: App) -> None:  # noqa: F811
    csrf = await app.sign_in("admin")
    answer = await app.client.post(
        "/tasks",
        data=_form(csrf, app.job_id, name="kept", schedule_cron=["0 2 30 2 *"], priority="high"),
    )
    assert answer.status_code == 422
    assert 'aria-invalid="true"' in answer.text
    assert 'data-active-tab="runtime"' in answer.text  # priority is read first
    assert "high" in answer.text
    assert 'value="kept"' in answer.text  # what was typed stays
    answer = await app.client.post(
        "/tasks", data=_form(csrf, app.job_id, name="kept", schedule_cron=["0 2 30 2 *"])
    )
    assert answer.status_code == 422
    assert 'data-active-tab="scheduling"' in answer.text
    assert 'id="schedule-cron-0" name="schedule_cron" value="0 2 30 2 *"' in answer.text
    assert await app.services.store.list_tasks() == []


async def test_hostile_names_are_escaped_everywhere(app: App) -> None:  # noqa: F811
    csrf = await app.sign_in("admin")
    refused = await app.client.post("/tasks", data=_form(csrf, app.job_id, name=HOSTILE))
    assert refused.status_code == 422  # a right-to-left override is a control character
    name = "<img src=x onerror=alert(1)> & </script>"
    task_id = await _create(app, csrf, name=name, description="<b>bold</b>")
    for path in ("/tasks", f"/tasks/{task_id}"):
        text = (await app.client.get(path)).text
        assert "<img src=x" not in text
        assert "&lt;img src=x onerror=alert(1)&gt; &amp; &lt;/script&gt;" in text
    page = (await app.client.get(f"/tasks/{task_id}")).text
    graph = re.search(r"data-task-graph='([^']*)'", page)
    assert graph is not None
    # JSON in a single-quoted attribute: < > & ' are \u003c \u003e \u0026 \u0027.
    assert "<" not in graph.group(1)
    assert json.loads(graph.group(1))["nodes"][0]["name"] == name


async def test_roles_on_the_pages(app: App) -> None:  # noqa: F811
    csrf = await app.sign_in("admin")
    task_id = await _create(app, csrf)
    app.client.cookies.clear()
    csrf = await app.sign_in("viewer")
    page = await app.client.get(f"/tasks/{task_id}")
    assert page.status_code == 200
    assert ">Run once</button>" not in page.text
    assert "Save Task" not in page.text
    assert '<fieldset class="plain" disabled>' in page.text
    assert (await app.client.get("/tasks/new")).status_code == 403
    refused = await app.client.post(f"/tasks/{task_id}/run-once", data={"csrf_token": csrf})
    assert refused.status_code == 403
    app.client.cookies.clear()
    csrf = await app.sign_in("operator")
    page = await app.client.get(f"/tasks/{task_id}")
    assert ">Run once</button>" in page.text
    assert "Save Task" not in page.text
    edit = await app.client.post(f"/tasks/{task_id}", data=_form(csrf, app.job_id, priority="1"))
    assert edit.status_code == 403
    assert (await app.services.tasks.get(task_id)).priority == 60
    ran = await app.client.post(f"/tasks/{task_id}/run-once", data={"csrf_token": csrf})
    assert ran.status_code == 303
    taskrun_url = ran.headers["location"]
    task_run_id = int(taskrun_url.rsplit("/", 1)[1])
    taskrun = await app.client.get(taskrun_url)
    assert "Queued" in taskrun.text
    assert f'href="/tasks/{task_id}">nightly</a>' in taskrun.text
    cancelled = await app.client.post(
        f"{taskrun_url}/cancel", data={"csrf_token": csrf}, headers={"HX-Request": "true"}
    )
    assert cancelled.status_code == 200
    assert (await app.services.tasks.get_run(task_run_id)).status is TaskRunStatus.CANCELLED
    again = await app.client.post(
        f"{taskrun_url}/cancel", data={"csrf_token": csrf}, headers={"HX-Request": "true"}
    )
    assert 'role="alert"' in again.text
    assert "already Cancelled" in again.text

    home = await app.client.get("/")
    assert home.status_code == 200
    assert f'data-taskrun="{task_run_id}"' in home.text
    assert 'class="bar status-cancelled"' in home.text


async def test_the_preview_shows_the_next_fire_times_of_the_form(app: App) -> None:  # noqa: F811
    csrf = await app.sign_in("viewer")
    answer = await app.client.post(
        "/tasks/preview",
        data={
            "csrf_token": csrf,
            "schedule_cron": ["0 2 * * *"],
            "schedule_timezone": ["Australia/Sydney"],
            "schedule_starts_at": ["2036-10-03T00:00"],
            "schedule_ends_at": [""],
            "schedule_misfire_policy": ["skip"],
            "schedule_misfire_cap": ["10"],
            "schedule_paused": ["no"],
        },
    )
    assert answer.status_code == 200
    fires = re.findall(r'data-fire="([^"]+)"', answer.text)
    # 5 October 2036: 02:00 does not exist in Sydney (clocks go forward): it fires at 03:00
    # AEDT. The start is read in the schedule's time zone (03 October 00:00 AEST).
    assert fires[:4] == [
        "2036-10-02T16:00:00+00:00",
        "2036-10-03T16:00:00+00:00",
        "2036-10-04T16:00:00+00:00",
        "2036-10-05T15:00:00+00:00",
    ]
    assert "2036-10-05 03:00 AEDT" in answer.text
    bad = await app.client.post(
        "/tasks/preview",
        data={"csrf_token": csrf, "schedule_cron": ["nonsense"], "schedule_timezone": ["UTC"]},
    )
    assert 'role="alert"' in bad.text
    assert "Cannot preview" in bad.text


async def test_pause_resume_and_delete_from_the_pages(app: App) -> None:  # noqa: F811
    csrf = await app.sign_in("admin")
    upstream = await _create(app, csrf, name="up", schedule_cron=[""])
    downstream = await _create(
        app, csrf, name="down", dependency_upstream=["up"], dependency_condition=["on_success"]
    )
    paused = await app.client.post(
        f"/tasks/{downstream}/pause", data={"csrf_token": csrf, "back": "list"}
    )
    assert paused.headers["location"] == "/tasks?notice=paused"
    assert (await app.services.tasks.get(downstream)).paused is True
    listed = (await app.client.get(paused.headers["location"])).text
    assert "Task paused" in listed
    assert '<span class="paused-chip">paused</span>' in listed
    resumed = await app.client.post(f"/tasks/{downstream}/resume", data={"csrf_token": csrf})
    assert resumed.headers["location"] == f"/tasks/{downstream}?notice=resumed"
    assert (await app.services.tasks.get(downstream)).paused is False

    refused = await app.client.post(f"/tasks/{upstream}/delete", data={"csrf_token": csrf})
    assert refused.status_code == 409
    assert "down" in refused.text
    assert 'role="alert"' in refused.text
    assert (await app.services.tasks.get(upstream)).name == "up"
    for task_id in (downstream, upstream):
        gone = await app.client.post(f"/tasks/{task_id}/delete", data={"csrf_token": csrf})
        assert gone.headers["location"] == "/tasks?notice=deleted"
    assert await app.services.store.list_tasks() == []
    missing = await app.client.get(f"/tasks/{upstream}")
    assert missing.status_code == 404


async def test_an_unknown_job_marks_the_job_field(app: App) -> None:  # noqa: F811
    csrf = await app.sign_in("admin")
    answer = await app.client.post("/tasks", data=_form(csrf, 999_999))
    assert answer.status_code == 422
    assert 'id="task-job" name="job_id" required aria-invalid="true"' in answer.text
