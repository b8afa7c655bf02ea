"""Platform pages: list, editor (attributes, auth), Test connectivity, Get Pipelines, import."""

from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from polysync.domain.access import Role
from polysync.domain.records import PLATFORM_ATTRIBUTES, Job, NewPlatform, Platform, Run, RunFilter
from polysync.errors import PolysyncError
from polysync.web.context import WebContext
from polysync.web.platform_form import AUTH_FIELDS, PlatformForm
from polysync.web.security import Visitor


def platform_router(ctx: WebContext) -> APIRouter:
    router = ctx.router()
    services = ctx.services
    viewer, operator, admin = (ctx.guard(r) for r in (Role.VIEWER, Role.OPERATOR, Role.ADMIN))

    async def jobs_of(platform: Platform) -> list[Job]:
        return list(await services.store.list_jobs(platform.id))

    async def editor(
        request: Request,
        visitor: Visitor,
        platform: Platform | None,
        form: PlatformForm,
        *,
        status_code: int = 200,
        error: str | None = None,
        saved: bool = False,
        active_runs: Sequence[Run] = (),
    ) -> Response:
        return ctx.render(
            request,
            visitor,
            "platform.html",
            status_code=status_code,
            platform=platform,
            form=form,
            auth_fields=AUTH_FIELDS,
            jobs=await jobs_of(platform) if platform else [],
            error=error,
            saved=saved,
            active_runs=active_runs,
        )

    @router.get("/platforms", include_in_schema=False)
    async def platforms(
        request: Request, visitor: Annotated[Visitor, Depends(viewer)], deleted: str = ""
    ) -> Response:
        items = list(await services.store.list_platforms())
        counts = {p.id: len(await services.store.list_jobs(p.id)) for p in items}
        return ctx.render(
            request, visitor, "platforms.html", platforms=items, counts=counts, deleted=deleted
        )

    @router.get("/platforms/new", include_in_schema=False)
    async def new_platform(
        request: Request, visitor: Annotated[Visitor, Depends(admin)]
    ) -> Response:
        return await editor(request, visitor, None, PlatformForm())

    @router.post("/platforms", include_in_schema=False)
    async def create_platform(
        request: Request, visitor: Annotated[Visitor, Depends(admin)]
    ) -> Response:
        form = PlatformForm.from_form(await request.form())
        if not form.validate():
            return await editor(request, visitor, None, form, status_code=422)
        try:
            platform = await services.add_platform(
                NewPlatform(
                    name=form.name,
                    workspace_url=form.workspace_url,
                    auth=form.auth(),
                    cluster_id=form.cluster_id or None,
                    description=form.description,
                    options={PLATFORM_ATTRIBUTES: form.attribute_map()},
                ),
                actor=visitor.actor,
            )
        except PolysyncError as exc:
            return await editor(request, visitor, None, form, status_code=422, error=exc.message)
        return ctx.redirect(request, visitor, f"/platforms/{platform.id}?saved=1")

    @router.get("/platforms/{platform_id}", include_in_schema=False)
    async def show_platform(
        request: Request,
        platform_id: int,
        visitor: Annotated[Visitor, Depends(viewer)],
        saved: bool = False,
    ) -> Response:
        platform = await services.store.get_platform(platform_id)
        return await editor(
            request, visitor, platform, PlatformForm.from_platform(platform), saved=saved
        )

    @router.post("/platforms/{platform_id}", include_in_schema=False)
    async def update_platform(
        request: Request, platform_id: int, visitor: Annotated[Visitor, Depends(admin)]
    ) -> Response:
        platform = await services.store.get_platform(platform_id)
        form = PlatformForm.from_form(await request.form())
        if not form.validate():
            return await editor(request, visitor, platform, form, status_code=422)
        edited = replace(
            platform,
            name=form.name,
            workspace_url=form.workspace_url,
            auth=form.auth(),
            cluster_id=form.cluster_id or None,
            description=form.description,
            options={**platform.options, PLATFORM_ATTRIBUTES: form.attribute_map()},
        )
        try:
            await services.update_platform(edited, actor=visitor.actor)
        except PolysyncError as exc:
            return await editor(
                request, visitor, platform, form, status_code=422, error=exc.message
            )
        return ctx.redirect(request, visitor, f"/platforms/{platform_id}?saved=1")

    @router.post("/platforms/{platform_id}/delete", include_in_schema=False)
    async def delete_platform(
        request: Request, platform_id: int, visitor: Annotated[Visitor, Depends(admin)]
    ) -> Response:
        """Delete the platform with its jobs and runs (admin; the services refuse while it has
        active runs, and the page says which and what to do)."""
        platform = await services.store.get_platform(platform_id)
        try:
            await services.remove_platform(platform.id, actor=visitor.actor)
        except PolysyncError as exc:
            active = await services.list_runs(RunFilter(platform_id=platform.id, active_only=True))
            return await editor(
                request,
                visitor,
                platform,
                PlatformForm.from_platform(platform),
                status_code=409,
                # The services' refusal names CLI commands; the page links the runs instead.
                error=(
                    f"Not deleted: platform {platform.name!r} has {len(active)} active run(s). "
                    "Cancel them or let them finish, then delete the platform."
                    if active
                    else f"Not deleted: {exc.message}"
                ),
                active_runs=active,
            )
        return ctx.redirect(request, visitor, f"/platforms?deleted={quote(platform.name)}")

    @router.post("/platforms/{platform_id}/test", include_in_schema=False)
    async def test_connectivity(
        request: Request, platform_id: int, visitor: Annotated[Visitor, Depends(operator)]
    ) -> Response:
        platform = await services.store.get_platform(platform_id)
        try:
            report = await services.test_platform(platform.name)
        except PolysyncError as exc:
            return ctx.render(request, visitor, "_connectivity.html", report=None, error=str(exc))
        return ctx.render(request, visitor, "_connectivity.html", report=report, error=None)

    @router.post("/platforms/{platform_id}/pipelines", include_in_schema=False)
    async def get_pipelines(
        request: Request, platform_id: int, visitor: Annotated[Visitor, Depends(operator)]
    ) -> Response:
        platform = await services.store.get_platform(platform_id)
        try:
            _, found = await services.discover(platform.name)
        except PolysyncError as exc:
            return ctx.render(
                request, visitor, "_pipelines.html", platform=platform, found=[], error=str(exc)
            )
        imported = {job.external_id for job in await services.store.list_jobs(platform.id)}
        return ctx.render(
            request,
            visitor,
            "_pipelines.html",
            platform=platform,
            found=found,
            imported=imported,
            error=None,
        )

    @router.post("/platforms/{platform_id}/import", include_in_schema=False)
    async def import_jobs(
        request: Request, platform_id: int, visitor: Annotated[Visitor, Depends(admin)]
    ) -> Response:
        platform = await services.store.get_platform(platform_id)
        form = await request.form()
        import_all = form.get("scope") == "all"
        selected = [v for v in form.getlist("external_id") if isinstance(v, str)]
        if not import_all and not selected:
            return ctx.render(
                request,
                visitor,
                "_import_result.html",
                platform=platform,
                results=[],
                jobs=await jobs_of(platform),
                error="Select at least one job to import, or choose Import all.",
            )
        try:
            _, results = await services.import_jobs(
                platform.name, None if import_all else selected, actor=visitor.actor
            )
        except PolysyncError as exc:
            return ctx.render(
                request,
                visitor,
                "_import_result.html",
                platform=platform,
                results=[],
                jobs=await jobs_of(platform),
                error=str(exc),
            )
        return ctx.render(
            request,
            visitor,
            "_import_result.html",
            platform=platform,
            results=results,
            jobs=await jobs_of(platform),
            error=None,
        )  # also marks the imported rows of Get Pipelines' table "Imported" (out of band)

    return router
