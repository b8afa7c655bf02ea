"""Jobs: list and read (viewer); edit, Sync Parameters and Execute Now (operator)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from polysync.api.deps import Operator, ServicesDep, Viewer
from polysync.api.problems import Problem
from polysync.api.schemas import ExecuteIn, JobOut, JobUpdate, ParameterUpdate, RunOut, SyncOut
from polysync.domain.access import Actor
from polysync.domain.models import Parameter
from polysync.domain.parameters import user_value
from polysync.domain.records import Job
from polysync.errors import UnknownParameterError, UsageError

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 409, 422, 502, 503)
}


@router.get("", response_model=list[JobOut], responses=_ERRORS)
async def list_jobs(
    services: ServicesDep,
    caller: Viewer,
    platform_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> list[JobOut]:
    if platform_id is not None:
        await services.store.get_platform(platform_id)  # 404 for an unknown platform
    return [JobOut.of(job) for job in await services.store.list_jobs(platform_id)]


@router.get("/{job_id}", response_model=JobOut, responses=_ERRORS)
async def read_job(job_id: JobId, services: ServicesDep, caller: Viewer) -> JobOut:
    return JobOut.of(await services.store.get_job(job_id))


@router.patch("/{job_id}", response_model=JobOut, responses=_ERRORS)
async def update_job(
    job_id: JobId, body: JobUpdate, services: ServicesDep, caller: Operator
) -> JobOut:
    """Edit the name, description, and each parameter's Direction and stored value; a stored
    value must fit the parameter's Data Type (D2) and is kept in its canonical form."""
    job = await services.store.get_job(job_id)
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.description is not None:
        changes["description"] = body.description
    if body.parameters is not None:
        changes["parameters"] = _edited_parameters(job, body.parameters)
    if not changes:
        return JobOut.of(job)
    return JobOut.of(await services.save_job(replace(job, **changes), actor=Actor.of_key(caller)))


def _edited_parameters(job: Job, edits: list[ParameterUpdate]) -> tuple[Parameter, ...]:
    parameters = list(job.parameters)
    for edit in edits:
        index = _find(job, parameters, edit)
        current = parameters[index]
        fields = edit.model_fields_set
        if "direction" in fields:
            current = replace(current, direction=edit.direction)
        if "stored_value" in fields:
            value = edit.stored_value
            if value is not None:
                value = user_value(current.data_type, value, name=current.name)
            current = replace(current, stored_value=value)
        parameters[index] = current
    return tuple(parameters)


def _find(job: Job, parameters: list[Parameter], edit: ParameterUpdate) -> int:
    matches = [
        i
        for i, p in enumerate(parameters)
        if p.name == edit.name
        and ("task_key" not in edit.model_fields_set or p.task_key == edit.task_key)
    ]
    if len(matches) == 1:
        return matches[0]
    if matches:
        scopes = ", ".join(str(parameters[i].scope) for i in matches)
        raise UsageError(
            f"Parameter {edit.name!r} exists on several scopes ({scopes}) of job {job.id}: "
            "give its `task_key` (null for the job level)."
        )
    names = ", ".join(sorted({p.name for p in parameters})) or "none"
    raise UnknownParameterError(
        f"Job {job.id} ({job.name!r}) has no parameter {edit.name!r}"
        + (f" on task {edit.task_key!r}" if edit.task_key else "")
        + f". Its parameters: {names}. If it was added in Databricks, Sync Parameters first."
    )


@router.post("/{job_id}/sync-parameters", response_model=SyncOut, responses=_ERRORS)
async def sync_parameters(job_id: JobId, services: ServicesDep, caller: Operator) -> SyncOut:
    """Re-read the job from Databricks and reconcile its parameters (D9); returns the diff."""
    job = await services.store.get_job(job_id)
    saved, diff = await services.sync_parameters(job, actor=Actor.of_key(caller))
    return SyncOut.of(saved, diff)


@router.post("/{job_id}/runs", status_code=201, response_model=RunOut, responses=_ERRORS)
async def execute_now(
    job_id: JobId, body: ExecuteIn, services: ServicesDep, caller: Operator, response: Response
) -> RunOut:
    """Execute Now: validates the overrides and the External Id (D2-D4, the job type's rules)
    before any API call, commits the run, starts
    it; watch it at `/api/v1/runs/{id}/events`."""
    job = await services.store.get_job(job_id)
    run = await services.execute(job, body.parameters, actor=Actor.of_key(caller))
    run, job, events = await services.run_details(run.id)
    response.headers["Location"] = f"/api/v1/runs/{run.id}"
    return RunOut.of_details(run, job, events)
