"""Job pages: General, Parameters (edit, Sync Parameters with its diff), Execute Now, activity."""

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from polysync.domain.access import Role
from polysync.domain.models import DataType, Direction, Parameter
from polysync.domain.parameters import checked_parameter, describe_diff
from polysync.domain.records import Job, RunFilter
from polysync.errors import ConfigError, PolysyncError, UsageError
from polysync.presentation import shown_default, shown_value
from polysync.web.context import WebContext
from polysync.web.security import Visitor

RECENT_RUNS = 10


def prefilled(parameter: Parameter) -> str:
    """What the Execute Now dialog shows for a parameter: what a run sends unless overridden -
    the stored value (a Secret's as its reference), else the Databricks default (D3); never a
    Secret's Databricks default."""
    if parameter.stored_value is not None:
        return shown_value(parameter.data_type, parameter.stored_value) or ""
    if parameter.data_type is DataType.SECRET:
        return ""
    return parameter.default or ""


def same_text(left: str, right: str) -> bool:
    """Equal once line endings are alike: a browser submits a textarea's lines with CRLF."""
    return _lf(left) == _lf(right)


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def run_overrides(parameters: Sequence[Parameter], form: Mapping[str, object]) -> dict[str, str]:
    """The overrides an Execute Now form asks for: only fields whose value differs from what the
    run would send anyway (`prefilled`); a field left as shown, or not sent, is no override."""
    overrides: dict[str, str] = {}
    for parameter in parameters:
        raw = form.get(f"p:{parameter.name}")
        if parameter.is_sent and isinstance(raw, str) and not same_text(raw, prefilled(parameter)):
            overrides[parameter.name] = _lf(raw)
    return overrides


def _helpers() -> dict[str, Any]:
    """What the parameter templates use (the page, and its fragments)."""
    return {
        "directions": list(Direction),
        "data_types": list(DataType),
        "prefilled": prefilled,
        "shown_value": shown_value,
        "shown_default": shown_default,
    }


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
            **_helpers(),
        }

    def parameters_fragment(request: Request, visitor: Visitor, job: Job, **extra: Any) -> Response:
        context: dict[str, Any] = {
            "job": job,
            **_helpers(),
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
            type_text = str(form.get(f"type-{index}") or "")
            data_type = DataType(type_text) if type_text in set(DataType) else parameter.data_type
            raw = form.get(f"value-{index}")
            # A text area submits its lines with CRLF (HTML): kept with LF, as they were shown.
            value: str | None = _lf(raw) if isinstance(raw, str) and raw != "" else None
            if raw is None or (
                value is None
                and parameter.data_type is DataType.SECRET
                and prefilled(parameter) == ""
            ):
                # Not on the form (a read-only Secret), or a Secret not shown (not a reference).
                value = parameter.stored_value
            candidate = replace(
                parameter, data_type=data_type, direction=direction, stored_value=value
            )
            try:
                checked_parameter(parameter, candidate)
            except UsageError as exc:
                row_errors[index] = exc.message
            edited.append(candidate)
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
                replace(job, parameters=tuple(edited)),
                actor=visitor.actor,
                may_choose_secrets=visitor.can(Role.ADMIN),
            )
        except (UsageError, ConfigError) as exc:  # incl. a reference outside the secret scope
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
        values = {k[2:]: v for k, v in form.items() if k.startswith("p:") and isinstance(v, str)}
        overrides = run_overrides(job.parameters, form)
        try:
            run = await services.execute(
                job, overrides, actor=visitor.actor, may_choose_secrets=visitor.can(Role.ADMIN)
            )
        except (UsageError, ConfigError) as exc:  # bad values, or a secret that cannot be read
            return ctx.render(
                request,
                visitor,
                "_execute_form.html",
                status_code=422,
                **_helpers(),
                job=job,
                values=values,
                error=exc.message,
            )
        return ctx.redirect(request, visitor, f"/runs/{run.id}")

    return router
