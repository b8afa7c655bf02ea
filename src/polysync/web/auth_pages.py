"""Sign-in with an API key, sign-out, the home page and the static files."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, Response

from polysync.domain.access import Role
from polysync.web.context import STATIC_DIR, WebContext
from polysync.web.security import Visitor

_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def _safe_next(target: str | None) -> str:
    """Only a local path: `next` must not send a signed-in user to another site."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/runs"


def auth_router(ctx: WebContext) -> APIRouter:
    router = ctx.router()
    viewer = ctx.guard(Role.VIEWER)

    @router.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        path = STATIC_DIR / name
        if "/" in name or path.suffix not in _STATIC_TYPES or not path.is_file():
            raise HTTPException(status_code=404, detail="No such file.")
        return FileResponse(
            path,
            media_type=_STATIC_TYPES[path.suffix],
            headers={"Cache-Control": "public, max-age=3600"},
        )

    @router.get("/", include_in_schema=False)
    async def home(visitor: Annotated[Visitor, Depends(viewer)]) -> Response:
        return Response(status_code=303, headers={"Location": "/runs"})

    @router.get("/sign-in", include_in_schema=False)
    async def sign_in_page(request: Request, next: str | None = None) -> Response:
        visitor = await ctx.sessions.visitor(request)
        if visitor.session is not None:
            return ctx.redirect(request, visitor, _safe_next(next))
        return ctx.render(request, visitor, "sign_in.html", next=_safe_next(next), error=None)

    @router.post("/sign-in", include_in_schema=False)
    async def sign_in(
        request: Request,
        api_key: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/runs",
    ) -> Response:
        visitor = await ctx.sessions.visitor(request)
        await ctx.sessions.check_csrf(request, visitor)
        signed_in = await ctx.sessions.sign_in(api_key.strip())
        if signed_in is None:
            return ctx.render(
                request,
                visitor,
                "sign_in.html",
                status_code=401,
                next=_safe_next(next),
                error="That API key is not valid. Check it, or ask an administrator for one.",
            )
        return ctx.redirect(request, signed_in, _safe_next(next))

    @router.post("/sign-out", include_in_schema=False)
    async def sign_out(request: Request, visitor: Annotated[Visitor, Depends(viewer)]) -> Response:
        return ctx.redirect(request, ctx.sessions.sign_out(visitor), "/sign-in")

    return router
