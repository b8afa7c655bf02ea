"""Acceptance tests drive the installed `polysync` command in subprocesses, as a user would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from polysync.config import Settings
from polysync.domain.records import Job, NewPlatform, Run
from polysync.services import Services
from tests.conftest import free_port


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "demo: runs the whole `polysync demo` (a few seconds; deselect with -m 'not demo')",
    )


# Engines and an emulator in subprocesses, for the crash and chaos tests.

TOKEN = "dapi-demo-token-0000000000000000"
SALES = "914275016372845"
POLYSYNC = str(Path(sys.executable).with_name("polysync"))


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    """Bounded wait for another process to reach a state."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Emulator:
    url: str
    process: subprocess.Popen[bytes]

    def get(self, path: str) -> Any:
        return httpx.get(f"{self.url}{path}", timeout=10).json()

    def post(self, path: str, body: Any = None) -> Any:
        return httpx.post(f"{self.url}{path}", json=body, timeout=10).json()

    def delete(self, path: str) -> int:
        return httpx.delete(f"{self.url}{path}", timeout=10).status_code

    def runs(self) -> list[dict[str, Any]]:
        return list(self.get("/emulator/runs")["runs"])

    def clear_faults(self) -> None:
        httpx.delete(f"{self.url}/emulator/faults", timeout=10).raise_for_status()

    def fault_applied(self) -> int:
        return sum(f["applied"] for f in self.get("/emulator/faults")["faults"])


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    port = free_port()
    process = subprocess.Popen(
        [
            POLYSYNC,
            "emulator",
            "serve",
            "--workspace",
            "demo",
            "--port",
            str(port),
            "--speed",
            "50",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    emu = Emulator(f"http://127.0.0.1:{port}", process)

    def ready() -> bool:
        try:
            return httpx.get(f"{emu.url}/emulator/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for("the emulator to listen", ready, 30)
    yield emu
    process.kill()
    process.wait(timeout=10)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'polysync.db'}"


@dataclass
class Setup:
    services: Services
    job: Job
    env: dict[str, str]


async def setup(
    emulator: Emulator, database_url: str, tmp_path: Path, job_ref: str = SALES
) -> Setup:
    env = {
        **os.environ,
        "POLYSYNC_HOME": str(tmp_path),
        "POLYSYNC_DATABASE_URL": database_url,
        "POLYSYNC_POLL_MIN_S": "0.2",
        "POLYSYNC_POLL_MAX_S": "1",
        "POLYSYNC_SWEEP_INTERVAL_S": "0.5",
        "POLYSYNC_LEASE_S": "3",
        "POLYSYNC_CRASH_TOKEN": TOKEN,
    }
    os.environ["POLYSYNC_CRASH_TOKEN"] = TOKEN
    services = await Services.open(Settings(home=tmp_path, database_url=database_url))
    await services.add_platform(
        NewPlatform(
            name="demo",
            workspace_url=emulator.url,
            auth={"method": "pat", "token": "env:POLYSYNC_CRASH_TOKEN"},
        )
    )
    await services.import_jobs("demo", [job_ref])
    return Setup(services, await services.get_job(job_ref, platform="demo"), env)


def start_engine(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [POLYSYNC, "engine"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def kill9(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


async def wait_run(
    services: Services, run_id: int, check: Callable[[Run], bool], timeout_s: float = 60
) -> Run:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = await services.store.get_run(run_id)
        if check(run):
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} did not reach the expected state: {run}")


def exactly_one_run_for(emulator: Emulator, run: Run) -> None:
    ours = [r for r in emulator.runs() if r["idempotency_token"] == run.idempotency_token]
    assert len(ours) == 1, ours
    assert str(ours[0]["run_id"]) == run.run_id


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    base = os.environ.get("POLYSYNC_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("POLYSYNC_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    import psycopg

    name = f"polysync_crash_{uuid.uuid4().hex[:10]}"
    admin = base.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield base.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
