"""Crash tests: `polysync engine` processes killed with SIGKILL at the worst moments, then restarted.

Whatever the moment, each of our runs ends with exactly one Databricks run and the right final
status. The emulator and the engines are real processes on real sockets; waits are bounded polls
for another process to reach a state, never sleeps standing in for elapsed time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from polysync.domain.models import RunStatus
from tests.acceptance.conftest import (
    Emulator,
    exactly_one_run_for,
    kill9,
    setup,
    start_engine,
    wait_for,
    wait_run,
)


async def test_killed_while_run_now_is_in_flight(
    emulator: Emulator, database_url: str, tmp_path: Path
) -> None:
    s = await setup(emulator, database_url, tmp_path)
    emulator.post(
        "/emulator/faults",
        {"method": "POST", "path": "jobs/run-now$", "kind": "latency", "latency_ms": 4000},
    )
    run = await s.services.engine.submit(s.job, {"env": "dev"})  # committed, not yet sent
    engine = start_engine(s.env)
    wait_for("run-now to be in flight", lambda: emulator.fault_applied() >= 1)
    kill9(engine)
    assert (await s.services.store.get_run(run.id)).run_id is None
    emulator.clear_faults()
    engine = start_engine(s.env)
    try:
        final = await wait_run(s.services, run.id, lambda r: r.is_terminal)
    finally:
        kill9(engine)
    assert final.status is RunStatus.SUCCESS
    # The killed request may still land later; it carries the same token, so it cannot add a run.
    exactly_one_run_for(emulator, final)
    await s.services.aclose()


async def test_killed_after_the_run_started_but_its_response_was_lost(
    emulator: Emulator, database_url: str, tmp_path: Path
) -> None:
    s = await setup(emulator, database_url, tmp_path)
    emulator.post(
        "/emulator/faults", {"method": "POST", "path": "jobs/run-now$", "kind": "lose_response"}
    )
    run = await s.services.engine.submit(s.job, {})
    engine = start_engine(s.env)
    wait_for(
        "a run started whose answer was lost",
        lambda: emulator.fault_applied() >= 1 and emulator.runs(),
    )
    kill9(engine)
    assert (await s.services.store.get_run(run.id)).run_id is None  # we never heard back
    emulator.clear_faults()
    engine = start_engine(s.env)
    try:
        final = await wait_run(s.services, run.id, lambda r: r.is_terminal)
    finally:
        kill9(engine)
    assert final.status is RunStatus.SUCCESS
    exactly_one_run_for(emulator, final)
    assert len(emulator.runs()) == 1
    await s.services.aclose()


async def test_killed_mid_watch_resumes_tracking(
    emulator: Emulator, database_url: str, tmp_path: Path
) -> None:
    s = await setup(emulator, database_url, tmp_path)
    run = await s.services.engine.submit(s.job, {})
    engine = start_engine(s.env)
    await wait_run(s.services, run.id, lambda r: r.status is RunStatus.RUNNING)
    kill9(engine)
    engine = start_engine(s.env)
    try:
        final = await wait_run(s.services, run.id, lambda r: r.is_terminal)
    finally:
        kill9(engine)
    assert final.status is RunStatus.SUCCESS
    exactly_one_run_for(emulator, final)
    statuses = [e.status for e in await s.services.store.run_events(run.id)]
    assert statuses.count(RunStatus.SUCCESS) == 1
    assert statuses.count(RunStatus.RUNNING) == 1
    await s.services.aclose()


@pytest.mark.postgres
async def test_two_engine_processes_on_postgresql_never_start_a_run_twice(
    emulator: Emulator, postgres_url: str, tmp_path: Path
) -> None:
    seeded = emulator.post(
        "/emulator/jobs",
        {
            "name": "parallel",
            "max_concurrent_runs": 100,
            "tasks": [
                {"task_key": "a", "emulator": {"duration_s": 20}},
                {"task_key": "b", "depends_on": ["a"], "emulator": {"duration_s": 20}},
            ],
        },
    )
    s = await setup(emulator, postgres_url, tmp_path, job_ref=str(seeded["job_ids"][0]))
    runs = [await s.services.engine.submit(s.job, {}) for _ in range(24)]
    engines = [start_engine(s.env), start_engine(s.env)]
    try:
        finals = [await wait_run(s.services, r.id, lambda r: r.is_terminal, 120) for r in runs]
    finally:
        for engine in engines:
            kill9(engine)
    assert all(r.status is RunStatus.SUCCESS for r in finals)
    for final in finals:
        exactly_one_run_for(emulator, final)
    assert len(emulator.runs()) == 24
    await s.services.aclose()
