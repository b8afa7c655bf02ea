"""The Tasks half of the Store contract (issue 12), on a real SQLite file and real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from polysync.clock import ManualClock
from polysync.engine.ports import TaskRunFilter
from polysync.errors import (
    ConflictError,
    DependencyCycleError,
    NotFoundError,
    TaskDefinitionError,
    TaskRunTransitionError,
)
from polysync.store import SqlStore
from polysync.task_services import TaskServices
from polysync.tasks.lifecycle import attach_run, end_attempt
from polysync.tasks.model import new_task_run
from polysync.tasks.states import TaskRunStatus, TriggerType
from tests.contract.test_store import T0, platform_and_job, start


def services(store: SqlStore) -> TaskServices:
    return TaskServices(store, ManualClock(T0.timestamp()))


async def test_a_task_round_trips_with_its_schedules_dependencies_and_retry(
    store: SqlStore,
) -> None:
    _, job = await platform_and_job(store)
    tasks = services(store)
    await tasks.create({"name": "ingest", "job": job.id})
    saved = await tasks.create(
        {
            "name": "report",
            "job": job.name,
            "parameters": {"env": "{{upstream.ingest.parameters.env}}"},
            "priority": 80,
            "concurrency_cap": 2,
            "on_overlap": "skip",
            "timeout_s": 600,
            "tags": {"team": "bi"},
            "retry": {"enabled": True, "max_attempts": 4, "backoff": "Linear"},
            "schedules": [
                {"cron": "0  2 * * *", "timezone": "Europe/London", "misfire_policy": "run-all"},
                "*/5 * * * *",
            ],
            "dependencies": [{"upstream": "ingest", "condition": "on_failure"}],
        }
    )
    again = await store.get_task("report")
    assert again == saved
    assert again.schedules[0].cron == "0 2 * * *"
    assert again.schedules[0].timezone == "Europe/London"
    assert again.dependencies[0].upstream == "ingest"
    assert again.dependencies[0].condition.value == "on_failure"
    assert again.retry.max_attempts == 4
    assert again.retry.backoff.value == "Linear"
    states = await store.list_schedule_states()
    assert sorted((s.task_id, s.position, s.last_fired_for) for s in states) == [
        (saved.id, 0, T0),
        (saved.id, 1, T0),
    ]


async def test_a_loop_is_refused_at_save_naming_it_and_nothing_is_written(
    store: SqlStore,
) -> None:
    _, job = await platform_and_job(store)
    tasks = services(store)
    await tasks.create({"name": "a", "job": job.id})
    await tasks.create({"name": "b", "job": job.id, "dependencies": ["a"]})
    await tasks.create({"name": "c", "job": job.id, "dependencies": ["b"]})
    with pytest.raises(DependencyCycleError, match="a → b → c → a"):
        await tasks.edit("a", {"dependencies": ["c"], "priority": 99})
    assert (await store.get_task("a")).priority == 50
    assert (await store.get_task("a")).dependencies == ()


async def test_bad_fields_are_refused_naming_the_field(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    tasks = services(store)
    with pytest.raises(TaskDefinitionError) as caught:
        await tasks.create({"name": "x", "job": job.id, "schedules": [{"cron": "0 0 30 2 *"}]})
    assert caught.value.field == "schedules[0].cron"
    with pytest.raises(TaskDefinitionError) as caught:
        await tasks.create({"name": "x", "job": job.id, "priority": "high"})
    assert caught.value.field == "priority"
    with pytest.raises(TaskDefinitionError) as caught:
        await tasks.create({"name": "x", "job": job.id, "dependencies": ["nobody"]})
    assert "nobody" in caught.value.message
    with pytest.raises(TaskDefinitionError) as caught:
        await tasks.create({"name": "<b>x</b>\x00", "job": job.id})
    assert caught.value.field == "name"
    assert await store.list_tasks() == []


async def test_a_fire_is_recorded_once_and_the_watermark_never_moves_back(
    store: SqlStore,
) -> None:
    _, job = await platform_and_job(store)
    task = await services(store).create({"name": "t", "job": job.id, "schedules": ["* * * * *"]})
    assert task.id is not None
    fire = T0 + timedelta(minutes=1)
    run = new_task_run(task, TriggerType.SCHEDULE, fire, fire)
    first, mark = await store.add_task_runs(task.id, [run], fire, watermark=(0, fire))
    second, mark2 = await store.add_task_runs(task.id, [run], fire, watermark=(0, T0))
    assert [r.scheduled_for for r in first] == [fire]
    assert second == []
    assert mark == mark2 == fire
    counts = await store.count_task_runs()
    assert counts == {(task.id, "Schedule", fire): 1}


async def test_on_overlap_skip_records_a_skipped_task_run(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    task = await services(store).create({"name": "t", "job": job.id, "on_overlap": "skip"})
    assert task.id is not None
    runs = [new_task_run(task, TriggerType.SCHEDULE, T0 + timedelta(minutes=m), T0) for m in (1, 2)]
    inserted, _ = await store.add_task_runs(task.id, runs, T0)
    assert [r.status for r in inserted] == [TaskRunStatus.QUEUED, TaskRunStatus.SKIPPED]
    assert "concurrency cap 1" in inserted[1].message


async def test_dispatch_holds_priority_and_the_cap_and_a_stale_write_is_refused(
    store: SqlStore,
) -> None:
    _, job = await platform_and_job(store)
    tasks = services(store)
    low = await tasks.create({"name": "low", "job": job.id, "priority": 10, "concurrency_cap": 2})
    high = await tasks.create({"name": "high", "job": job.id, "priority": 90})
    assert low.id is not None
    assert high.id is not None
    for task in (low, high):
        batch = [
            new_task_run(task, TriggerType.SCHEDULE, T0 + timedelta(minutes=m), T0)
            for m in range(3)
        ]
        await store.add_task_runs(task.id, batch, T0, overlap=False)
    begun = await store.begin_task_runs(T0, slots=10)
    # high: cap 1; low: cap 2; high first.
    assert [r.task_id for r in begun] == [high.id, low.id, low.id]
    assert all(r.status is TaskRunStatus.RUNNING and r.attempts[0].run_id is None for r in begun)
    assert await store.begin_task_runs(T0, slots=10) == []
    # A run attached, then ended Failed; a stale copy cannot be written over it.
    _, the_job = await platform_and_job(store, "other")
    run = await start(store, the_job)
    current = begun[0]
    attached = await store.save_task_run(current, attach_run(current, run.id))
    ended, _ = end_attempt(
        attached, TaskRunStatus.FAILED, T0, retry=high.retry, job_type=job.job_type
    )
    saved = await store.save_task_run(attached, ended)
    assert saved.status is TaskRunStatus.FAILED
    assert saved.attempts[0].run_id == run.id
    with pytest.raises(ConflictError, match="changed meanwhile"):
        await store.save_task_run(attached, ended)
    assert await store.task_run_of_run(run.id) == saved
    assert [e.status for e in saved.history] == [
        TaskRunStatus.QUEUED,
        TaskRunStatus.RUNNING,
        TaskRunStatus.FAILED,
    ]
    # The freed slot goes to the next high TaskRun.
    following = await store.begin_task_runs(T0, slots=10)
    assert [r.task_id for r in following] == [high.id]
    listed = await store.list_task_runs(TaskRunFilter(task_id=high.id))
    assert len(listed) == 3


async def test_a_dependency_cycle_is_decided_once(store: SqlStore) -> None:
    _, job = await platform_and_job(store)
    tasks = services(store)
    up = await tasks.create({"name": "up", "job": job.id})
    down = await tasks.create({"name": "down", "job": job.id, "dependencies": ["up"]})
    assert up.id is not None
    assert down.id is not None
    assert await store.decide_downstream(down.id, T0) is None  # waiting
    run = await tasks.run_once("up")
    begun = (await store.begin_task_runs(T0, 5))[0]
    assert begun.id == run.id
    end = T0 + timedelta(minutes=3)
    ended, _ = end_attempt(begun, TaskRunStatus.SUCCEEDED, end, retry=up.retry, job_type="x")
    await store.save_task_run(begun, ended)
    decided = await store.decide_downstream(down.id, end)
    assert decided is not None
    assert (decided.trigger, decided.scheduled_for, decided.status) == (
        TriggerType.DEPENDENCY,
        end,
        TaskRunStatus.QUEUED,
    )
    assert await store.decide_downstream(down.id, end + timedelta(minutes=1)) is None


async def test_delete_refuses_a_task_others_depend_on_and_cancel_and_repair_follow_the_rules(
    store: SqlStore,
) -> None:
    _, job = await platform_and_job(store)
    tasks = services(store)
    await tasks.create({"name": "up", "job": job.id})
    await tasks.create({"name": "down", "job": job.id, "dependencies": ["up"]})
    with pytest.raises(ConflictError, match="'down' depend on it"):
        await tasks.delete("up")
    queued = await tasks.run_once("down")
    with pytest.raises(ConflictError, match="Queued or Running"):
        await tasks.delete("down")
    assert queued.id is not None
    cancelled = await tasks.cancel_run(queued.id)
    assert cancelled.status is TaskRunStatus.CANCELLED
    with pytest.raises(TaskRunTransitionError):
        await tasks.cancel_run(queued.id)
    with pytest.raises(TaskRunTransitionError, match="never started a run"):
        await tasks.repair_run(queued.id)
    await tasks.delete("down")
    with pytest.raises(NotFoundError):
        await tasks.get("down")
