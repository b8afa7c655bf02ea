"""Contention profiles (D14): viewers read them; admins create, edit, link and delete them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from polysync.api.deps import Admin, ServicesDep, Viewer
from polysync.api.problems import Problem
from polysync.api.profile_schemas import (
    CounterOut,
    ProfileIn,
    ProfileLinks,
    ProfileOut,
    ProfileUpdate,
)
from polysync.domain.access import Actor
from polysync.profiles import counter_fields

router = APIRouter(prefix="/api/v1/contention-profiles", tags=["contention profiles"])
ProfileId = Annotated[int, Path(ge=1, le=2**63 - 1)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 409, 422, 503)
}


@router.get("", response_model=list[ProfileOut], responses=_ERRORS)
async def list_profiles(services: ServicesDep, caller: Viewer) -> list[ProfileOut]:
    return [ProfileOut.of(p) for p in await services.profiles.all()]


@router.post("", status_code=201, response_model=ProfileOut, responses=_ERRORS)
async def create_profile(
    body: ProfileIn, services: ServicesDep, caller: Admin, response: Response
) -> ProfileOut:
    fields = body.model_dump(exclude={"platforms", "tasks"}, exclude_none=True)
    profile = await services.profiles.create(
        fields, platforms=body.platforms, tasks=body.tasks, actor=Actor.of_key(caller)
    )
    response.headers["Location"] = f"{router.prefix}/{profile.id}"
    return ProfileOut.of(profile)


@router.get("/{profile_id}", response_model=ProfileOut, responses=_ERRORS)
async def read_profile(profile_id: ProfileId, services: ServicesDep, caller: Viewer) -> ProfileOut:
    return ProfileOut.of(await services.profiles.get(profile_id))


@router.get("/{profile_id}/usage", response_model=list[CounterOut], responses=_ERRORS)
async def read_usage(
    profile_id: ProfileId, services: ServicesDep, caller: Viewer
) -> list[CounterOut]:
    """What each counter holds now: running (or started in the window) and waiting runs."""
    profile = await services.profiles.get(profile_id)
    return [CounterOut(**counter_fields(c)) for c in await services.profiles.usage(profile)]


@router.patch("/{profile_id}", response_model=ProfileOut, responses=_ERRORS)
async def update_profile(
    profile_id: ProfileId, body: ProfileUpdate, services: ServicesDep, caller: Admin
) -> ProfileOut:
    """Change the fields given; the type cannot change. Applies at once, no restart."""
    changes = body.model_dump(exclude_unset=True)
    return ProfileOut.of(
        await services.profiles.edit(profile_id, changes, actor=Actor.of_key(caller))
    )


@router.delete("/{profile_id}", status_code=204, responses=_ERRORS)
async def delete_profile(profile_id: ProfileId, services: ServicesDep, caller: Admin) -> Response:
    await services.profiles.delete(profile_id, actor=Actor.of_key(caller))
    return Response(status_code=204)


@router.post("/{profile_id}/links", response_model=ProfileOut, responses=_ERRORS)
async def link(
    profile_id: ProfileId, body: ProfileLinks, services: ServicesDep, caller: Admin
) -> ProfileOut:
    """Link platforms (ids or names) and Tasks (ids)."""
    profile = await services.profiles.link(
        profile_id, platforms=body.platforms, tasks=body.tasks, actor=Actor.of_key(caller)
    )
    return ProfileOut.of(profile)


@router.post("/{profile_id}/unlinks", response_model=ProfileOut, responses=_ERRORS)
async def unlink(
    profile_id: ProfileId, body: ProfileLinks, services: ServicesDep, caller: Admin
) -> ProfileOut:
    """Unlink platforms and Tasks."""
    profile = await services.profiles.link(
        profile_id,
        platforms=body.platforms,
        tasks=body.tasks,
        unlink=True,
        actor=Actor.of_key(caller),
    )
    return ProfileOut.of(profile)
