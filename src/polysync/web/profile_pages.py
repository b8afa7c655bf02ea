"""Contention profile pages (D14): the list, and the editor (General / Settings); viewers read,
admins edit. Every change goes through `services.profiles`, the one validation path."""

from collections.abc import Mapping, Sequence
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from polysync.domain.access import Role
from polysync.domain.contention import (
    EDITABLE_FIELDS,
    ContentionProfile,
    ExceedAction,
    ProfileScope,
    ProfileType,
    RateAlgorithm,
)
from polysync.domain.records import Platform
from polysync.errors import PolysyncError
from polysync.web.context import WebContext
from polysync.web.security import Visitor

# The form's text fields: every editable field but `enabled`, a checkbox read apart.
FIELDS = tuple(name for name in EDITABLE_FIELDS if name != "enabled")
CHOICES = {
    "type": [(t.value, t.value.capitalize()) for t in ProfileType],
    "scope": [
        (ProfileScope.PER_PLATFORM.value, "Per platform (a counter per linked platform)"),
        (ProfileScope.GLOBAL.value, "Global (one counter for every linked platform)"),
    ],
    "algorithm": [
        (RateAlgorithm.TOKEN_BUCKET.value, "Token bucket (bursts)"),
        (RateAlgorithm.LEAKY_BUCKET.value, "Leaky bucket (smooth)"),
    ],
    "exceed_action": [
        (ExceedAction.QUEUE.value, "Queue"),
        (ExceedAction.REJECT.value, "Reject"),
        (ExceedAction.DEFER.value, "Defer to next window"),
    ],
}


def _values(profile: ContentionProfile | None) -> dict[str, str]:
    """The form's values of a stored profile (text, as a form shows them)."""
    if profile is None:
        return {"type": "concurrency", "scope": "per_platform", "enabled": "true"}
    s = profile.settings
    shown: dict[str, Any] = {
        "name": s.name,
        "type": s.type.value,
        "enabled": "true" if s.enabled else "",
        "scope": s.scope.value,
        "description": s.description,
        "max_concurrent": s.max_concurrent,
        "limit": s.limit,
        "window_s": s.window_s,
        "algorithm": s.algorithm.value,
        "queue_size_limit": s.queue_size_limit,
        "queue_timeout_s": s.queue_timeout_s,
        "exceed_action": s.exceed_action.value,
    }
    return {
        k: "" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
        for k, v in shown.items()
    }


def _from_form(form: Mapping[str, Any], *, new: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        name: value for name in FIELDS if isinstance(value := form.get(name, ""), str)
    }
    fields["enabled"] = "true" if form.get("enabled") else "false"
    if new:
        fields["type"] = form.get("type", "")
    return fields


def profile_router(ctx: WebContext) -> APIRouter:
    router = ctx.router()
    services = ctx.services
    viewer, admin = (ctx.guard(r) for r in (Role.VIEWER, Role.ADMIN))

    async def editor(
        request: Request,
        visitor: Visitor,
        profile: ContentionProfile | None,
        values: Mapping[str, str],
        linked: Sequence[int],
        *,
        status_code: int = 200,
        error: str | None = None,
        saved: bool = False,
    ) -> Response:
        platforms: Sequence[Platform] = await services.store.list_platforms()
        usage = await services.profiles.usage(profile) if profile else []
        return ctx.render(
            request,
            visitor,
            "profile.html",
            status_code=status_code,
            profile=profile,
            values=values,
            linked=set(linked),
            platforms=platforms,
            choices=CHOICES,
            error=error,
            saved=saved,
            usage=usage,
        )

    @router.get("/profiles", include_in_schema=False)
    async def profiles(
        request: Request, visitor: Annotated[Visitor, Depends(viewer)], deleted: str = ""
    ) -> Response:
        names = {p.id: p.name for p in await services.store.list_platforms()}
        return ctx.render(
            request,
            visitor,
            "profiles.html",
            profiles=await services.profiles.all(),
            names=names,
            deleted=deleted,
        )

    @router.get("/profiles/new", include_in_schema=False)
    async def new_profile(
        request: Request, visitor: Annotated[Visitor, Depends(admin)]
    ) -> Response:
        return await editor(request, visitor, None, _values(None), [])

    @router.post("/profiles", include_in_schema=False)
    async def create_profile(
        request: Request, visitor: Annotated[Visitor, Depends(admin)]
    ) -> Response:
        form = await request.form()
        fields = _from_form(form, new=True)
        linked = [int(v) for v in form.getlist("platform") if isinstance(v, str) and v.isdigit()]
        try:
            profile = await services.profiles.create(fields, platforms=linked, actor=visitor.actor)
        except PolysyncError as exc:
            shown = {k: str(v) for k, v in fields.items()}
            return await editor(
                request, visitor, None, shown, linked, status_code=422, error=exc.message
            )
        return ctx.redirect(request, visitor, f"/profiles/{profile.id}?saved=1")

    @router.get("/profiles/{profile_id}", include_in_schema=False)
    async def show_profile(
        request: Request,
        profile_id: int,
        visitor: Annotated[Visitor, Depends(viewer)],
        saved: bool = False,
    ) -> Response:
        profile = await services.profiles.get(profile_id)
        return await editor(
            request, visitor, profile, _values(profile), profile.platform_ids, saved=saved
        )

    @router.post("/profiles/{profile_id}", include_in_schema=False)
    async def update_profile(
        request: Request, profile_id: int, visitor: Annotated[Visitor, Depends(admin)]
    ) -> Response:
        profile = await services.profiles.get(profile_id)
        form = await request.form()
        fields = _from_form(form, new=False)
        linked = {int(v) for v in form.getlist("platform") if isinstance(v, str) and v.isdigit()}
        try:
            await services.profiles.edit(profile.id, fields, actor=visitor.actor)
            added = sorted(linked - set(profile.platform_ids))
            removed = sorted(set(profile.platform_ids) - linked)
            if added:
                await services.profiles.link(profile.id, platforms=added, actor=visitor.actor)
            if removed:
                await services.profiles.link(
                    profile.id, platforms=removed, unlink=True, actor=visitor.actor
                )
        except PolysyncError as exc:
            shown = _values(profile) | {k: str(v) for k, v in fields.items()}
            return await editor(
                request,
                visitor,
                profile,
                shown,
                sorted(linked),
                status_code=422,
                error=exc.message,
            )
        return ctx.redirect(request, visitor, f"/profiles/{profile.id}?saved=1")

    @router.post("/profiles/{profile_id}/delete", include_in_schema=False)
    async def delete_profile(
        request: Request, profile_id: int, visitor: Annotated[Visitor, Depends(admin)]
    ) -> Response:
        profile = await services.profiles.delete(profile_id, actor=visitor.actor)
        return ctx.redirect(request, visitor, f"/profiles?deleted={quote(profile.name)}")

    return router
