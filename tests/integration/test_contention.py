"""The proof of contention profiles (issue 13, D14): runs executed on two platforms under a
concurrency profile of 5 and a rate profile of 10 per 60 s, started by two engines sharing one
database (SQLite file and PostgreSQL), one of them stopped abruptly mid-way. Manual clocks, no
sleeps: the emulator's active runs are sampled after every step of every engine."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from polysync.config import Settings
from polysync.domain.models import RunStatus
from polysync.domain.records import NewPlatform, RunFilter
from polysync.engine.engine import EngineSettings
from polysync.engine.polling import PollPolicy
from polysync.services import Services
from tests.acceptance.contention_chaos import most_in_any_window
from tests.conftest import TEST_TOKEN, EmulatorHarness, make_harness, make_spec, open_services
from tests.contract.test_store import database_url  # noqa: F401 - the two-backend fixture

JOB_ID = 700000000000001
RUNS = 60
STEP_S = 5.0
TIMEOUT_S = 300
TIMED_OUT = re.compile(
    r"Timed out waiting for contention profile 'cap' \(5 of 5 running\): waited \d+ s, its "
    r"Queue Timeout Seconds is 300\."
)


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> EmulatorHarness:
    monkeypatch.setenv("POLYSYNC_TEST_DATABRICKS_TOKEN", TEST_TOKEN)
    job = {
        "job_id": JOB_ID,
        "name": "load",
        "max_concurrent_runs": 1000,
        "tasks": [
            {
                "task_key": "load",
                "notebook_task": {"notebook_path": "/load"},
                "emulator": {"duration_s": 15},
            }
        ],
    }
    return make_harness(make_spec(jobs=[job]))


async def engine_services(harness: EmulatorHarness, url: str, home: Path) -> Services:
    return await Services.open(
        Settings(home=home, database_url=url),
        clock=harness.clock,
        api_clock=harness.real_clock,
        transport_factory=lambda _platform: harness.transport(),
        engine_settings=EngineSettings(policy=PollPolicy(), lease_s=60),
    )


@pytest.fixture
async def two(
    harness: EmulatorHarness,
    database_url: str,  # noqa: F811
    tmp_path: Path,
) -> AsyncIterator[tuple[Services, Services]]:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = await engine_services(harness, database_url, tmp_path / "a")
    second = await engine_services(harness, database_url, tmp_path / "b")
    try:
        yield first, second
    finally:
        await second.aclose()
        # The first engine was stopped abruptly: its leases are left to expire, as after kill -9.
        await first.connections.aclose()
        await first.store.aclose()  # type: ignore[attr-defined]


async def test_two_engines_one_killed_keep_every_profile_limit(
    harness: EmulatorHarness, two: tuple[Services, Services]
) -> None:
    first, second = two
    for name in ("east", "west"):
        await first.add_platform(
            NewPlatform(
                name=name,
                workspace_url=harness.base_url,
                auth={"method": "pat", "token": "env:POLYSYNC_TEST_DATABRICKS_TOKEN"},
            )
        )
        await first.import_jobs(name, [str(JOB_ID)])
    # Both platforms are one workspace here, so the caps are global: one counter for both.
    await first.profiles.create(
        {
            "name": "cap",
            "type": "concurrency",
            "scope": "global",
            "max_concurrent": 5,
            "queue_timeout_s": TIMEOUT_S,
        },
        platforms=["east", "west"],
    )
    await first.profiles.create(
        {"name": "pace", "type": "rate", "scope": "global", "limit": 10, "window_s": 60},
        platforms=["east", "west"],
    )
    runs = []
    for index in range(RUNS):
        job = await first.get_job(str(JOB_ID), platform="east" if index % 2 else "west")
        runs.append(await (first if index % 3 else second).execute(job, {}))

    workspace = harness.state
    most_active = 0
    engines = [first, second]
    orphans: list[int] = []
    for tick in range(2000):
        if tick == 20:
            engines = [second]  # the first engine dies here, its runs leased
            orphans = [
                run.id
                for run in await second.list_runs(RunFilter(limit=1000, active_only=True))
                if run.lease_owner == first.engine.owner
            ]
        for services in engines:
            await services.engine.step()
            workspace.advance()
            most_active = max(most_active, workspace.active_runs)
        stored = await second.list_runs(RunFilter(limit=1000))
        if all(run.is_terminal for run in stored):
            break
        harness.advance(STEP_S)
    else:
        pytest.fail("the runs never all ended")

    starts_s = [run.start_time_ms / 1000 for run in workspace.runs.values()]
    assert most_active == 5
    assert most_in_any_window(starts_s, 60) == 10
    final = await second.list_runs(RunFilter(limit=1000))
    succeeded = [run for run in final if run.status is RunStatus.SUCCESS]
    timed_out = [run for run in final if run.status is RunStatus.FAILED]
    assert len(succeeded) + len(timed_out) == RUNS
    assert orphans  # the dead engine held running runs: the other took them over
    assert {run.id for run in succeeded} >= set(orphans)
    assert len(succeeded) == len(workspace.runs)  # each started once, never twice
    assert succeeded
    assert timed_out
    for run in timed_out:
        assert TIMED_OUT.fullmatch(run.message), run.message
        assert run.run_id is None
    history = [e.message for run in final for e in await second.store.run_events(run.id)]
    assert "Waiting for profile 'cap' (5 of 5 running)" in history
    assert any(
        "Waiting for profile 'pace' (10 of 10 started in the last 60 s)" in m for m in history
    )


async def test_an_engine_wakes_when_a_held_back_run_may_start(
    harness: EmulatorHarness, tmp_path: Path
) -> None:
    services = await open_services(harness, tmp_path / "polysync.db")
    try:
        await services.add_platform(
            NewPlatform(
                name="east",
                workspace_url=harness.base_url,
                auth={"method": "pat", "token": "env:POLYSYNC_TEST_DATABRICKS_TOKEN"},
            )
        )
        await services.import_jobs("east", [str(JOB_ID)])
        await services.profiles.create(
            {
                "name": "pace",
                "type": "rate",
                "limit": 1,
                "window_s": 3,
                "algorithm": "leaky_bucket",
            },
            platforms=["east"],
        )
        job = await services.get_job(str(JOB_ID), platform="east")
        first, second = [await services.execute(job, {}) for _ in range(2)]
        report = await services.engine.step()
        assert (report.submitted, report.queued) == (1, 1)
        waiting = await services.store.get_run(second.id)
        assert waiting.status is RunStatus.QUEUED
        assert waiting.message == "Waiting for profile 'pace' (one start per 3 s)"
        # Not its next idle look (10 s) nor the watch grid: the moment the profile admits it.
        assert services.engine.next_work_in_s() == 3
        harness.advance(3)
        assert (await services.engine.step()).submitted == 1
        started = await services.store.get_run(second.id)
        assert started.run_id is not None
        assert [e.status for e in await services.store.run_events(second.id)][:3] == [
            RunStatus.STARTING,
            RunStatus.QUEUED,
            RunStatus.STARTING,
        ]
        assert (await services.store.get_run(first.id)).waiting_profile_id is None
    finally:
        await services.aclose()
