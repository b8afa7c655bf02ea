"""Sign-in with an API key, sign-out and the static files."""

import math
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, Response

from polysync.api.deps import source_address
from polysync.domain.access import Role
from polysync.domain.limits import replace_unencodable
from polysync.web.context import STATIC_DIR, WebContext
from polysync.web.security import Visitor

_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


DEFAULT_NEXT = "/runs"
# Browsers drop tabs and line breaks from URLs and read a backslash as a slash (WHATWG URL), so
# `/\t/host` and `/\\host` both mean `//host`: another site. The check sees what they would.
_DROPPED_BY_BROWSERS = re.compile(r"[\x00-\x1f\x7f]")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site, else DEFAULT_NEXT.

    Control characters are removed and backslashes become slashes first, as a browser would read
    them; what remains must start with one `/` and have no scheme and no host, so `//evil`,
    `/\t/evil`, `/\\evil`, `https://evil` and `javascript:...` all go to DEFAULT_NEXT.
    """
    if not target:
        return DEFAULT_NEXT
    cleaned = _DROPPED_BY_BROWSERS.sub("", target).replace("\\", "/")
    if not cleaned.startswith("/") or cleaned.startswith("//"):
        return DEFAULT_NEXT
    parts = urlsplit(cleaned)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    # A Location header carries ASCII only: other characters percent-encoded as UTF-8 (text
    # with no UTF-8 form first becomes U+FFFD), never a 500 for a hostile link.
    return quote(replace_unencodable(cleaned), safe="/?#&=%:@!$'()*+,;~-._")


def _static_file(folder: Path, name: str) -> FileResponse:
    path = folder / name
    if "/" in name or path.suffix not in _STATIC_TYPES or not path.is_file():
        raise HTTPException(status_code=404, detail="No such file.")
    return FileResponse(
        path,
        media_type=_STATIC_TYPES[path.suffix],
        headers={"Cache-Control": "public, max-age=3600"},
    )


def auth_router(ctx: WebContext) -> APIRouter:
    router = ctx.router()
    viewer = ctx.guard(Role.VIEWER)

    @router.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        return _static_file(STATIC_DIR, name)

    @router.get("/static/vendor/{name}", include_in_schema=False)
    async def vendored(name: str) -> FileResponse:
        """Third-party scripts served from the package (NOTICE lists them), never a CDN."""
        return _static_file(STATIC_DIR / "vendor", name)

    @router.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        """The icon browsers ask for on their own, served from the package (no 404)."""
        return FileResponse(
            STATIC_DIR / "favicon.svg",
            media_type=_STATIC_TYPES[".svg"],
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @router.get("/sign-in", include_in_schema=False)
    async def sign_in_page(request: Request, next: str | None = None) -> Response:
        visitor = await ctx.sessions.visitor(request)
        if visitor.session is not None:
            return ctx.redirect(request, visitor, safe_next(next))
        return ctx.render(request, visitor, "sign_in.html", next=safe_next(next), error=None)

    @router.post("/sign-in", include_in_schema=False)
    async def sign_in(
        request: Request,
        api_key: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/runs",
    ) -> Response:
        visitor = await ctx.sessions.visitor(request)
        await ctx.sessions.check_csrf(request, visitor)
        # A valid key signs in whatever others did from the same address (see `authenticate`).
        signed_in = await ctx.sessions.sign_in(api_key.strip())
        if signed_in is not None:
            return ctx.redirect(request, signed_in, safe_next(next))
        source = source_address(request)
        wait_s = ctx.limiter.retry_after_s(source)
        if wait_s is not None:
            ctx.limiter.refused(source, "sign-in", wait_s)
            return ctx.render(
                request,
                visitor,
                "sign_in.html",
                status_code=429,
                headers={"Retry-After": str(math.ceil(wait_s))},
                next=safe_next(next),
                error=f"Too many failed sign-ins from your address: try again in "
                f"{math.ceil(wait_s)} s.",
            )
        ctx.limiter.failed(source, "sign-in")
        return ctx.render(
            request,
            visitor,
            "sign_in.html",
            status_code=401,
            next=safe_next(next),
            error="That API key is not valid. Check it, or ask an administrator for one.",
        )

    @router.post("/sign-out", include_in_schema=False)
    async def sign_out(request: Request, visitor: Annotated[Visitor, Depends(viewer)]) -> Response:
        return ctx.redirect(request, ctx.sessions.sign_out(visitor), "/sign-in")

    return router
