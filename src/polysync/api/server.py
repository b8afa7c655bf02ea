"""`polysync serve`: the API, the web UI and the engine in one process, on one Services."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import signal
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI

from polysync.api.app import create_api_app
from polysync.api.deps import ApiSettings
from polysync.api.keys import Authenticator
from polysync.config import Settings
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
    authenticate = Authenticator(app.state.polysync_api.store)
    takes_authenticator = len(inspect.signature(factory).parameters) > 1
    router = factory(services, authenticate) if takes_authenticator else factory(services)
    app.include_router(router)
    return True


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
        config = uvicorn.Config(
            app, host=host, port=port, log_level=settings.log_level.lower(), lifespan="on"
        )
        await uvicorn.Server(config).serve()
    finally:
        await services.aclose()
