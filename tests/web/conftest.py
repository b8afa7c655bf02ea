"""The web UI served for real: `polysync serve`'s app (API + web UI + engine) in uvicorn in a
thread, over Services on a real SQLite file, against the demo workspace emulated on its own port
at 60x; one real API key per role."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from polysync.api.keys import create_api_key
from polysync.api.server import create_server_app
from polysync.clock import ScaledClock
from polysync.config import Settings
from polysync.emulator.app import create_app
from polysync.emulator.serving import run_in_thread, running_server
from polysync.emulator.spec import load_workspace
from polysync.services import Services

T = TypeVar("T")
TOKEN_VARIABLE = "POLYSYNC_WEB_TEST_TOKEN"
EMULATOR_SPEED = 60.0
CALL_TIMEOUT_S = 30.0
ROLES = ("viewer", "operator", "admin")


@dataclass
class WebServer:
    """The UI at `base_url`; `call` runs a coroutine on the server's loop (its Services live there)."""

    base_url: str
    emulator_url: str
    keys: dict[str, str]  # role -> API key
    services: Services
    loop: asyncio.AbstractEventLoop

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(CALL_TIMEOUT_S)


def build_app(services: Services) -> FastAPI:
    """The server's app without its engine (in-process tests drive runs themselves)."""
    return create_server_app(services, run_engine=False)


@contextlib.contextmanager
def serve_web(tmp: Path) -> Iterator[WebServer]:
    spec = load_workspace("demo")
    emulator_url, stop_emulator = run_in_thread(create_app(spec, clock=ScaledClock(EMULATOR_SPEED)))
    previous = os.environ.get(TOKEN_VARIABLE)
    os.environ[TOKEN_VARIABLE] = spec.auth.tokens[0]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="polysync-web", daemon=True)
    thread.start()
    keys: dict[str, str] = {}
    stack = contextlib.AsyncExitStack()

    async def start() -> tuple[Services, str]:
        settings = Settings(
            home=tmp,
            database_url=f"sqlite+aiosqlite:///{tmp / 'polysync.db'}",
            poll_min_s=0.25,
            poll_max_s=1.0,
            sweep_interval_s=1.0,
        )
        services = await Services.open(settings)
        stack.push_async_callback(services.aclose)
        for role in ROLES:
            _, keys[role] = await create_api_key(services.store, f"{role} (test)", role)
        # The real server app: API + web UI, with the engine in its lifespan.
        base_url = await stack.enter_async_context(running_server(create_server_app(services)))
        return services, base_url

    try:
        services, base_url = asyncio.run_coroutine_threadsafe(start(), loop).result(CALL_TIMEOUT_S)
        yield WebServer(base_url, emulator_url, keys, services, loop)
    finally:
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(CALL_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        stop_emulator()
        if previous is None:
            os.environ.pop(TOKEN_VARIABLE, None)
        else:
            os.environ[TOKEN_VARIABLE] = previous


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    with serve_web(tmp_path_factory.mktemp("web")) as server:
        yield server


# ---------------------------------------------------------------------- a real headless Chromium
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
UI_BOUND_MS = 10_000
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser, web: WebServer) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=web.base_url, viewport={"width": 1366, "height": 900})
    context.set_default_timeout(UI_BOUND_MS)
    expect.set_options(timeout=UI_BOUND_MS)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SCREENSHOTS_VARIABLE = "POLYSYNC_SCREENSHOTS"


def shot(page: Page, name: str, *, full_page: bool = True, directory: Path | None = None) -> bool:
    """Write `docs/screenshots/{name}.png` - only when POLYSYNC_SCREENSHOTS=1, so a test run does
    not rewrite tracked files (docs/web-ui.md, "Screenshots"). Whether it wrote one."""
    if os.environ.get(SCREENSHOTS_VARIABLE) != "1":
        return False
    target = directory or SCREENSHOTS
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=target / f"{name}.png", full_page=full_page)
    return True


def sign_in(page: Page, key: str) -> None:
    page.goto("/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
