"""The web UI's router: sign-in, platforms, jobs, runs and Tasks, server-rendered."""

from __future__ import annotations

from fastapi import APIRouter

from polysync.api.throttle import FailureLimiter
from polysync.services import Services
from polysync.web.auth_pages import auth_router
from polysync.web.context import WebContext
from polysync.web.job_pages import job_router
from polysync.web.platform_pages import platform_router
from polysync.web.profile_pages import profile_router
from polysync.web.run_pages import run_router
from polysync.web.security import Authenticate, Sessions
from polysync.web.task_pages import task_router
from polysync.web.vault_pages import vault_router


def create_web_router(
    services: Services,
    authenticate: Authenticate,
    *,
    secret_key: str | None = None,
    limiter: FailureLimiter | None = None,
) -> APIRouter:
    """The server-rendered UI (mounted at /, static files at /static).

    `authenticate(api_key)` returns the key's principal (with a `role`: viewer, operator or admin)
    or None. `secret_key` signs the session cookie; without it a random key is used, which is
    enough because sessions live in this process anyway. `limiter` counts failed sign-ins per
    address (429 past its limit); the API's own is passed so both count together.
    """
    ctx = WebContext.create(
        services, Sessions(authenticate, secret_key), limiter or FailureLimiter(services.clock)
    )
    router = ctx.router()
    for build in (
        auth_router,
        platform_router,
        vault_router,
        job_router,
        run_router,
        profile_router,
        task_router,
    ):
        router.include_router(build(ctx))
    return router
