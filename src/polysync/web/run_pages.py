"""Run pages: the filterable list, the run page (live while not terminal), Cancel, Repair."""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from polysync.domain.access import Role
from polysync.domain.models import RunStatus, TaskRunState
from polysync.domain.records import RunFilter
from polysync.errors import DatabricksError, UsageError
from polysync.presentation import run_duration_ms, shown_values
from polysync.web.context import WebContext
from polysync.web.security import Visitor

LIST_LIMIT = 200


@dataclass(frozen=True, slots=True)
class TaskBar:
    """One task attempt on the run's timeline; offsets in percent of the run's span."""

    task: TaskRunState
    left_pct: float
    width_pct: float
    duration_ms: int | None


def timeline(tasks: tuple[TaskRunState, ...]) -> list[TaskBar]:
    """Bars placed on the span from the first task start to the last known task time.

    A running task has no end yet, and Databricks' "now" is not known here: the span gets a
    margin after the last time any task reported, and a running bar reaches its end.
    """
    starts = [t.start_time_ms for t in tasks if t.start_time_ms]
    ends = [t.end_time_ms for t in tasks if t.end_time_ms]
    if not starts:
        return [TaskBar(t, 0.0, 0.0, t.duration_ms) for t in tasks]
    span_start = min(starts)
    span_end = max([*starts, *ends])
    if any(t.start_time_ms and not t.end_time_ms for t in tasks):
        span_end += max((span_end - span_start) // 5, 1000)
    span = max(span_end - span_start, 1)
    bars = []
    for task in tasks:
        if not task.start_time_ms:
            bars.append(TaskBar(task, 0.0, 0.0, task.duration_ms))
            continue
        end = task.end_time_ms or span_end
        duration = task.duration_ms or (end - task.start_time_ms if task.end_time_ms else None)
        left = (task.start_time_ms - span_start) / span * 100
        width = max((end - task.start_time_ms) / span * 100, 1.0)
        bars.append(TaskBar(task, round(left, 2), round(min(width, 100 - left), 2), duration))
    return bars


def _status_filter(value: str | None) -> RunStatus | None:
    if not value:
        return None
    try:
        return RunStatus(value)
    except ValueError:
        return None


def run_router(ctx: WebContext) -> APIRouter:
    router = ctx.router()
    services = ctx.services
    viewer, operator = ctx.guard(Role.VIEWER), ctx.guard(Role.OPERATOR)

    async def list_context(job_id: int | None, status: str | None) -> dict[str, Any]:
        chosen = _status_filter(status)
        where = RunFilter(job_id=job_id, statuses=(chosen,) if chosen else (), limit=LIST_LIMIT)
        runs = await services.list_runs(where)
        jobs = {job.id: job for job in await services.store.list_jobs()}
        return {
            "runs": runs,
            "jobs": jobs,
            "job_id": job_id,
            "status": chosen,
            "statuses": list(RunStatus),
            "any_active": any(not run.is_terminal for run in runs),
            # The empty page says what to do next: add a platform, import, execute.
            "platform_count": 0 if runs else len(await services.store.list_platforms()),
            "run_duration_ms": run_duration_ms,
        }

    async def run_context(run_id: int) -> dict[str, Any]:
        run, job, events = await services.run_details(run_id)
        task_run = await services.store.task_run_of_run(run_id)
        return {
            "task_run": task_run,
            "run": run,
            "job": job,
            "sent": shown_values(job.parameters, run.parameters_sent),
            "events": events,
            "bars": timeline(run.tasks),
            "run_duration_ms": run_duration_ms,
            # "Repair run" is offered for a Failed or Cancelled run of a Job Type that can (D13).
            "repairable": run.status.is_repairable
            and run.run_id is not None
            and services.supports_repair(job.job_type),
        }

    @router.get("/runs", include_in_schema=False)
    async def runs(
        request: Request,
        visitor: Annotated[Visitor, Depends(viewer)],
        job_id: str | None = None,
        status: str | None = None,
    ) -> Response:
        chosen_job = int(job_id) if job_id and job_id.isdigit() else None
        context = await list_context(chosen_job, status)
        template = "_runs_table.html" if "hx-request" in request.headers else "runs.html"
        return ctx.render(request, visitor, template, **context)

    @router.get("/runs/{run_id}", include_in_schema=False)
    async def show_run(
        request: Request, run_id: int, visitor: Annotated[Visitor, Depends(viewer)]
    ) -> Response:
        return ctx.render(request, visitor, "run.html", **await run_context(run_id))

    @router.get("/runs/{run_id}/live", include_in_schema=False)
    async def live(
        request: Request, run_id: int, visitor: Annotated[Visitor, Depends(viewer)]
    ) -> Response:
        return ctx.render(request, visitor, "_run_live.html", **await run_context(run_id))

    @router.post("/runs/{run_id}/cancel", include_in_schema=False)
    async def cancel(
        request: Request, run_id: int, visitor: Annotated[Visitor, Depends(operator)]
    ) -> Response:
        notice: str | None = None
        try:
            await services.cancel(run_id, actor=visitor.actor)
        except UsageError as exc:  # already ended: a no-op that says so (D10)
            notice = exc.message
        if "hx-request" not in request.headers:
            return ctx.redirect(request, visitor, f"/runs/{run_id}")
        return ctx.render(
            request, visitor, "_run_live.html", notice=notice, **await run_context(run_id)
        )

    @router.post("/runs/{run_id}/repair", include_in_schema=False)
    async def repair(
        request: Request, run_id: int, visitor: Annotated[Visitor, Depends(operator)]
    ) -> Response:
        notice: str | None = None
        try:
            await services.repair_run(run_id, actor=visitor.actor)
        except (UsageError, DatabricksError) as exc:  # not repairable, or Databricks refused
            notice = str(exc)
        if "hx-request" not in request.headers:
            return ctx.redirect(request, visitor, f"/runs/{run_id}")
        return ctx.render(
            request, visitor, "_run_live.html", notice=notice, **await run_context(run_id)
        )

    return router
