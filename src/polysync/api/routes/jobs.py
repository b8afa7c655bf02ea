"""Jobs: list and read (viewer); edit, Sync Parameters and Execute Now (operator)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response

from polysync.api.deps import Operator, ServicesDep, Viewer
from polysync.api.problems import Problem
from polysync.api.schemas import ExecuteIn, JobOut, JobUpdate, ParameterUpdate, RunOut, SyncOut
from polysync.domain.access import Actor, Role
from polysync.domain.parameters import Keep, ParameterEdit, apply_edits

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]
MAX_IDEMPOTENCY_KEY_CHARS = 255
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
    """Edit the name, description, and each parameter's Data Type, Direction and stored value. A
    stored value must fit the parameter's Data Type (D2) and is kept as typed (trimmed unless
    String); a Secret's is a secret reference (`env:NAME`, `file:PATH`), which only an admin may
    set. A Data Type you set is kept by Sync Parameters (D9)."""
    job = await services.store.get_job(job_id)
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.description is not None:
        changes["description"] = body.description
    if body.parameters is not None:
        changes["parameters"] = apply_edits(job, _edits(body.parameters))
    if not changes:
        return JobOut.of(job)
    saved = await services.save_job(
        replace(job, **changes),
        actor=Actor.of_key(caller),
        may_choose_secrets=caller.role.allows(Role.ADMIN),
    )
    return JobOut.of(saved)


def _edits(updates: list[ParameterUpdate]) -> list[ParameterEdit]:
    """The request's edits; a field left out of an update is kept (`Keep`)."""
    edits = []
    for update in updates:
        fields = update.model_fields_set
        edits.append(
            ParameterEdit(
                update.name,
                task_key=update.task_key if "task_key" in fields else Keep.KEEP,
                data_type=update.data_type if update.data_type is not None else Keep.KEEP,
                direction=update.direction if "direction" in fields else Keep.KEEP,
                stored_value=update.stored_value if "stored_value" in fields else Keep.KEEP,
            )
        )
    return edits


@router.post("/{job_id}/sync-parameters", response_model=SyncOut, responses=_ERRORS)
async def sync_parameters(job_id: JobId, services: ServicesDep, caller: Operator) -> SyncOut:
    """Re-read the job from Databricks and reconcile its parameters (D9); returns the diff."""
    job = await services.store.get_job(job_id)
    saved, diff = await services.sync_parameters(job, actor=Actor.of_key(caller))
    return SyncOut.of(saved, diff)


@router.post("/{job_id}/runs", status_code=201, response_model=RunOut, responses=_ERRORS)
async def execute_now(
    job_id: JobId,
    body: ExecuteIn,
    services: ServicesDep,
    caller: Operator,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=MAX_IDEMPOTENCY_KEY_CHARS,
            pattern=r"^[\x21-\x7e]+$",
            description="Optional: the same key with the same body answers the run it made "
            "(200, `Idempotent-Replayed: true`) instead of starting another; with another body "
            "409.",
        ),
    ] = None,
) -> RunOut:
    """Execute Now: validates the overrides and the External Id (D2-D4, the job type's rules)
    before any API call, commits the run, starts
    it; watch it at `/api/v1/runs/{id}/events`."""
    job = await services.store.get_job(job_id)
    actor = Actor.of_key(caller)
    may_choose_secrets = caller.role.allows(Role.ADMIN)
    if idempotency_key is None:
        run = await services.execute(
            job, body.parameters, actor=actor, may_choose_secrets=may_choose_secrets
        )
    else:
        run, replayed = await services.execute_once(
            job,
            body.parameters,
            idempotency_key,
            actor=actor,
            may_choose_secrets=may_choose_secrets,
        )
        if replayed:
            response.status_code = 200
            response.headers["Idempotent-Replayed"] = "true"
    run, job, events = await services.run_details(run.id)
    response.headers["Location"] = f"/api/v1/runs/{run.id}"
    return RunOut.of_details(run, job, events)
