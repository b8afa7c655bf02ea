"""Tasks: list, read, preview (viewer); pause, resume, Run once (operator); create, edit, delete
(admin). Roles as D12 decides (docs/tasks.md, "Proposed decisions" 13)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from polysync.api.deps import Admin, Operator, ServicesDep, Viewer
from polysync.api.problems import Problem
from polysync.api.task_schemas import (
    PreviewOut,
    SchedulePreviewIn,
    TaskIn,
    TaskOut,
    TaskRunOut,
    TaskRunSummary,
    TaskUpdate,
)
from polysync.domain.access import Actor
from polysync.services import Services
from polysync.task_services import TaskSummary
from polysync.tasks.model import Task
from polysync.tasks.schedule import MAX_PREVIEW
from polysync.tasks.states import TaskRunStatus

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])
TaskId = Annotated[int, Path(ge=1, le=2**63 - 1)]
MAX_LIMIT = 1000
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 409, 422)
}


async def _summary(services: Services, task: Task) -> TaskSummary:
    """The Task with its Job, next fire time and latest TaskRun, as the list shows it."""
    assert task.id is not None
    return (await services.tasks.details(task.id, runs=1)).summary


@router.get("", response_model=list[TaskOut], responses=_ERRORS)
async def list_tasks(services: ServicesDep, caller: Viewer) -> list[TaskOut]:
    """Every Task by name, with its next fire time and last result."""
    return [TaskOut.of(summary) for summary in await services.tasks.list_tasks()]


@router.post("", status_code=201, response_model=TaskOut, responses=_ERRORS)
async def create_task(
    body: TaskIn, services: ServicesDep, caller: Admin, response: Response
) -> TaskOut:
    """A new Task. Checked as a whole before anything is saved: 422 names the field at fault
    (`errors[0].field`, e.g. `schedules[0].cron`, `parameters.run_date`, `dependencies`), and a
    loop of dependencies is named in the message."""
    task = await services.tasks.create(body.to_data(), actor=Actor.of_key(caller))
    response.headers["Location"] = f"/api/v1/tasks/{task.id}"
    return TaskOut.of(await _summary(services, task))


@router.get("/{task_id}", response_model=TaskOut, responses=_ERRORS)
async def read_task(task_id: TaskId, services: ServicesDep, caller: Viewer) -> TaskOut:
    return TaskOut.of(await _summary(services, await services.tasks.get(task_id)))


@router.patch("/{task_id}", response_model=TaskOut, responses=_ERRORS)
async def update_task(
    task_id: TaskId, body: TaskUpdate, services: ServicesDep, caller: Admin
) -> TaskOut:
    """Change the fields sent; `schedules` and `dependencies` replace the whole list. The Job
    cannot change (422, field `job_id`)."""
    task = await services.tasks.edit(task_id, body.to_changes(), actor=Actor.of_key(caller))
    return TaskOut.of(await _summary(services, task))


@router.delete("/{task_id}", status_code=204, responses=_ERRORS)
async def delete_task(task_id: TaskId, services: ServicesDep, caller: Admin) -> Response:
    """Remove the Task and its TaskRuns (their runs stay). 409 while other Tasks depend on it
    or it has Queued or Running TaskRuns."""
    await services.tasks.delete(task_id, actor=Actor.of_key(caller))
    return Response(status_code=204)


@router.post("/{task_id}/pause", response_model=TaskOut, responses=_ERRORS)
async def pause_task(task_id: TaskId, services: ServicesDep, caller: Operator) -> TaskOut:
    """Its schedules and dependencies stop triggering it; Run once still works."""
    task = await services.tasks.pause(task_id, actor=Actor.of_key(caller))
    return TaskOut.of(await _summary(services, task))


@router.post("/{task_id}/resume", response_model=TaskOut, responses=_ERRORS)
async def resume_task(task_id: TaskId, services: ServicesDep, caller: Operator) -> TaskOut:
    """Triggers again from now: fire times passed while paused are dropped, not misfires."""
    task = await services.tasks.resume(task_id, actor=Actor.of_key(caller))
    return TaskOut.of(await _summary(services, task))


@router.post("/{task_id}/run-once", status_code=201, response_model=TaskRunOut, responses=_ERRORS)
async def run_once(
    task_id: TaskId, services: ServicesDep, caller: Operator, response: Response
) -> TaskRunOut:
    """Queue a Manual TaskRun now, paused or not; the engine starts it by priority within the
    Task's concurrency cap. Follow it at `/api/v1/taskruns/{id}`."""
    task_run = await services.tasks.run_once(task_id, actor=Actor.of_key(caller))
    response.headers["Location"] = f"/api/v1/taskruns/{task_run.id}"
    return TaskRunOut.of_run(task_run)


@router.get("/{task_id}/preview", response_model=PreviewOut, responses=_ERRORS)
async def preview(
    task_id: TaskId,
    services: ServicesDep,
    caller: Viewer,
    count: Annotated[int, Query(ge=1, le=MAX_PREVIEW, description="How many fire times.")] = 10,
) -> PreviewOut:
    """The Task's next fire times (UTC), all its schedules merged; a paused schedule or Task
    previews as if resumed."""
    return PreviewOut.of(await services.tasks.preview(task_id, count))


@router.post("/preview", response_model=PreviewOut, responses=_ERRORS)
async def preview_schedules(
    body: SchedulePreviewIn,
    services: ServicesDep,
    caller: Viewer,
    count: Annotated[int, Query(ge=1, le=MAX_PREVIEW, description="How many fire times.")] = 10,
) -> PreviewOut:
    """The next fire times of schedules not saved yet (422 names `schedules[i].<field>`)."""
    data = body.model_dump(mode="json", exclude_unset=True)
    return PreviewOut.of(await services.tasks.preview_data(data, count))


@router.get("/{task_id}/runs", response_model=list[TaskRunSummary], responses=_ERRORS)
async def list_task_runs(
    task_id: TaskId,
    services: ServicesDep,
    caller: Viewer,
    status: Annotated[list[TaskRunStatus] | None, Query(description="Repeat for several.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> list[TaskRunSummary]:
    """The Task's TaskRuns, newest first."""
    runs = await services.tasks.list_runs(task_id, statuses=tuple(status or ()), limit=limit)
    return [TaskRunSummary.of(run) for run in runs]
