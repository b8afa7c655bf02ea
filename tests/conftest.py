"""Shared fixtures: an in-process emulator on manual clocks, reachable over httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from polysync.clock import Clock, ManualClock, SystemClock
from polysync.config import Settings
from polysync.emulator.app import EmulatorApp, create_app
from polysync.emulator.engine import Workspace
from polysync.emulator.serving import InProcessTransport
from polysync.emulator.spec import WorkspaceSpec, load_workspace, parse_workspace
from polysync.engine.engine import EngineSettings
from polysync.engine.polling import PollPolicy
from polysync.services import Services

T = TypeVar("T")
TEST_TOKEN = "dapi-test-token-0123456789abcdef"
TEST_HOST = "https://adb-1234567890123456.7.azuredatabricks.net"


def free_port() -> int:
    """A port free on loopback now, for a server started in a subprocess."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmulatorHarness:
    """An emulator app with its clocks; `client()` talks to it over the ASGI transport."""

    app: EmulatorApp
    clock: ManualClock  # the workspace's time
    real_clock: Clock  # rate limits and token lifetimes (manual in-process, real when served)
    base_url: str
    token: str

    @property
    def state(self) -> Workspace:
        return self.app.emulator.workspace

    def transport(self) -> httpx.ASGITransport:
        # Like httpx's ASGITransport, but a dropped connection surfaces as it would on a socket.
        return InProcessTransport(app=self.app)

    def client(self, *, token: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.AsyncClient(
            transport=self.transport(), base_url=self.base_url, headers=headers, **kwargs
        )

    def advance(self, seconds: float) -> None:
        """Move both clocks: workspace time and the real-time pacing of limits and tokens."""
        self.clock.advance(seconds)
        if isinstance(self.real_clock, ManualClock):
            self.real_clock.advance(seconds)


async def open_services(
    harness: EmulatorHarness, db: Path, engine_settings: EngineSettings | None = None
) -> Services:
    """Services over the SQLite file `db`, talking to the in-process emulator, the engine on the
    harness's manual clocks (default engine settings unless given)."""
    settings = Settings(home=db.parent, database_url=f"sqlite+aiosqlite:///{db}")
    return await Services.open(
        settings,
        clock=harness.clock,
        api_clock=harness.real_clock,
        transport_factory=lambda _platform: harness.transport(),
        engine_settings=engine_settings or EngineSettings(policy=PollPolicy()),
    )


def make_spec(**overrides: Any) -> WorkspaceSpec:
    data: dict[str, Any] = {
        "workspace": {"default_pending_s": 2, "terminating_s": 1, "cancel_s": 1},
        "auth": {"tokens": [TEST_TOKEN]},
    }
    data.update(overrides)
    return parse_workspace(data)


def make_harness(spec: WorkspaceSpec, *, served: bool = False) -> EmulatorHarness:
    """`served=True` when real clients talk over a socket: their retries wait real seconds, so
    rate limits and token lifetimes must run on real time."""
    clock = ManualClock()
    real: Clock = SystemClock() if served else ManualClock()
    app = create_app(spec, clock=clock, real_clock=real)
    return EmulatorHarness(
        app=app, clock=clock, real_clock=real, base_url=TEST_HOST, token=TEST_TOKEN
    )


@pytest.fixture
def emulator() -> EmulatorHarness:
    """An empty workspace (seed jobs through `emulator.state` or the API)."""
    return make_harness(make_spec())


@pytest.fixture
def demo_emulator() -> EmulatorHarness:
    """The shipped demo workspace, accepting TEST_TOKEN besides its own."""
    spec = load_workspace("demo")
    spec.auth.tokens.append(TEST_TOKEN)
    return make_harness(spec)


@pytest.fixture
async def api(emulator: EmulatorHarness) -> AsyncIterator[httpx.AsyncClient]:
    async with emulator.client() as client:
        yield client


async def autojump(clock: ManualClock, awaitable: Awaitable[T], *, limit_s: float = 120) -> T:
    """Run `awaitable`; whenever everything is parked on `clock`, jump it to the next deadline.

    Everything here runs in one event loop (the emulator over the ASGI transport), so "nothing can
    move" is seen after yielding to the loop a few times (like trio's autojump clock). When nothing
    waits on the clock, a worker thread (aiosqlite) is busy: give it real time, bounded by `limit_s`.
    """
    task = asyncio.ensure_future(awaitable)
    give_up = time.monotonic() + limit_s
    while time.monotonic() < give_up:
        for _ in range(50):
            if task.done():
                return task.result()
            await asyncio.sleep(0)
        deadline = clock.next_deadline()
        if deadline is not None:
            clock.advance(max(0.0, deadline - clock.now()))
        else:
            await asyncio.wait({task}, timeout=0.005)  # real I/O in a thread, not emulated time
    task.cancel()
    raise AssertionError(f"autojump: still not done after {limit_s} s")


ENDLESS_NOTEBOOK = "/Shared/polysync-tests/endless"


def seed_endless_notebook(emulator_url: str) -> str:
    """A notebook whose runs never end on their own, seeded in a served emulator: its path."""
    seeded = httpx.post(
        f"{emulator_url}/emulator/notebooks",
        json={
            "notebooks": [
                {
                    "path": ENDLESS_NOTEBOOK,
                    "language": "PYTHON",
                    "source": 'dbutils.widgets.text("n", "1")\n',
                    "emulator": {"duration_s": 10_000_000},
                }
            ]
        },
    )
    seeded.raise_for_status()
    return ENDLESS_NOTEBOOK


def seed_endless_pipeline(emulator_url: str) -> str:
    """A pipeline ("endless-dlt") whose updates never end on their own: its id."""
    seeded = httpx.post(
        f"{emulator_url}/emulator/pipelines",
        json={"pipelines": [{"name": "endless-dlt", "emulator": {"duration_s": 10_000_000}}]},
    )
    seeded.raise_for_status()
    return str(seeded.json()["pipeline_ids"][0])
