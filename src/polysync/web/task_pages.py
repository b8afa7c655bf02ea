"""Task pages: the Tasks list, the Task editor (General, Settings, Dependencies, Scheduling,
Runtime Settings), TaskRun pages, and the home page's 24 h timeline.

Every change goes through `services.tasks` (one validation path, issue 11); roles as the API's
(D12): viewers read, operators Run once, pause, resume, cancel and repair, admins create, edit
and delete. docs/web-ui.md.
"""

import zoneinfo
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from polysync.domain.access import Role
from polysync.domain.models import DataType, Parameter
from polysync.domain.parameters import shown_value
from polysync.domain.records import Job, Run
from polysync.errors import ConflictError, TaskDefinitionError, TaskRunTransitionError
from polysync.task_services import FireTime, schedule_data, task_data
from polysync.tasks.dependencies import Condition
from polysync.tasks.model import Task, TaskRun
from polysync.tasks.retry import Backoff, RetryStrategy
from polysync.tasks.schedule import MisfirePolicy, Schedule
from polysync.tasks.states import REPAIRABLE_STATUSES, TaskRunStatus
from polysync.web.context import WebContext
from polysync.web.security import Visitor
from polysync.web.task_form import (
    TABS,
    ScheduleRow,
    TaskFormValues,
    job_parameter_names,
    read_values,
    schedules_of,
    tab_of,
    task_of,
    values_of,
)
from polysync.web.task_views import TIMELINE_SPAN, dependency_graph, timeline

PREVIEW_COUNT = 10
RECENT_TASK_RUNS = 20
TIMELINE_TASK_RUNS = 1000
MISFIRE_LABELS = {
    MisfirePolicy.RUN_LATEST.value: "Run the latest once",
    MisfirePolicy.SKIP.value: "Skip them",
    MisfirePolicy.RUN_ALL.value: "Run them all (up to the cap)",
}
_NOTICES = {
    "created": "Task created.",
    "saved": "Task saved.",
    "deleted": "Task deleted.",
    "paused": "Task paused: its schedules and dependencies no longer trigger it.",
    "resumed": "Task resumed: it triggers again from now.",
}


@cache
def _timezones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones() - {"localtime", "posixrules"}))


def format_local(moment: datetime, zone: str) -> str:
    """`moment` on the wall clock of `zone` (its abbreviation shows the DST side)."""
    try:
        local = moment.astimezone(zoneinfo.ZoneInfo(zone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return ""
    return local.strftime("%Y-%m-%d %H:%M %Z")


def job_value(parameter: Parameter) -> str:
    """What a run sends for `parameter` when the Task leaves it empty: the stored value (a
    Secret's as its reference or masked), else the Databricks default (never a Secret's)."""
    if parameter.stored_value is not None:
        return shown_value(parameter.data_type, parameter.stored_value) or ""
    if parameter.data_type is DataType.SECRET:
        return ""
    return parameter.default or ""


def _now(ctx: WebContext) -> datetime:
    return datetime.fromtimestamp(ctx.services.clock.now(), UTC)


def task_router(ctx: WebContext) -> APIRouter:
    router = ctx.router()
    services = ctx.services
    tasks = services.tasks
    viewer = ctx.guard(Role.VIEWER)
    operator = ctx.guard(Role.OPERATOR)
    admin = ctx.guard(Role.ADMIN)
    ctx.env.filters["local"] = format_local
    ctx.env.globals.update(
        MISFIRE_LABELS=MISFIRE_LABELS,
        TASK_RUN_STATUSES=list(TaskRunStatus),
        job_value=job_value,
    )

    # ------------------------------------------------------------------ shared contexts
    async def editor_context(
        task: Task | None,
        values: TaskFormValues,
        *,
        error: TaskDefinitionError | ConflictError | None = None,
        notice: str | None = None,
    ) -> dict[str, Any]:
        all_tasks = list(await services.store.list_tasks())
        jobs = sorted(await services.store.list_jobs(), key=lambda j: (j.name.casefold(), j.id))
        job = _job_of(jobs, task.job_id if task else values.job_id)
        names = sorted(
            (t.name for t in all_tasks if task is None or t.id != task.id), key=str.casefold
        )
        field = getattr(error, "field", None) if error is not None else None
        if field == "job":  # the services name the Job `job` (id, External Id or name)
            field = "job_id"
        runs: list[TaskRun] = []
        statuses: dict[int, TaskRunStatus] = {}
        if task is not None and task.id is not None:
            runs = await tasks.list_runs(task.id, limit=RECENT_TASK_RUNS)
            statuses = {task.id: runs[0].status} if runs else {}
        graph = dependency_graph(
            all_tasks, focus=task.id if task else None, last_status=statuses, choices=True
        )
        preview, preview_error = await _preview(values.schedules)
        return {
            "task": task,
            "values": values,
            "job": job,
            "jobs": jobs,
            "parameters": [p for p in (job.parameters if job else ()) if p.is_sent],
            "task_names": names,
            "graph": graph,
            "task_runs": runs,
            "error": error.message if error is not None else None,
            "error_field": field,
            "error_tab": tab_of(field) if error is not None else None,
            "active_tab": tab_of(field) if error is not None else "general",
            "notice": notice,
            "preview": preview,
            "preview_error": preview_error,
            "blank_schedule": ScheduleRow(),
            "conditions": list(Condition),
            "backoffs": list(Backoff),
            "strategies": list(RetryStrategy),
            "misfire_policies": list(MisfirePolicy),
            "timezones": _timezones(),
            "tabs": TABS,
        }

    async def _preview(rows: tuple[ScheduleRow, ...]) -> tuple[dict[str, Any] | None, str | None]:
        """The next fire times of the editor's schedules (merged), or the error that stops it."""
        try:
            schedules = schedules_of(rows)
        except TaskDefinitionError as exc:
            return None, exc.message
        fires = await tasks.preview_data(
            {"schedules": [schedule_data(s) for s in schedules]}, PREVIEW_COUNT
        )
        return _preview_context(schedules, fires), None

    async def taskrun_context(task_run_id: int) -> dict[str, Any]:
        task_run = await tasks.get_run(task_run_id)
        task = await _task_or_none(task_run.task_id)
        runs: dict[int, Run] = {}
        for attempt in task_run.attempts:
            if attempt.run_id is not None and attempt.run_id not in runs:
                runs[attempt.run_id] = await services.store.get_run(attempt.run_id)
        has_run = any(a.run_id is not None for a in task_run.attempts)
        return {
            "task_run": task_run,
            "task": task,
            "runs": runs,
            "repairable": task_run.status in REPAIRABLE_STATUSES and has_run,
        }

    async def _task_or_none(task_id: int) -> Task | None:
        for task in await services.store.list_tasks():
            if task.id == task_id:
                return task
        return None

    async def timeline_context() -> dict[str, Any]:
        now = _now(ctx)
        recent = await tasks.list_runs(since=now - TIMELINE_SPAN, limit=TIMELINE_TASK_RUNS)
        active = await tasks.list_runs(
            statuses=(TaskRunStatus.QUEUED, TaskRunStatus.RUNNING), limit=TIMELINE_TASK_RUNS
        )
        seen = {run.id for run in recent}
        runs = [*recent, *(run for run in active if run.id not in seen)]
        names = {t.id: t.name for t in await services.store.list_tasks() if t.id is not None}
        return {"timeline": timeline(runs, names, now)}

    # ------------------------------------------------------------------ home
    @router.get("/", include_in_schema=False)
    async def home(request: Request, visitor: Annotated[Visitor, Depends(viewer)]) -> Response:
        return ctx.render(request, visitor, "home.html", **await timeline_context())

    @router.get("/timeline", include_in_schema=False)
    async def timeline_fragment(
        request: Request, visitor: Annotated[Visitor, Depends(viewer)]
    ) -> Response:
        return ctx.render(request, visitor, "_timeline.html", **await timeline_context())

    # ------------------------------------------------------------------ Tasks list
    @router.get("/tasks", include_in_schema=False)
    async def list_page(
        request: Request, visitor: Annotated[Visitor, Depends(viewer)], notice: str = ""
    ) -> Response:
        summaries = await tasks.list_tasks()
        statuses = {
            s.task.id: s.last_run.status
            for s in summaries
            if s.task.id is not None and s.last_run is not None
        }
        return ctx.render(
            request,
            visitor,
            "tasks.html",
            rows=[
                {"task": s.task, "job": s.job, "next_fire": s.next_fire, "last_run": s.last_run}
                for s in summaries
            ],
            graph=dependency_graph([s.task for s in summaries], last_status=statuses),
            job_count=len(await services.store.list_jobs()),
            notice=_NOTICES.get(notice),
        )

    # ------------------------------------------------------------------ editor
    @router.get("/tasks/new", include_in_schema=False)
    async def new_page(
        request: Request, visitor: Annotated[Visitor, Depends(admin)], job_id: str = ""
    ) -> Response:
        values = TaskFormValues(job_id=job_id if job_id.isdigit() else "")
        return ctx.render(request, visitor, "task.html", **await editor_context(None, values))

    @router.get("/tasks/new/parameters", include_in_schema=False)
    async def new_parameters(
        request: Request, visitor: Annotated[Visitor, Depends(admin)], job_id: str = ""
    ) -> Response:
        values = TaskFormValues(job_id=job_id if job_id.isdigit() else "")
        context = await editor_context(None, values)
        return ctx.render(request, visitor, "_task_parameters.html", **context)

    @router.post("/tasks", include_in_schema=False)
    async def create(request: Request, visitor: Annotated[Visitor, Depends(admin)]) -> Response:
        form = await request.form()
        job = _job_of(await services.store.list_jobs(), _first(form.getlist("job_id")))
        values = read_values(form, job_parameter_names(job.parameters) if job else [])
        try:
            data = task_data(task_of(values))
            created = await tasks.create(data, actor=visitor.actor)
        except TaskDefinitionError as exc:
            context = await editor_context(None, values, error=exc)
            return ctx.render(request, visitor, "task.html", status_code=422, **context)
        return ctx.redirect(request, visitor, f"/tasks/{created.id}?notice=created")

    @router.post("/tasks/preview", include_in_schema=False)
    async def preview(request: Request, visitor: Annotated[Visitor, Depends(viewer)]) -> Response:
        values = read_values(await request.form(), [])
        shown, error = await _preview(values.schedules)
        return ctx.render(
            request, visitor, "_task_preview.html", preview=shown, preview_error=error
        )

    @router.get("/tasks/{task_id}", include_in_schema=False)
    async def task_page(
        request: Request,
        task_id: int,
        visitor: Annotated[Visitor, Depends(viewer)],
        notice: str = "",
    ) -> Response:
        task = await tasks.get(task_id)
        context = await editor_context(task, values_of(task), notice=_NOTICES.get(notice))
        return ctx.render(request, visitor, "task.html", **context)

    @router.get("/tasks/{task_id}/runs", include_in_schema=False)
    async def task_runs(
        request: Request, task_id: int, visitor: Annotated[Visitor, Depends(viewer)]
    ) -> Response:
        task = await tasks.get(task_id)
        runs = await tasks.list_runs(task_id, limit=RECENT_TASK_RUNS)
        return ctx.render(request, visitor, "_task_runs.html", task=task, task_runs=runs)

    @router.post("/tasks/{task_id}", include_in_schema=False)
    async def save(
        request: Request, task_id: int, visitor: Annotated[Visitor, Depends(admin)]
    ) -> Response:
        previous = await tasks.get(task_id)
        job = await services.store.get_job(previous.job_id)
        values = read_values(await request.form(), job_parameter_names(job.parameters))
        try:
            changes = task_data(task_of(values, previous=previous))
            await tasks.edit(task_id, changes, actor=visitor.actor)
        except TaskDefinitionError as exc:
            context = await editor_context(previous, values, error=exc)
            return ctx.render(request, visitor, "task.html", status_code=422, **context)
        return ctx.redirect(request, visitor, f"/tasks/{task_id}?notice=saved")

    @router.post("/tasks/{task_id}/delete", include_in_schema=False)
    async def delete(
        request: Request, task_id: int, visitor: Annotated[Visitor, Depends(admin)]
    ) -> Response:
        task = await tasks.get(task_id)
        try:
            await tasks.delete(task_id, actor=visitor.actor)
        except ConflictError as exc:
            context = await editor_context(task, values_of(task), error=exc)
            return ctx.render(request, visitor, "task.html", status_code=409, **context)
        return ctx.redirect(request, visitor, "/tasks?notice=deleted")

    async def _pause(request: Request, task_id: int, visitor: Visitor, paused: bool) -> Response:
        if paused:
            await tasks.pause(task_id, actor=visitor.actor)
        else:
            await tasks.resume(task_id, actor=visitor.actor)
        notice = "paused" if paused else "resumed"
        back = _first((await request.form()).getlist("back"))
        target = (
            f"/tasks?notice={notice}" if back == "list" else f"/tasks/{task_id}?notice={notice}"
        )
        return ctx.redirect(request, visitor, target)

    @router.post("/tasks/{task_id}/pause", include_in_schema=False)
    async def pause(
        request: Request, task_id: int, visitor: Annotated[Visitor, Depends(operator)]
    ) -> Response:
        return await _pause(request, task_id, visitor, True)

    @router.post("/tasks/{task_id}/resume", include_in_schema=False)
    async def resume(
        request: Request, task_id: int, visitor: Annotated[Visitor, Depends(operator)]
    ) -> Response:
        return await _pause(request, task_id, visitor, False)

    @router.post("/tasks/{task_id}/run-once", include_in_schema=False)
    async def run_once(
        request: Request, task_id: int, visitor: Annotated[Visitor, Depends(operator)]
    ) -> Response:
        task_run = await tasks.run_once(task_id, actor=visitor.actor)
        return ctx.redirect(request, visitor, f"/taskruns/{task_run.id}")

    # ------------------------------------------------------------------ TaskRuns
    @router.get("/taskruns/{task_run_id}", include_in_schema=False)
    async def taskrun_page(
        request: Request, task_run_id: int, visitor: Annotated[Visitor, Depends(viewer)]
    ) -> Response:
        return ctx.render(request, visitor, "taskrun.html", **await taskrun_context(task_run_id))

    @router.get("/taskruns/{task_run_id}/live", include_in_schema=False)
    async def taskrun_live(
        request: Request, task_run_id: int, visitor: Annotated[Visitor, Depends(viewer)]
    ) -> Response:
        context = await taskrun_context(task_run_id)
        return ctx.render(request, visitor, "_taskrun_live.html", **context)

    async def _act(request: Request, task_run_id: int, visitor: Visitor, repair: bool) -> Response:
        action_error: str | None = None
        notice: str | None = None
        try:
            if repair:
                await tasks.repair_run(task_run_id, actor=visitor.actor)
                notice = "Repair requested: the engine reruns the failed tasks of its run."
            else:
                await tasks.cancel_run(task_run_id, actor=visitor.actor)
        except TaskRunTransitionError as exc:
            action_error = exc.message
        if "hx-request" not in request.headers:
            return ctx.redirect(request, visitor, f"/taskruns/{task_run_id}")
        context = await taskrun_context(task_run_id)
        return ctx.render(
            request,
            visitor,
            "_taskrun_live.html",
            notice=notice,
            action_error=action_error,
            **context,
        )

    @router.post("/taskruns/{task_run_id}/cancel", include_in_schema=False)
    async def cancel(
        request: Request, task_run_id: int, visitor: Annotated[Visitor, Depends(operator)]
    ) -> Response:
        return await _act(request, task_run_id, visitor, repair=False)

    @router.post("/taskruns/{task_run_id}/repair", include_in_schema=False)
    async def repair(
        request: Request, task_run_id: int, visitor: Annotated[Visitor, Depends(operator)]
    ) -> Response:
        return await _act(request, task_run_id, visitor, repair=True)

    return router


def _preview_context(schedules: tuple[Schedule, ...], fires: list[FireTime]) -> dict[str, Any]:
    return {
        "schedules": [
            {"position": i, "cron": s.cron, "timezone": s.timezone, "paused": s.paused}
            for i, s in enumerate(schedules)
        ],
        "fires": [
            {
                "at": fire.at,
                "schedule": fire.schedule,
                "timezone": schedules[fire.schedule].timezone,
            }
            for fire in fires
        ],
    }


def _job_of(jobs: Sequence[Job], job_id: object) -> Job | None:
    wanted = str(job_id).strip()
    return next((job for job in jobs if str(job.id) == wanted), None)


def _first(values: list[Any]) -> str:
    return next((v for v in values if isinstance(v, str)), "")
