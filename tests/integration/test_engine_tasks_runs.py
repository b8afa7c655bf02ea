"""TaskRuns through the engine against the emulator (ASGI transport, manual clocks) and a real
SQLite file (issue 12): a DAG over two platforms with a failing node and mapped values, retry
backoff, execution timeouts, priority and the concurrency cap with 200 queued TaskRuns."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from polysync.domain.models import RunStatus
from polysync.domain.records import NewPlatform
from polysync.engine.engine import EngineSettings
from polysync.engine.polling import PollPolicy
from polysync.engine.ports import TaskRunFilter
from polysync.engine.scheduler import SchedulerSettings
from polysync.services import Services
from polysync.tasks.model import TaskRun, new_task_run
from polysync.tasks.states import TaskRunStatus, TriggerType
from tests.conftest import EmulatorHarness, open_services
from tests.integration.conftest import BACKFILL, FRAUD, SALES, add_demo


@pytest.fixture
async def two_platforms(harness: EmulatorHarness, tmp_path: Path) -> AsyncIterator[Services]:
    services = await open_services(harness, tmp_path / "polysync.db")
    await add_demo(services, harness)
    await services.add_platform(
        NewPlatform(
            name="second",
            workspace_url=harness.base_url,
            auth={"method": "pat", "token": "env:POLYSYNC_TEST_DATABRICKS_TOKEN"},
        )
    )
    _, results = await services.import_jobs("second", [SALES, FRAUD])
    assert all(r.error is None for r in results)
    yield services
    await services.aclose()


async def step_until(
    harness: EmulatorHarness,
    services: Services,
    done: Callable[[], Awaitable[bool]],
    *,
    step_s: float = 5,
    limit: int = 3000,
) -> None:
    for _ in range(limit):
        await services.engine.step()
        if await done():
            return
        harness.advance(step_s)
    raise AssertionError("not done")


async def run_to_end(harness: EmulatorHarness, services: Services, task_run_id: int) -> TaskRun:
    """Step the engine until the TaskRun ends; that TaskRun."""

    async def ended() -> bool:
        return (await services.tasks.get_run(task_run_id)).status.is_terminal

    await step_until(harness, services, ended)
    return await services.tasks.get_run(task_run_id)


async def latest(services: Services, name: str) -> TaskRun | None:
    runs = await services.tasks.list_runs(name, limit=1)
    return runs[0] if runs else None


async def job_parameters(harness: EmulatorHarness, databricks_run_id: str) -> dict[str, str]:
    async with harness.client() as client:
        answer = await client.get("/api/2.1/jobs/runs/get", params={"run_id": databricks_run_id})
    answer.raise_for_status()
    return {p["name"]: p["value"] for p in answer.json().get("job_parameters", [])}


async def test_a_dag_over_two_platforms_runs_skips_and_runs_on_failure_with_mapped_values(
    harness: EmulatorHarness, two_platforms: Services
) -> None:
    services = two_platforms
    sales = await services.get_job(SALES, platform="demo")
    sales2 = await services.get_job(SALES, platform="second")
    fraud2 = await services.get_job(FRAUD, platform="second")
    create = services.tasks.create
    await create(
        {
            "name": "ingest",
            "job": sales.id,
            "parameters": {"run_date": "2026-05-01", "batch_size": "700"},
        }
    )
    await create(
        {
            "name": "fraud",
            "job": fraud2.id,
            "parameters": {"model_version": "{{upstream.ingest.parameters.batch_size}}"},
            "dependencies": ["ingest"],
        }
    )
    await create({"name": "report", "job": sales2.id, "dependencies": ["fraud"]})
    await create(
        {
            "name": "alert",
            "job": sales.id,
            "parameters": {
                "run_date": "{{upstream.fraud.parameters.model_version}}",
                "env": "{{ upstream.fraud.status }}",
            },
            "dependencies": [{"upstream": "fraud", "condition": "on_failure"}],
        }
    )
    await create(
        {
            "name": "cleanup",
            "job": sales2.id,
            "dependencies": [{"upstream": "report", "condition": "on_completion"}],
        }
    )
    await create({"name": "summary", "job": sales.id, "dependencies": ["alert", "cleanup"]})
    names = ("ingest", "fraud", "report", "alert", "cleanup", "summary")
    await services.tasks.run_once("ingest")

    async def all_ended() -> bool:
        for name in names:
            run = await latest(services, name)
            if run is None or not run.status.is_terminal:
                return False
        return True

    await step_until(harness, services, all_ended)
    outcome = {name: (await latest(services, name)) for name in names}
    assert {name: run.status for name, run in outcome.items() if run} == {
        "ingest": TaskRunStatus.SUCCEEDED,
        "fraud": TaskRunStatus.FAILED,
        "report": TaskRunStatus.SKIPPED,
        "alert": TaskRunStatus.SUCCEEDED,
        "cleanup": TaskRunStatus.SUCCEEDED,
        "summary": TaskRunStatus.SUCCEEDED,
    }
    assert all(run is not None for run in outcome.values())
    report = outcome["report"]
    assert report is not None
    assert report.trigger is TriggerType.DEPENDENCY
    assert report.attempts == ()
    assert "'fraud' Failed (needs on_success)" in report.message
    # Each Task ran once: one TaskRun each, in one cycle.
    for name in names:
        assert len(await services.tasks.list_runs(name)) == 1
    # The mapped values reached Databricks (runs/get job_parameters).
    fraud_run = await services.store.get_run(_run_of(outcome["fraud"]))
    alert_run = await services.store.get_run(_run_of(outcome["alert"]))
    assert fraud_run.platform_id != alert_run.platform_id
    assert fraud_run.run_id is not None
    assert alert_run.run_id is not None
    assert (await job_parameters(harness, fraud_run.run_id))["model_version"] == "700"
    sent = await job_parameters(harness, alert_run.run_id)
    assert sent["run_date"] == "700"
    assert sent["env"] == "Failed"
    # Runs link back to their TaskRun.
    linked = await services.store.task_run_of_run(alert_run.id)
    assert linked is not None
    assert linked.id == outcome["alert"].id  # type: ignore[union-attr]


def _run_of(task_run: TaskRun | None) -> int:
    assert task_run is not None
    run_id = task_run.attempts[-1].run_id
    assert run_id is not None
    return run_id


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [("Fixed", [30, 30, 30]), ("Linear", [30, 60, 90]), ("Exponential", [30, 60, 100])],
)
async def test_retries_wait_their_backoff_on_the_manual_clock_and_restart_as_new_runs(
    harness: EmulatorHarness, two_platforms: Services, backoff: str, delays: list[int]
) -> None:
    services = two_platforms
    fraud = await services.get_job(FRAUD, platform="demo")
    await services.tasks.create(
        {
            "name": "scoring",
            "job": fraud.id,
            "retry": {
                "enabled": True,
                "max_attempts": 4,
                "backoff": backoff,
                "initial_delay_s": 30,
                "max_delay_s": 100,
                "strategy": "Restart",
            },
        }
    )
    queued = await services.tasks.run_once("scoring")
    done = await run_to_end(harness, services, queued.id or 0)
    assert done.status is TaskRunStatus.FAILED
    assert len(done.attempts) == 4
    assert all(a.status is TaskRunStatus.FAILED for a in done.attempts)
    waited = [
        (later.started_at - earlier.ended_at).total_seconds()  # type: ignore[operator]
        for earlier, later in zip(done.attempts, done.attempts[1:], strict=False)
    ]
    assert waited == delays
    run_ids = [a.run_id for a in done.attempts]
    assert len(set(run_ids)) == 4  # Restart: a new run each time
    for run_id in run_ids:
        assert run_id is not None
        linked = await services.store.task_run_of_run(run_id)
        assert linked is not None
        assert linked.id == done.id
    assert done.message.startswith("Task build_features failed")  # the run's own reason


async def test_the_execution_timeout_cancels_the_run_and_the_retry_starts_a_new_one(
    harness: EmulatorHarness, two_platforms: Services
) -> None:
    services = two_platforms
    backfill = await services.get_job(BACKFILL, platform="demo")
    await services.tasks.create(
        {
            "name": "backfill",
            "job": backfill.id,
            "timeout_s": 60,
            "retry": {
                "enabled": True,
                "max_attempts": 2,
                "backoff": "Fixed",
                # The job allows one run at a time: the retry waits for the cancel to land.
                "initial_delay_s": 30,
                "max_delay_s": 30,
                "strategy": "Restart",
            },
        }
    )
    queued = await services.tasks.run_once("backfill")
    done = await run_to_end(harness, services, queued.id or 0)
    assert done.status is TaskRunStatus.FAILED
    assert done.message == "timed out after 60 s"
    assert [a.message for a in done.attempts] == ["timed out after 60 s"] * 2
    for attempt in done.attempts:
        assert (attempt.ended_at - attempt.started_at).total_seconds() == 60  # type: ignore[operator]
    runs = [a.run_id for a in done.attempts]
    assert runs[0] != runs[1]

    async def cancelled() -> bool:
        found = await services.store.runs_by_id([r for r in runs if r is not None])
        return all(run.status is RunStatus.CANCELLED for run in found.values())

    await step_until(harness, services, cancelled)
    cancels = harness.app.emulator.stats.count("jobs/runs/cancel")
    assert cancels == 2


async def test_priority_and_the_concurrency_cap_hold_with_200_queued_task_runs(
    harness: EmulatorHarness, tmp_path: Path
) -> None:
    settings = EngineSettings(policy=PollPolicy(), scheduler=SchedulerSettings(slots=3))
    services = await open_services(harness, tmp_path / "polysync.db", settings)
    try:
        await add_demo(services, harness)
        sales = await services.get_job(SALES, platform="demo")
        ids: dict[int, str] = {}
        for name, priority in (("low", 10), ("mid", 50), ("high", 90)):
            task = await services.tasks.create(
                {"name": name, "job": sales.id, "priority": priority, "concurrency_cap": 2}
            )
            assert task.id is not None
            ids[task.id] = name
        now = services.now()
        tasks = {t.name: t for t in await services.store.list_tasks()}
        for i in range(200):
            task = tasks[("low", "mid", "high")[i % 3]]
            run = new_task_run(task, TriggerType.SCHEDULE, now - timedelta(minutes=i), now)
            await services.store.add_task_runs(task.id or 0, [run], now, overlap=False)

        async def running() -> dict[str, list[Any]]:
            found = await services.store.list_task_runs(
                TaskRunFilter(statuses=(TaskRunStatus.RUNNING,), limit=1000)
            )
            out: dict[str, list[Any]] = {}
            for r in found:
                out.setdefault(ids[r.task_id], []).append(r.scheduled_for)
            return out

        await services.engine.step()
        first = await running()
        assert {k: len(v) for k, v in first.items()} == {"high": 2, "mid": 1}
        # The earliest scheduled-for of each Task starts first.
        high_all = sorted(
            r.scheduled_for for r in await services.tasks.list_runs("high", limit=1000)
        )
        assert sorted(first["high"]) == high_all[:2]
        harness.advance(1)
        await services.engine.step()
        assert {k: len(v) for k, v in (await running()).items()} == {"high": 2, "mid": 2, "low": 2}
        for _ in range(40):  # runs end, slots free, never beyond any cap
            harness.advance(5)
            await services.engine.step()
            assert all(len(v) <= 2 for v in (await running()).values())
        queued = await services.store.list_task_runs(
            TaskRunFilter(statuses=(TaskRunStatus.QUEUED,), limit=1000)
        )
        assert len(queued) < 200 - 5
        everything = await services.store.list_task_runs(TaskRunFilter(limit=1000))
        assert len(everything) == 200
        started = [r for r in everything if r.attempts]
        assert len(started) == 200 - len(queued)
        assert all(r.status is not TaskRunStatus.QUEUED for r in started)
    finally:
        await services.aclose()


async def test_a_workflow_retry_repairs_the_run_in_place_and_a_repair_by_hand_reopens_it(
    harness: EmulatorHarness, two_platforms: Services
) -> None:
    services = two_platforms
    fraud = await services.get_job(FRAUD, platform="demo")
    assert fraud.job_type == "Databricks Workflow"
    await services.tasks.create(
        {
            "name": "scoring",
            "job": fraud.id,
            # No strategy: Repair, the default for a Workflow.
            "retry": {"enabled": True, "max_attempts": 2, "initial_delay_s": 10},
        }
    )
    queued = await services.tasks.run_once("scoring")
    task_run_id = queued.id or 0
    done = await run_to_end(harness, services, task_run_id)
    assert done.status is TaskRunStatus.FAILED
    assert [a.kind.value for a in done.attempts] == ["start", "repair"]
    assert done.attempts[0].run_id == done.attempts[1].run_id  # one Databricks run
    stats = harness.app.emulator.stats
    assert stats.count("jobs/run-now") == 1
    assert stats.count("jobs/runs/repair") == 1
    # A repair by hand reopens the Failed TaskRun (D12): Running again, then its new outcome.
    reopened = await services.tasks.repair_run(task_run_id)
    assert reopened.status is TaskRunStatus.RUNNING
    again = await run_to_end(harness, services, task_run_id)
    assert again.status is TaskRunStatus.FAILED
    assert [a.kind.value for a in again.attempts] == ["start", "repair", "repair"]
    assert stats.count("jobs/runs/repair") == 2
    assert stats.count("jobs/run-now") == 1
    statuses = [e.status for e in again.history]
    assert statuses.count(TaskRunStatus.FAILED) == 2  # the earlier outcome stays in the history
    assert any(e.message == "reopened by a repair" for e in again.history)


async def test_a_task_linked_to_a_concurrency_profile_of_one_runs_its_task_runs_one_by_one(
    harness: EmulatorHarness, two_platforms: Services
) -> None:
    # D14: a run started by a TaskRun attempt is judged by the profiles of its Task too. The
    # Task's own cap (2) lets both TaskRuns start; the profile (1) holds the second's run.
    services = two_platforms
    sales = await services.get_job(SALES, platform="demo")
    task = await services.tasks.create({"name": "ingest", "job": sales.id, "concurrency_cap": 2})
    assert task.id is not None
    await services.profiles.create(
        {"name": "one-at-a-time", "type": "concurrency", "max_concurrent": 1}, tasks=[task.id]
    )
    first = await services.tasks.run_once("ingest")
    second = await services.tasks.run_once("ingest")  # same instant: a TaskRun of its own

    async def run_of(task_run_id: int) -> Any:
        current = await services.tasks.get_run(task_run_id)
        run_id = current.attempts[-1].run_id if current.attempts else None
        return await services.store.get_run(run_id) if run_id is not None else None

    async def second_waits() -> bool:
        run = await run_of(second.id or 0)
        return run is not None and run.status is RunStatus.QUEUED

    await step_until(harness, services, second_waits, step_s=1)
    waiting = await run_of(second.id or 0)
    assert waiting.message == "Waiting for profile 'one-at-a-time' (1 of 1 running)"
    assert (await services.tasks.get_run(second.id or 0)).status is TaskRunStatus.RUNNING
    holder = await run_of(first.id or 0)
    assert holder.admitted_at is not None
    assert not holder.status.is_terminal

    async def both_ended() -> bool:
        runs = [await services.tasks.get_run(i or 0) for i in (first.id, second.id)]
        return all(r.status.is_terminal for r in runs)

    await step_until(harness, services, both_ended)
    done = [await services.tasks.get_run(i or 0) for i in (first.id, second.id)]
    assert [r.status for r in done] == [TaskRunStatus.SUCCEEDED, TaskRunStatus.SUCCEEDED]
    ran_first, ran_second = [await run_of(i or 0) for i in (first.id, second.id)]
    # One at a time: the second run was admitted only once the first had ended.
    assert ran_second.admitted_at >= ran_first.ended_at
    history = [e.message for e in await services.store.run_events(ran_second.id)]
    assert "Waiting for profile 'one-at-a-time' (1 of 1 running)" in history
