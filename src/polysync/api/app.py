"""The API application: `create_api_app(services)`; the web UI mounts its router on the same app."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

import polysync
from polysync.api.deps import ApiContext, ApiSettings, api_key_admits
from polysync.api.middleware import RequestGuard, SecurityHeaders
from polysync.api.ports import ApiStore
from polysync.api.problems import JSONResponse, install_problem_handlers
from polysync.api.routes import (
    audit,
    contention_profiles,
    docs,
    jobs,
    platforms,
    runs,
    system,
    taskruns,
    tasks,
    vaults,
)
from polysync.api.routes.docs import docs_page
from polysync.api.throttle import FailureLimiter
from polysync.errors import ConfigError
from polysync.services import Services

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

DESCRIPTION = """\
Polysync for Azure Databricks: platforms, imported jobs, runs.

Every route except `/health` needs an API key (`polysync apikey create --role ...`), sent as
`Authorization: Bearer psk_...` or `X-API-Key: psk_...`. Roles: **viewer** reads;
**operator** also executes, cancels, syncs parameters, edits jobs, tests platforms and lists
their pipelines, runs Tasks once, pauses and resumes them, cancels and repairs TaskRuns;
**admin** also creates, edits and deletes platforms and Tasks and imports jobs. Errors are
RFC 7807 problem details (`application/problem+json`).
"""


def create_api_app(
    services: Services,
    *,
    settings: ApiSettings | None = None,
    lifespan: Lifespan | None = None,
) -> FastAPI:
    """The REST API over `services` (OpenAPI at /openapi.json, docs at /docs)."""
    store = services.store
    if not isinstance(store, ApiStore):
        raise ConfigError("The API needs a store with API keys (SqlStore).")
    app = FastAPI(
        title="Polysync API",
        version=polysync.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JSONResponse,
        # /docs is served from the package (routes/docs.py): FastAPI's pages load a CDN.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.polysync_api = ApiContext(
        services, store, settings or ApiSettings(), FailureLimiter(services.clock)
    )
    install_problem_handlers(app)
    # Outermost last: the security headers also go on a 413 from the body cap.
    app.add_middleware(RequestGuard, clock=services.clock, admits=api_key_admits(store))
    app.add_middleware(SecurityHeaders)
    for module in (
        platforms,
        vaults,
        jobs,
        runs,
        tasks,
        taskruns,
        contention_profiles,
        audit,
        system,
        docs,
    ):
        app.include_router(module.router)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return docs_page(app.title, app.openapi_url or "/openapi.json")

    return app
