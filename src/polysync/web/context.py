"""What every page handler shares: the services, the sessions, the templates and the guards."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from polysync.api.throttle import FailureLimiter
from polysync.domain.access import Role
from polysync.domain.limits import http_url, replace_unencodable
from polysync.domain.models import RunStatus
from polysync.errors import NotFoundError
from polysync.presentation import (
    AUTH_LABELS,
    MASK,
    counts_text,
    duration_text,
    short_label,
    utc_time_text,
)
from polysync.services import Services
from polysync.web.security import CSRF_FIELD, CSRF_HEADER, Sessions, SignInRequired, Visitor

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
LIVE_POLL_S = 2


def format_when(value: datetime | None) -> str:
    return utc_time_text(value)


def format_duration_ms(value: int | float | None) -> str:
    return duration_text(value)


def status_class(status: RunStatus | str) -> str:
    return f"status-{str(getattr(status, 'value', status)).lower()}"


def template_environment() -> Environment:
    """The Jinja2 environment of every page: autoescaping, and the filters and globals of
    `polysync.presentation` (times, durations, status classes, labels, MASK)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = format_when
    env.filters["duration"] = format_duration_ms
    env.filters["status_class"] = status_class
    env.filters["job_type_label"] = short_label
    env.filters["job_type_counts"] = lambda kinds: counts_text(kinds, short_label)
    # Links from a workspace (stored before D7's host check too): only http(s) becomes an href.
    env.filters["http_url"] = http_url
    env.globals.update(
        Role=Role,
        RunStatus=RunStatus,
        AUTH_LABELS=AUTH_LABELS,
        CSRF_FIELD=CSRF_FIELD,
        CSRF_HEADER=CSRF_HEADER,
        LIVE_POLL_S=LIVE_POLL_S,
        MASK=MASK,
    )
    return env


@dataclass(frozen=True, slots=True)
class WebContext:
    services: Services
    sessions: Sessions
    env: Environment
    limiter: FailureLimiter

    @classmethod
    def create(cls, services: Services, sessions: Sessions, limiter: FailureLimiter) -> WebContext:
        return cls(services, sessions, template_environment(), limiter)

    def router(self) -> APIRouter:
        """A router whose routes render errors themselves (see `web_route_class`)."""
        return APIRouter(route_class=web_route_class(self))

    def render(
        self,
        request: Request,
        visitor: Visitor,
        template: str,
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """A page or an htmx fragment; (re)writes the session cookie when it changed."""
        html = self.env.get_template(template).render(
            request=request,
            visitor=visitor,
            csrf=visitor.csrf,
            can_operate=visitor.can(Role.OPERATOR),
            can_admin=visitor.can(Role.ADMIN),
            **context,
        )
        # A lone surrogate (in a row stored before the store cleaned text) cannot be encoded.
        response = HTMLResponse(replace_unencodable(html), status_code=status_code, headers=headers)
        self.sessions.set_cookie(request, response, visitor)
        return response

    def redirect(self, request: Request, visitor: Visitor, url: str) -> Response:
        """After a POST: a 303 for a plain form, HX-Redirect for htmx."""
        if "hx-request" in request.headers:
            response = Response(status_code=204, headers={"HX-Redirect": url})
        else:
            response = Response(status_code=303, headers={"Location": url})
        self.sessions.set_cookie(request, response, visitor)
        return response

    def guard(self, role: Role) -> Callable[[Request], Awaitable[Visitor]]:
        """A dependency: a signed-in visitor with at least `role`; a POST must carry its CSRF
        token. Enforced here on the server whatever the page showed."""

        async def dependency(request: Request) -> Visitor:
            visitor = await self.sessions.visitor(request)
            if visitor.session is None:
                raise SignInRequired(request)
            if request.method != "GET":
                await self.sessions.check_csrf(request, visitor)
            if not visitor.can(role):
                raise HTTPException(
                    status_code=403,
                    detail=f"This needs the {role.value} role; your API key has the "
                    f"{visitor.session.role.value} role.",
                )
            return visitor

        return dependency

    async def error_response(
        self, request: Request, status_code: int, message: str, headers: dict[str, str] | None
    ) -> Response:
        """An HTTP error as HTML: the alert alone for htmx, else a page; redirects as they are."""
        if 300 <= status_code < 400:
            return Response(status_code=status_code, headers=headers)
        visitor = await self.sessions.visitor(request)
        template = "_error.html" if "hx-request" in request.headers else "error.html"
        return self.render(
            request,
            visitor,
            template,
            status_code=status_code,
            headers=headers,
            status=status_code,
            message=message,
        )


def web_route_class(ctx: WebContext) -> type[APIRoute]:
    class WebRoute(APIRoute):
        """Renders errors as HTML itself, so pages look the same whatever the host app's handlers."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def web_handler(request: Request) -> Response:
                try:
                    return await handler(request)
                except HTTPException as exc:
                    return await ctx.error_response(
                        request, exc.status_code, str(exc.detail), dict(exc.headers or {})
                    )
                except NotFoundError as exc:
                    return await ctx.error_response(request, 404, exc.message, None)

            return web_handler

    return WebRoute
