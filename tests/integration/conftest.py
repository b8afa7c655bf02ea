"""The engine's fixtures: the demo workspace emulated in-process (ASGI transport, manual clocks)
and Services over a real SQLite file, with the demo platform and three jobs imported."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from polysync.domain.records import NewPlatform
from polysync.emulator.spec import load_workspace
from polysync.engine.engine import Engine
from polysync.services import Services
from tests.conftest import TEST_TOKEN, EmulatorHarness, make_harness, open_services

SALES = "914275016372845"
BACKFILL = "681940257713388"
FRAUD = "306118823409576"


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> EmulatorHarness:
    monkeypatch.setenv("POLYSYNC_TEST_DATABRICKS_TOKEN", TEST_TOKEN)
    spec = load_workspace("demo")
    spec.auth.tokens.append(TEST_TOKEN)
    return make_harness(spec)


@pytest.fixture
async def services(harness: EmulatorHarness, tmp_path: Path) -> AsyncIterator[Services]:
    svc = await open_services(harness, tmp_path / "polysync.db")
    await add_demo(svc, harness)
    yield svc
    await svc.aclose()


async def add_demo(services: Services, harness: EmulatorHarness) -> None:
    """The demo platform, with SALES, BACKFILL and FRAUD imported."""
    await services.add_platform(
        NewPlatform(
            name="demo",
            workspace_url=harness.base_url,
            auth={"method": "pat", "token": "env:POLYSYNC_TEST_DATABRICKS_TOKEN"},
        )
    )
    _, results = await services.import_jobs("demo", [SALES, BACKFILL, FRAUD])
    assert all(r.error is None for r in results)


async def drive(
    harness: EmulatorHarness, engine: Engine, run_id: int, *, step_s: float = 5
) -> None:
    for _ in range(2000):
        run = await engine.store.get_run(run_id)
        if run.is_terminal:
            return
        harness.advance(step_s)
        await engine.step()
    raise AssertionError("run did not end")


def databricks_runs(harness: EmulatorHarness) -> list[int]:
    return sorted(harness.state.runs)
