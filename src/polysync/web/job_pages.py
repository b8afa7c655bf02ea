"""Job pages: General, Parameters (edit, Sync Parameters with its diff), Execute Now, activity."""

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from polysync.domain.access import Role
from polysync.domain.models import DataType, Direction, Parameter
from polysync.domain.parameters import describe_diff, user_value
from polysync.domain.records import Job, RunFilter
from polysync.errors import ConfigError, PolysyncError, UsageError
from polysync.web.context import WebContext
from polysync.web.security import Visitor

RECENT_RUNS = 10


def effective_value(parameter: Parameter) -> str:
    """What a run sends unless overridden: the stored value, else the Databricks default (D3)."""
    if parameter.stored_value is not None:
        return parameter.stored_value
    return parameter.default or ""


def job_router(ctx: WebContext) -> APIRouter:
    router = ctx.router()
    services = ctx.services
    viewer, operator = ctx.guard(Role.VIEWER), ctx.guard(Role.OPERATOR)

    async def page_context(job: Job) -> dict[str, Any]:
        platform = await services.store.get_platform(job.platform_id)
        runs = await services.list_runs(RunFilter(job_id=job.id, limit=RECENT_RUNS))
        return {
            "job": job,
            "platform": platform,
            "runs": runs,
            "active": [run for run in runs if not run.is_terminal],
            "effective_value": effective_value,
            "directions": list(Direction),
        }

    def parameters_fragment(request: Request, visitor: Visitor, job: Job, **extra: Any) -> Response:
        context: dict[str, Any] = {
            "job": job,
            "directions": list(Direction),
            "diff_lines": None,
            "row_errors": {},
            "error": None,
            "notice": None,
            "refresh_dialog": True,  # the Execute Now dialog shows the values just saved
        }
        context.update(extra)
        return ctx.render(request, visitor, "_parameters.html", **context)

    @router.get("/jobs", include_in_schema=False)
    async def jobs(request: Request, visitor: Annotated[Visitor, Depends(viewer)]) -> Response:
        items = list(await services.store.list_jobs())
        platforms = {p.id: p for p in await services.store.list_platforms()}
        return ctx.render(request, visitor, "jobs.html", jobs=items, platforms=platforms)

    @router.get("/jobs/{job_id}", include_in_schema=False)
    async def show_job(
        request: Request, job_id: int, visitor: Annotated[Visitor, Depends(viewer)]
    ) -> Response:
        job = await services.store.get_job(job_id)
        return ctx.render(request, visitor, "job.html", **await page_context(job))

    @router.get("/jobs/{job_id}/activity", include_in_schema=False)
    async def activity(
        request: Request, job_id: int, visitor: Annotated[Visitor, Depends(viewer)]
    ) -> Response:
        job = await services.store.get_job(job_id)
        active = await services.list_runs(RunFilter(job_id=job.id, active_only=True))
        return ctx.render(request, visitor, "_activity.html", job=job, active=active)

    @router.post("/jobs/{job_id}/parameters", include_in_schema=False)
    async def save_parameters(
        request: Request, job_id: int, visitor: Annotated[Visitor, Depends(operator)]
    ) -> Response:
        job = await services.store.get_job(job_id)
        form = await request.form()
        edited: list[Parameter] = []
        row_errors: dict[int, str] = {}
        for index, parameter in enumerate(job.parameters):
            if form.get(f"name-{index}") != parameter.name:
                return parameters_fragment(
                    request,
                    visitor,
                    job,
                    error="The parameters changed since this page was loaded (someone synced "
                    "them?). The current ones are shown: make your change again.",
                )
            if not parameter.is_job_level or parameter.reference_only:
                edited.append(parameter)  # reference-only: nothing to set on it
                continue
            direction_text = str(form.get(f"direction-{index}") or "")
            direction = Direction(direction_text) if direction_text in set(Direction) else None
            raw = form.get(f"value-{index}")
            value: str | None = raw if isinstance(raw, str) and raw != "" else None
            if parameter.data_type is DataType.SECRET and value is None:
                value = parameter.stored_value  # a Secret is never sent to the page: blank keeps it
            if value is not None:
                try:
                    user_value(parameter.data_type, value, name=parameter.name)
                except UsageError as exc:
                    row_errors[index] = exc.message
            edited.append(replace(parameter, direction=direction, stored_value=value))
        if row_errors:
            shown = replace(job, parameters=tuple(edited))
            return parameters_fragment(
                request,
                visitor,
                shown,
                row_errors=row_errors,
                error="Nothing was saved: fix the values marked below.",
            )
        try:
            saved = await services.save_job(
                replace(job, parameters=tuple(edited)), actor=visitor.actor
            )
        except UsageError as exc:
            shown = replace(job, parameters=tuple(edited))
            return parameters_fragment(
                request, visitor, shown, error=f"Nothing was saved: {exc.message}"
            )
        return parameters_fragment(request, visitor, saved, notice="Parameters saved.")

    @router.post("/jobs/{job_id}/sync", include_in_schema=False)
    async def sync_parameters(
        request: Request, job_id: int, visitor: Annotated[Visitor, Depends(operator)]
    ) -> Response:
        job = await services.store.get_job(job_id)
        try:
            synced, diff = await services.sync_parameters(job, actor=visitor.actor)
        except PolysyncError as exc:
            return parameters_fragment(request, visitor, job, error=str(exc))
        lines = list(describe_diff(diff)) or ["No change: the parameters match Databricks."]
        return parameters_fragment(request, visitor, synced, diff_lines=lines)

    @router.post("/jobs/{job_id}/execute", include_in_schema=False)
    async def execute(
        request: Request, job_id: int, visitor: Annotated[Visitor, Depends(operator)]
    ) -> Response:
        job = await services.store.get_job(job_id)
        form = await request.form()
        values: dict[str, str] = {}
        overrides: dict[str, str] = {}
        for parameter in job.parameters:
            if not parameter.is_sent:
                continue
            raw = form.get(f"p:{parameter.name}")
            value = raw if isinstance(raw, str) else effective_value(parameter)
            if parameter.data_type is DataType.SECRET and not value:
                value = effective_value(parameter)  # never prefilled on the page: blank keeps it
            values[parameter.name] = value
            if value != effective_value(parameter):
                overrides[parameter.name] = value
        try:
            run = await services.execute(job, overrides, actor=visitor.actor)
        except (UsageError, ConfigError) as exc:  # bad values, or a secret that cannot be read
            return ctx.render(
                request,
                visitor,
                "_execute_form.html",
                status_code=422,
                job=job,
                values=values,
                error=exc.message,
            )
        return ctx.redirect(request, visitor, f"/runs/{run.id}")

    return router
