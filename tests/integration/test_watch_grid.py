"""Watching at the floor (issue 14): every watched run is on its workspace's sweep grid, so no
run waits longer than the grid to be seen; a sweep's answer is used as it is; an ended run costs
one runs/get, a failed task one runs/get-output; run-now goes out at the workspace's ceiling."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import pytest

from polysync.domain.models import RunSnapshot, RunStatus
from polysync.domain.records import Run
from polysync.emulator.spec import TaskScript
from polysync.jobtypes.databricks.workflow import DatabricksWorkflowJobType
from polysync.services import Services
from tests.conftest import EmulatorHarness, autojump
from tests.integration.conftest import BACKFILL, FRAUD, SALES


@dataclass
class Looks:
    """When the engine looked: each sweep, and each runs/get by Databricks RunId (clock s)."""

    sweeps: list[float] = field(default_factory=list)
    gets: dict[str, list[float]] = field(default_factory=dict)


def record_looks(harness: EmulatorHarness, monkeypatch: pytest.MonkeyPatch) -> Looks:
    looks = Looks()
    sweep, poll = DatabricksWorkflowJobType.active_runs, DatabricksWorkflowJobType.poll

    async def recorded_sweep(self: DatabricksWorkflowJobType) -> dict[str, RunSnapshot]:
        looks.sweeps.append(harness.clock.now())
        return dict(await sweep(self))

    async def recorded_poll(self: DatabricksWorkflowJobType, run_id: str) -> RunSnapshot:
        looks.gets.setdefault(run_id, []).append(harness.clock.now())
        return await poll(self, run_id)

    monkeypatch.setattr(DatabricksWorkflowJobType, "active_runs", recorded_sweep)
    monkeypatch.setattr(DatabricksWorkflowJobType, "poll", recorded_poll)
    return looks


async def execute(services: Services, job_ref: str) -> Run:
    return await services.execute(await services.get_job(job_ref, platform="demo"), {})


async def run_to_the_end(
    harness: EmulatorHarness, services: Services, runs: list[Run], *, step_s: float = 1.0
) -> list[Run]:
    """Step the engine every `step_s` of the clock until every run has ended."""
    for _ in range(5000):
        final = [await services.store.get_run(run.id) for run in runs]
        if all(run.is_terminal for run in final):
            return final
        harness.advance(step_s)
        await services.engine.step()
    raise AssertionError("the runs did not end")


def ended_in_databricks_s(harness: EmulatorHarness, run: Run) -> float:
    assert run.run_id is not None
    return harness.state.runs[int(run.run_id)].end_time_ms / 1000


@pytest.fixture(autouse=True)
def roomy(harness: EmulatorHarness) -> None:
    for job_id in (SALES, BACKFILL, FRAUD):
        harness.state.jobs[int(job_id)].settings["max_concurrent_runs"] = 100


async def test_no_run_waits_longer_than_the_grid_and_an_end_costs_one_runs_get(
    harness: EmulatorHarness, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    for task in ("plan", "backfill", "validate"):  # minutes, not the demo's hours
        harness.state.script_task(int(BACKFILL), task, TaskScript(duration_s=40, pending_s=3))
    looks = record_looks(harness, monkeypatch)
    interval_s = services.engine.settings.policy.sweep_interval_s
    runs = [await execute(services, job) for job in (SALES, BACKFILL, FRAUD)]
    await services.engine.step()
    harness.advance(3.5)  # one more, off the grid: it joins the grid at its next point
    runs.append(await execute(services, BACKFILL))
    await services.engine.step()

    final = await run_to_the_end(harness, services, runs, step_s=0.5)  # lands on grid points

    for run in final:
        assert run.submitted_at is not None
        assert run.ended_at is not None
        submitted_s, seen_end_s = run.submitted_at.timestamp(), run.ended_at.timestamp()
        # Between its start and the end seen, the run was swept at every grid point.
        watched = [s for s in looks.sweeps if submitted_s < s <= seen_end_s]
        gaps = [b - a for a, b in itertools.pairwise([submitted_s, *watched])]
        assert max(gaps) <= interval_s, (run.id, gaps)
        # Its end was seen at the first sweep after it, with one runs/get and no other.
        assert 0 <= seen_end_s - ended_in_databricks_s(harness, run) <= interval_s
        assert run.run_id is not None
        assert looks.gets[run.run_id] == [seen_end_s]
    # One page per sweep (4 runs), and sweeps only on grid points.
    assert harness.app.emulator.stats.count("jobs/runs/list") == len(looks.sweeps)
    assert all(s % interval_s == 0 for s in looks.sweeps)
    assert len(looks.sweeps) == len(set(looks.sweeps))  # never two at one point


async def test_starting_to_running_and_task_states_come_from_the_sweep(
    harness: EmulatorHarness, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks = record_looks(harness, monkeypatch)
    run = await execute(services, SALES)
    await services.engine.step()
    seen: list[tuple[RunStatus, tuple[str, ...]]] = []
    for _ in range(600):
        harness.advance(1)
        await services.engine.step()
        current = await services.store.get_run(run.id)
        states = tuple(t.life_cycle_state or "" for t in current.tasks)
        if not seen or seen[-1] != (current.status, states):
            seen.append((current.status, states))
        if current.is_terminal:
            break
    statuses = [status for status, _ in seen]
    assert statuses[0] is RunStatus.STARTING
    assert RunStatus.RUNNING in statuses
    assert statuses[-1] is RunStatus.SUCCESS
    assert len({states for _, states in seen}) > 2  # the tasks moved, as the sweeps told
    assert sum(len(times) for times in looks.gets.values()) == 1  # only to learn the end


async def test_a_failed_task_costs_one_get_output_and_the_failed_run_one_runs_get(
    harness: EmulatorHarness, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.state.script_task(
        int(BACKFILL), "backfill", TaskScript(outcome="failure", error="ZeroDivisionError")
    )
    looks = record_looks(harness, monkeypatch)
    runs = [await execute(services, BACKFILL) for _ in range(3)]
    await services.engine.step()
    final = await run_to_the_end(harness, services, runs)
    assert {run.status for run in final} == {RunStatus.FAILED}
    assert all("ZeroDivisionError" in run.message for run in final)
    assert Counter(len(times) for times in looks.gets.values()) == Counter({1: 3})
    assert harness.app.emulator.stats.count("jobs/runs/get-output") == 3


async def test_a_run_gone_from_the_list_is_resolved_by_one_runs_get(
    harness: EmulatorHarness, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks = record_looks(harness, monkeypatch)
    run = await execute(services, BACKFILL)
    await services.engine.step()
    stored = await services.store.get_run(run.id)
    assert stored.run_id is not None
    harness.state.delete_run(int(stored.run_id), active_too=True)
    final = await run_to_the_end(harness, services, [run])
    assert final[0].status is RunStatus.FAILED
    assert final[0].message == "The Databricks run was deleted or its history expired."
    assert len(looks.gets[stored.run_id]) == 1
    harness.advance(600)
    await services.engine.step()
    assert len(looks.gets[stored.run_id]) == 1  # never looked at again


async def test_a_queue_of_runs_starts_at_the_run_now_ceiling_without_a_429(
    harness: EmulatorHarness, services: Services
) -> None:
    job = await services.get_job(BACKFILL, platform="demo")
    runs = [await services.execute(job, {}) for _ in range(200)]
    started_at: list[float] = []
    for _ in range(50):
        report = await autojump(harness.real_clock, services.engine.step())  # type: ignore[arg-type]
        started_at += [harness.real_clock.now()] * report.submitted
        if len(started_at) == len(runs):
            break
    stats = harness.app.emulator.stats
    assert stats.count("jobs/run-now", status=429) == 0
    assert stats.count("jobs/run-now") == len(runs)  # each started once, none retried
    assert len(harness.state.runs) == len(runs)
    # 20 per second after a first burst of 10: the ceiling, not below it.
    span_s = max(started_at) - min(started_at)
    assert (len(runs) - 10) / 20 - 2 <= span_s <= (len(runs) - 10) / 20 + 2


async def test_a_command_driving_its_own_run_looks_at_it_once_per_grid_point(
    harness: EmulatorHarness, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    for task in ("plan", "backfill", "validate"):
        harness.state.script_task(int(BACKFILL), task, TaskScript(duration_s=20, pending_s=3))
    looks = record_looks(harness, monkeypatch)
    interval_s = services.engine.settings.policy.sweep_interval_s
    run = await execute(services, BACKFILL)
    for _ in range(1000):  # `polysync run --wait` with no engine: dispatch, sleep, again
        current = await services.dispatch(run.id)
        if current.is_terminal:
            break
        harness.advance(0.5)
    assert current.status is RunStatus.SUCCESS
    assert current.run_id is not None
    gets = looks.gets[current.run_id]
    assert looks.sweeps == []  # one run: its own runs/get, never a workspace's sweep
    assert all(0 < b - a <= interval_s for a, b in itertools.pairwise(gets))
    assert current.ended_at is not None
    assert current.ended_at.timestamp() - ended_in_databricks_s(harness, current) <= interval_s
