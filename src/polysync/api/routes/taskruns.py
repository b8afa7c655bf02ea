"""TaskRuns: list and read (viewer); cancel and repair (operator). docs/tasks.md."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from polysync.api.deps import Operator, ServicesDep, Viewer
from polysync.api.problems import JSONResponse, Problem
from polysync.api.task_schemas import TaskRunOut, TaskRunSummary
from polysync.domain.access import Actor
from polysync.errors import UsageError
from polysync.tasks.states import TaskRunStatus

router = APIRouter(prefix="/api/v1/taskruns", tags=["taskruns"])
TaskRunId = Annotated[int, Path(ge=1, le=2**63 - 1)]
MAX_LIMIT = 1000
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 409, 422)
}


@router.get("", response_model=list[TaskRunSummary], responses=_ERRORS)
async def list_task_runs(
    services: ServicesDep,
    caller: Viewer,
    task_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    status: Annotated[list[TaskRunStatus] | None, Query(description="Repeat for several.")] = None,
    since: Annotated[
        datetime | None, Query(description="Only TaskRuns queued at or after, ISO 8601.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> list[TaskRunSummary]:
    """TaskRuns newest first, of every Task or of one."""
    if since is not None and since.utcoffset() is None:
        raise UsageError("since needs a time zone, e.g. 2026-01-31T12:00:00Z.")
    runs = await services.tasks.list_runs(
        task_id, statuses=tuple(status or ()), limit=limit, since=since
    )
    return [TaskRunSummary.of(run) for run in runs]


@router.get("/{task_run_id}", response_model=TaskRunOut, responses=_ERRORS)
async def read_task_run(
    task_run_id: TaskRunId, services: ServicesDep, caller: Viewer
) -> TaskRunOut:
    """The TaskRun with its attempts (each names the Polysync run it started or repaired) and its
    status history; a repair shows as "reopened by a repair" there (D6 as amended)."""
    return TaskRunOut.of_run(await services.tasks.get_run(task_run_id))


@router.post("/{task_run_id}/cancel", status_code=202, response_model=TaskRunOut, responses=_ERRORS)
async def cancel_task_run(
    task_run_id: TaskRunId, services: ServicesDep, caller: Operator
) -> JSONResponse:
    """Cancel a Queued or Running TaskRun: it is Cancelled at once, and its running attempt's
    run gets a cancel request (Databricks confirms on the run, D10). 409 once it has ended."""
    task_run = await services.tasks.cancel_run(task_run_id, actor=Actor.of_key(caller))
    body = TaskRunOut.of_run(task_run).model_dump(mode="json")
    return JSONResponse(body, status_code=202)


@router.post("/{task_run_id}/repair", status_code=202, response_model=TaskRunOut, responses=_ERRORS)
async def repair_task_run(
    task_run_id: TaskRunId, services: ServicesDep, caller: Operator
) -> JSONResponse:
    """Repair a Failed or Cancelled TaskRun: it reopens as Running with a repair attempt, which
    the engine sends as `jobs/runs/repair` of its last run (only the failed and skipped tasks run
    again) or, for a job type without repair, a new run. 409 for another status."""
    task_run = await services.tasks.repair_run(task_run_id, actor=Actor.of_key(caller))
    body = TaskRunOut.of_run(task_run).model_dump(mode="json")
    return JSONResponse(body, status_code=202)
