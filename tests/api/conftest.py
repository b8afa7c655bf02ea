"""The API over Services on a real SQLite file, against the demo workspace emulated in-process
(ASGI transport, manual clocks); one API key per role."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from polysync.api import create_api_app, create_api_key
from polysync.api.deps import ApiSettings
from polysync.domain.records import NewPlatform, Run
from polysync.emulator.spec import load_workspace
from polysync.services import Services
from polysync.store import SqlStore
from tests.conftest import TEST_TOKEN, EmulatorHarness, make_harness, open_services

SALES = "914275016372845"  # 4 tasks, parameters of every inferred type, task-scoped ones
BACKFILL = "681940257713388"  # runs for hours: stays active
FRAUD = "306118823409576"  # fails in build_features
TOKEN_VARIABLE = "POLYSYNC_TEST_DATABRICKS_TOKEN"
ROLES = ("viewer", "operator", "admin")
BASE_URL = "http://polysync.test"


@dataclass
class Api:
    """Everything a test needs: the app, a client, the services under it, keys per role."""

    app: FastAPI
    client: httpx.AsyncClient
    services: Services
    harness: EmulatorHarness
    keys: dict[str, str]
    platform_id: int
    job_ids: dict[str, int]  # External Id -> Polysync job id

    @property
    def store(self) -> SqlStore:
        assert isinstance(self.services.store, SqlStore)
        return self.services.store

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    async def step(self, seconds: float = 5.0) -> None:
        """Let `seconds` of emulated time pass, then run one engine cycle."""
        self.harness.advance(seconds)
        await self.services.engine.step()

    async def drive(self, run_id: int, *, step_s: float = 5.0) -> Run:
        for _ in range(2000):
            run = await self.store.get_run(run_id)
            if run.is_terminal:
                return run
            await self.step(step_s)
        raise AssertionError(f"run {run_id} did not end")

    async def drive_until_done(self, task: asyncio.Task[httpx.Response]) -> httpx.Response:
        """Advance time and step the engine until a request in flight (SSE, long poll) returns."""
        for _ in range(2000):
            for _ in range(20):  # let the request's handler run up to its next clock sleep
                if task.done():
                    return task.result()
                await asyncio.sleep(0)
            await self.step()
        task.cancel()
        raise AssertionError("the request never completed")


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> EmulatorHarness:
    monkeypatch.setenv(TOKEN_VARIABLE, TEST_TOKEN)
    spec = load_workspace("demo")
    spec.auth.tokens.append(TEST_TOKEN)
    return make_harness(spec)


def demo_platform(harness: EmulatorHarness, name: str = "demo") -> NewPlatform:
    return NewPlatform(
        name=name,
        workspace_url=harness.base_url,
        auth={"method": "pat", "token": f"env:{TOKEN_VARIABLE}"},
    )


@pytest.fixture
async def api(harness: EmulatorHarness, tmp_path: Path) -> AsyncIterator[Api]:
    services = await open_services(harness, tmp_path / "polysync.db")
    try:
        platform = await services.add_platform(demo_platform(harness))
        _, results = await services.import_jobs("demo", [SALES, BACKFILL, FRAUD])
        assert all(r.error is None for r in results)
        job_ids = {r.external_id: r.job.id for r in results if r.job is not None}
        keys = {}
        for role in ROLES:
            assert isinstance(services.store, SqlStore)
            _, keys[role] = await create_api_key(services.store, f"{role} key", role)
        app = create_api_app(services, settings=ApiSettings(live_poll_s=1.0, max_wait_s=60.0))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield Api(app, client, services, harness, keys, platform.id, job_ids)
    finally:
        await services.aclose()
