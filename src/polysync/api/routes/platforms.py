"""Platforms: CRUD (admin), Test connectivity and Get Pipelines (operator), import (admin)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from polysync.api.deps import Admin, Operator, ServicesDep, Viewer
from polysync.api.problems import Problem
from polysync.api.schemas import (
    ConnectivityOut,
    DiscoveredJobOut,
    ImportIn,
    ImportOut,
    ImportOutcome,
    PlatformIn,
    PlatformOut,
    PlatformUpdate,
)
from polysync.domain.access import Actor
from polysync.domain.records import NewPlatform, Platform
from polysync.errors import UsageError

router = APIRouter(prefix="/api/v1/platforms", tags=["platforms"])
PlatformId = Annotated[int, Path(ge=1, le=2**63 - 1)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 409, 422, 502, 503)
}


@router.get("", response_model=list[PlatformOut], responses=_ERRORS)
async def list_platforms(services: ServicesDep, caller: Viewer) -> list[PlatformOut]:
    return [PlatformOut.of(p) for p in await services.store.list_platforms()]


@router.post("", status_code=201, response_model=PlatformOut, responses=_ERRORS)
async def create_platform(
    body: PlatformIn, services: ServicesDep, caller: Admin, response: Response
) -> PlatformOut:
    platform = await services.add_platform(
        NewPlatform(
            name=body.name,
            workspace_url=body.workspace_url,
            auth=body.auth,
            cluster_id=body.cluster_id,
            description=body.description,
            options=body.options,
        ),
        actor=Actor.of_key(caller),
    )
    response.headers["Location"] = f"{router.prefix}/{platform.id}"
    return PlatformOut.of(platform)


@router.get("/{platform_id}", response_model=PlatformOut, responses=_ERRORS)
async def read_platform(
    platform_id: PlatformId, services: ServicesDep, caller: Viewer
) -> PlatformOut:
    return PlatformOut.of(await services.store.get_platform(platform_id))


@router.patch("/{platform_id}", response_model=PlatformOut, responses=_ERRORS)
async def update_platform(
    platform_id: PlatformId, body: PlatformUpdate, services: ServicesDep, caller: Admin
) -> PlatformOut:
    platform = await services.store.get_platform(platform_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("name") is None:
        changes.pop("name", None)
    for required in ("workspace_url", "auth", "description", "options"):
        if required in changes and changes[required] is None:
            raise UsageError(f"{required} cannot be null; leave it out to keep it.")
    updated: Platform = replace(platform, **changes)
    # Refuses a bad URL, auth or option, or one outside the connection policy, as create does.
    return PlatformOut.of(await services.update_platform(updated, actor=Actor.of_key(caller)))


@router.delete("/{platform_id}", status_code=204, responses=_ERRORS)
async def delete_platform(
    platform_id: PlatformId, services: ServicesDep, caller: Admin
) -> Response:
    # A platform with active runs is refused by services (ConflictError: 409).
    await services.remove_platform(platform_id, actor=Actor.of_key(caller))
    return Response(status_code=204)


@router.post("/{platform_id}/test", response_model=ConnectivityOut, responses=_ERRORS)
async def test_connectivity(
    platform_id: PlatformId, services: ServicesDep, caller: Operator
) -> ConnectivityOut:
    """Test connectivity: authenticate and list one job; a refusal answers 502 with the reason."""
    platform = await services.store.get_platform(platform_id)
    report = await services.test_platform(platform.name)
    return ConnectivityOut(
        ok=True,
        workspace_url=report.workspace_url,
        auth_method=report.auth_method,
        principal=report.principal,
        workspace_id=report.workspace_id,
        api_version=report.api_version,
        jobs_visible=report.jobs_visible,
    )


@router.get("/{platform_id}/pipelines", response_model=list[DiscoveredJobOut], responses=_ERRORS)
async def get_pipelines(
    platform_id: PlatformId, services: ServicesDep, caller: Operator
) -> list[DiscoveredJobOut]:
    """Get Pipelines: every job of the workspace, classified (D5), with what is imported."""
    platform = await services.store.get_platform(platform_id)
    _, discovered = await services.discover(platform.name)
    imported = {j.external_id: j.id for j in await services.store.list_jobs(platform.id)}
    return [DiscoveredJobOut.of(job, imported) for job in discovered]


@router.post("/{platform_id}/import", response_model=ImportOut, responses=_ERRORS)
async def import_jobs(
    platform_id: PlatformId, body: ImportIn, services: ServicesDep, caller: Admin
) -> ImportOut:
    """Import the selected External Ids, or all; re-importing keeps the user's settings."""
    if body.all == (body.external_ids is not None):
        raise UsageError("Give either `external_ids` (a list) or `all: true`, not both or neither.")
    if body.external_ids is not None and not body.external_ids:
        raise UsageError("`external_ids` is empty: list at least one External Id.")
    platform = await services.store.get_platform(platform_id)
    _, results = await services.import_jobs(
        platform.name, body.external_ids, actor=Actor.of_key(caller)
    )
    outcomes = [
        ImportOutcome(
            external_id=r.external_id,
            job_id=r.job.id if r.job else None,
            created=r.created,
            error=str(r.error) if r.error else None,
        )
        for r in results
    ]
    failed = sum(1 for o in outcomes if o.error)
    return ImportOut(imported=len(outcomes) - failed, failed=failed, results=outcomes)
