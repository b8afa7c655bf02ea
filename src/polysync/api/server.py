"""`polysync serve`: the API, the web UI and the engine in one process, on one Services."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI

from polysync.api.app import create_api_app
from polysync.api.deps import ApiSettings
from polysync.api.keys import Authenticator
from polysync.config import Settings
from polysync.databricks.policy import AZURE_DATABRICKS_HOSTS
from polysync.services import Services

log = logging.getLogger(__name__)


def create_server_app(
    services: Services, *, settings: ApiSettings | None = None, run_engine: bool = True
) -> FastAPI:
    """The API with the engine in its lifespan, and the web UI if `polysync.web` provides one."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not run_engine:
            yield
            return
        stop = asyncio.Event()
        # Supervised: restarted (the reason logged) if it ever crashes; /health reports it.
        task = asyncio.create_task(services.engine.run_supervised(stop), name="polysync-engine")
        try:
            yield
        finally:
            stop.set()
            await task

    app = create_api_app(services, settings=settings, lifespan=lifespan)
    include_web_router(app, services)
    return app


def include_web_router(app: FastAPI, services: Services) -> bool:
    """Mount the web UI's router when `polysync.web.create_web_router` exists; True if mounted."""
    try:
        web = importlib.import_module("polysync.web")
    except ImportError:
        return False
    factory = getattr(web, "create_web_router", None)
    if factory is None:
        return False
    context = app.state.polysync_api
    authenticate = Authenticator(context.store)
    # The web UI shares the API's failure limiter: guessing keys at /sign-in counts as at /api.
    app.include_router(factory(services, authenticate, limiter=context.limiter))
    return True


def server_settings(settings: Settings, *, allow_insecure_http: bool = False) -> Settings:
    """The settings `serve` runs with: the workspace host allow-list defaults to
    `*.azuredatabricks.net` (loopback is always allowed), and `--allow-insecure-http` is applied.
    """
    updates: dict[str, object] = {}
    if settings.workspace_hosts is None:
        updates["workspace_hosts"] = ",".join(AZURE_DATABRICKS_HOSTS)
    if allow_insecure_http:
        updates["allow_insecure_http"] = True
    return settings.model_copy(update=updates)


def security_warnings(settings: Settings) -> list[str]:
    """What `serve` warns about at start-up: settings that trust platform editors more than a
    shared server should (docs/security.md)."""
    warnings: list[str] = []
    if not settings.secret_env_prefix:
        warnings.append(
            "secret references may read ANY environment variable of this process: set "
            "POLYSYNC_SECRET_ENV_PREFIX (e.g. POLYSYNC_SECRET_) to limit what `env:` can reach."
        )
    if settings.secrets_dir is None:
        warnings.append(
            "secret references may read ANY file this process can read: set "
            "POLYSYNC_SECRETS_DIR to the directory that holds the secret files."
        )
    if settings.allow_insecure_http:
        warnings.append(
            "--allow-insecure-http: platforms may send their credentials over plain http:// to "
            "hosts other than loopback."
        )
    return warnings


def uvicorn_config(app: FastAPI, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """How `serve` runs uvicorn. Forwarded headers are believed only from `trusted_proxies`:
    uvicorn's own default trusts 127.0.0.1 (and $FORWARDED_ALLOW_IPS), which would let any
    local client choose its address in the logs and in the failure counts (M1)."""
    trusted = [part.strip() for part in (settings.trusted_proxies or "").split(",") if part.strip()]
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        lifespan="on",
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or [],
    )


async def serve(settings: Settings, host: str, port: int) -> None:
    """Open Services (waiting while the database cannot be reached), serve API + web + engine
    on host:port until interrupted, then close."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):  # uvicorn installs its own once serving
        loop.add_signal_handler(signum, stop.set)
    try:
        services = await Services.open_when_reachable(settings, stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if services is None:
        return
    try:
        app = create_server_app(services)
        await uvicorn.Server(uvicorn_config(app, settings, host, port)).serve()
    finally:
        await services.aclose()
