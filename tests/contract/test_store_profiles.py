"""Contention profiles in the store (D14), on a real SQLite file and a real PostgreSQL database:
the profile rows and links, and admission in the transaction that counts a run-now."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, text

from polysync.clock import ManualClock
from polysync.domain.contention import check_profile
from polysync.domain.models import RunStatus
from polysync.domain.records import Job, Run
from polysync.engine.ports import SubmitAdmission
from polysync.errors import ConflictError, NotFoundError, UsageError
from polysync.store import SqlStore, open_store
from polysync.task_services import TaskServices
from polysync.tasks.lifecycle import attach_run
from polysync.tasks.model import new_task_run
from polysync.tasks.states import TriggerType
from tests.contract.test_store import (
    T0,
    at,
    imported,
    new_platform,
    platform_and_job,
    snapshot,
    start,
)


def concurrency(name: str = "cap", **fields: Any) -> Any:
    return check_profile({"name": name, "type": "concurrency", "max_concurrent": 2} | fields)


def rate(name: str = "pace", **fields: Any) -> Any:
    return check_profile({"name": name, "type": "rate", "limit": 2, "window_s": 60} | fields)


async def admit(store: SqlStore, runs: list[Run], seconds: float, recheck_s: float = 5) -> Any:
    return await store.admit_submits([(r.id, None) for r in runs], at(seconds), recheck_s=recheck_s)


async def finish(store: SqlStore, run: Run, seconds: float) -> None:
    await store.record_submitted(run.id, f"db-{run.id}", "https://x/run", at(seconds), at(seconds))
    await store.record_snapshot(run.id, snapshot(RunStatus.SUCCESS, "done"), at(seconds), None)


def task_services(store: SqlStore) -> TaskServices:
    return TaskServices(store, ManualClock(T0.timestamp()))


async def runs_of(store: SqlStore, job: Job, count: int) -> list[Run]:
    return [await start(store, job) for _ in range(count)]


# ------------------------------------------------------------------ rows and links


async def test_the_schema_has_the_profile_tables(store: SqlStore) -> None:
    async with store.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        columns = {c["name"] for c in await conn.run_sync(lambda c: inspect(c).get_columns("runs"))}
    assert {
        "contention_profiles",
        "contention_profile_platforms",
        "contention_profile_tasks",
    } <= tables
    assert {"queued_at", "waiting_profile_id", "admitted_at"} <= columns


async def test_a_profile_is_stored_with_its_links_and_read_back_by_id_or_name(
    store: SqlStore,
) -> None:
    platform, job = await platform_and_job(store)
    other = await store.add_platform(new_platform("dev"), T0)
    task = await task_services(store).create({"name": "ingest", "job": job.id})
    profile = await store.add_profile(
        concurrency(queue_size_limit=3, queue_timeout_s=90, exceed_action="defer"),
        T0,
        platform_ids=[platform.id, other.id, platform.id],
        task_ids=[task.id],
        actor="cli:ops",
    )
    assert profile.platform_ids == tuple(sorted((platform.id, other.id)))
    assert profile.task_ids == (task.id,)
    assert profile.settings.queue_timeout_s == 90.0
    assert await store.get_profile("cap") == profile
    assert await store.get_profile(profile.id) == profile
    unlinked = await store.link_profile(profile.id, at(1), platform_ids=[other.id], unlink=True)
    assert unlinked.platform_ids == (platform.id,)
    audit = await store.list_audit_events()
    assert [e.action for e in audit][:2] == ["profile.unlink", "profile.create"]


async def test_a_taken_name_a_missing_platform_and_a_type_change_are_refused(
    store: SqlStore,
) -> None:
    platform, _ = await platform_and_job(store)
    profile = await store.add_profile(concurrency(), T0, platform_ids=[platform.id])
    with pytest.raises(ConflictError, match="'cap' already exists"):
        await store.add_profile(concurrency(), T0)
    with pytest.raises(NotFoundError, match="No platform with id 999"):
        await store.add_profile(concurrency("other"), T0, platform_ids=[999])
    assert [p.name for p in await store.list_profiles()] == ["cap"]  # nothing half-written
    with pytest.raises(UsageError, match="cannot change after creation"):
        await store.update_profile(profile.id, rate("cap"), at(1))
    with pytest.raises(NotFoundError, match="No contention profile named 'gone'"):
        await store.get_profile("gone")


async def test_removing_a_platform_or_a_profile_removes_the_links(store: SqlStore) -> None:
    platform = await store.add_platform(new_platform("dev"), T0)
    profile = await store.add_profile(concurrency(), T0, platform_ids=[platform.id])
    await store.remove_platform(platform.id, now=at(1))
    assert (await store.get_profile(profile.id)).platform_ids == ()
    await store.remove_profile(profile.id, at(2))
    assert await store.list_profiles() == []


# ------------------------------------------------------------------ admission


async def test_a_task_link_to_a_missing_task_is_refused_and_deleting_a_task_drops_its_links(
    store: SqlStore,
) -> None:
    _, job = await platform_and_job(store)
    task = await task_services(store).create({"name": "ingest", "job": job.id})
    assert task.id is not None
    with pytest.raises(NotFoundError, match="No Task with id 999") as refused:
        await store.add_profile(concurrency(), T0, task_ids=[task.id, 999])
    assert refused.value.hint is not None
    assert refused.value.hint.action == "list_tasks"
    assert await store.list_profiles() == []  # nothing half-written
    profile = await store.add_profile(concurrency(), T0, task_ids=[task.id])
    with pytest.raises(NotFoundError, match="No Task with id 999"):
        await store.link_profile(profile.id, at(1), task_ids=[999])
    assert (await store.get_profile(profile.id)).task_ids == (task.id,)
    await store.delete_task(task.id, at(2))
    assert (await store.get_profile(profile.id)).task_ids == ()


async def test_a_run_of_a_task_is_judged_by_the_profiles_of_its_task_and_of_its_platform(
    store: SqlStore,
) -> None:
    platform, job = await platform_and_job(store)
    task = await task_services(store).create(
        {"name": "ingest", "job": job.id, "concurrency_cap": 5}
    )
    assert task.id is not None
    await store.add_profile(concurrency("plat", max_concurrent=2), T0, platform_ids=[platform.id])
    await store.add_profile(concurrency("one-at-a-time", max_concurrent=1), T0, task_ids=[task.id])
    batch = [
        new_task_run(task, TriggerType.SCHEDULE, T0 + timedelta(minutes=m), T0) for m in (1, 2)
    ]
    await store.add_task_runs(task.id, batch, T0, overlap=True)
    first_tr, second_tr = sorted(await store.begin_task_runs(T0, slots=5), key=lambda r: r.id)
    # The first attempt's run is attached; the second's is not yet (an engine creates the run
    # keyed by the attempt, then attaches it): both carry their Task.
    first = await start(store, job, key=f"taskrun-{first_tr.id}-attempt-1")
    await store.save_task_run(first_tr, attach_run(first_tr, first.id))
    plain = await start(store, job)
    second = await start(store, job, key=f"taskrun-{second_tr.id}-attempt-1")
    # The Task's profile is full after `first`; `plain` is no run of the Task: only the
    # platform's profile judges it.
    admission = await admit(store, [first, plain, second], 1)
    assert [r.id for r in admission.begun] == [first.id, plain.id]
    (waiting,) = admission.held_back
    assert waiting.id == second.id
    assert waiting.status is RunStatus.QUEUED
    assert waiting.message == (
        "Waiting for profile 'plat' (2 of 2 running); "
        "Waiting for profile 'one-at-a-time' (1 of 1 running)"
    )
    await finish(store, plain, 2)
    (still,) = (await admit(store, [second], 6)).held_back
    assert still.message == "Waiting for profile 'one-at-a-time' (1 of 1 running)"
    await finish(store, first, 7)
    (admitted,) = (await admit(store, [second], 11)).begun
    assert (admitted.status, admitted.admitted_at) == (RunStatus.STARTING, at(11))


async def test_a_global_profile_counts_its_platforms_and_its_tasks_together(
    store: SqlStore,
) -> None:
    platform, job = await platform_and_job(store)
    _, elsewhere = await platform_and_job(store, "other")
    task = await task_services(store).create({"name": "score", "job": elsewhere.id})
    assert task.id is not None
    await store.add_profile(
        concurrency(scope="global"), T0, platform_ids=[platform.id], task_ids=[task.id]
    )
    await store.add_task_runs(task.id, [new_task_run(task, TriggerType.MANUAL, T0, T0)], T0)
    (task_run,) = await store.begin_task_runs(T0, slots=5)
    of_task = await start(store, elsewhere, key=f"taskrun-{task_run.id}-attempt-1")
    await store.save_task_run(task_run, attach_run(task_run, of_task.id))
    here = await start(store, job)
    # On the Task's platform but no run of the Task: not counted, not judged.
    bystander = await start(store, elsewhere)
    late = await start(store, job)
    admission = await admit(store, [of_task, here, bystander, late], 1)
    assert [r.id for r in admission.begun] == [of_task.id, here.id, bystander.id]
    (waiting,) = admission.held_back
    assert (waiting.id, waiting.message) == (late.id, "Waiting for profile 'cap' (2 of 2 running)")
    await finish(store, of_task, 2)  # the Task's run frees the shared slot
    assert [r.id for r in (await admit(store, [late], 6)).begun] == [late.id]


async def test_a_concurrency_profile_queues_the_run_over_the_cap_until_a_slot_frees(
    store: SqlStore,
) -> None:
    platform, job = await platform_and_job(store)
    await store.add_profile(concurrency(), T0, platform_ids=[platform.id])
    first, second, third = await runs_of(store, job, 3)
    admission = await admit(store, [first, second, third], 1)
    assert [r.id for r in admission.begun] == [first.id, second.id]
    (waiting,) = admission.held_back
    assert waiting.status is RunStatus.QUEUED
    assert waiting.message == "Waiting for profile 'cap' (2 of 2 running)"
    assert (waiting.queued_at, waiting.next_poll_at, waiting.lease_owner) == (at(1), at(6), None)
    assert [e.status for e in await store.run_events(third.id)] == [
        RunStatus.STARTING,
        RunStatus.QUEUED,
    ]
    # Still full: no new event, the next try moves on.
    again = await admit(store, [third], 6)
    assert again.begun == []
    assert again.held_back[0].next_poll_at == at(11)
    assert len(await store.run_events(third.id)) == 2
    await finish(store, first, 8)
    (admitted,) = (await admit(store, [third], 11)).begun
    assert admitted.status is RunStatus.STARTING
    assert admitted.message == "Submitting to Databricks"
    assert (admitted.admitted_at, admitted.waiting_profile_id, admitted.submit_attempts) == (
        at(11),
        None,
        1,
    )


async def test_a_disabled_or_unlinked_profile_admits_everything(store: SqlStore) -> None:
    platform, job = await platform_and_job(store)
    profile = await store.add_profile(concurrency(max_concurrent=1), T0, platform_ids=[platform.id])
    runs = await runs_of(store, job, 3)
    assert len((await admit(store, runs[:2], 1)).begun) == 1
    await store.update_profile(profile.id, concurrency(max_concurrent=1, enabled=False), at(2))
    # The edit makes the waiting run due at once: no restart, no wait for its next try.
    assert (await store.get_run(runs[1].id)).next_poll_at == at(2)
    assert len((await admit(store, runs[1:], 3)).begun) == 2


async def test_a_re_sent_run_is_not_judged_again(store: SqlStore) -> None:
    platform, job = await platform_and_job(store)
    await store.add_profile(concurrency(max_concurrent=1), T0, platform_ids=[platform.id])
    (run,) = await runs_of(store, job, 1)
    assert len((await admit(store, [run], 1)).begun) == 1
    # run-now not confirmed: the same run is sent again with its token, already admitted.
    (again,) = (await admit(store, [run], 2)).begun
    assert (again.submit_attempts, again.admitted_at) == (2, at(1))


async def test_a_rate_profile_counts_a_start_from_when_databricks_answered_run_now(
    store: SqlStore,
) -> None:
    """Admitted at 1 s, their run-now answered only at 30 s (a slow call, or an engine killed
    before it sent and its lease taken over): Databricks started them near 30 s, so their
    tokens come back at 90 s, not 61 s - else a third start at 62 s would make three in the
    workspace's window 30-90 s (kill -9 benchmark, benchmarks/contention_chaos.py)."""
    platform, job = await platform_and_job(store)
    await store.add_profile(rate(limit=2, window_s=60), T0, platform_ids=[platform.id])
    first, second, third = await runs_of(store, job, 3)
    assert len((await admit(store, [first, second], 1)).begun) == 2
    for run in (first, second):
        await store.record_submitted(run.id, f"db-{run.id}", "https://x/run", at(30), at(31))
        assert (await store.get_run(run.id)).admitted_at == at(30)
    (waiting,) = (await admit(store, [third], 62)).held_back
    assert waiting.message == "Waiting for profile 'pace' (2 of 2 started in the last 60 s)"
    assert waiting.next_poll_at == at(90)
    assert len((await admit(store, [third], 90)).begun) == 1
    # A run-now answered again (same token, same RunId) is not a new start: nothing moves.
    await store.record_submitted(first.id, f"db-{first.id}", "https://x/run", at(94), at(95))
    assert (await store.get_run(first.id)).admitted_at == at(30)


async def test_reject_fails_the_run_with_the_profile_named(store: SqlStore) -> None:
    platform, job = await platform_and_job(store)
    await store.add_profile(
        concurrency(max_concurrent=1, exceed_action="reject"), T0, platform_ids=[platform.id]
    )
    first, second = await runs_of(store, job, 2)
    admission = await admit(store, [first, second], 1)
    (rejected,) = admission.held_back
    assert rejected.status is RunStatus.FAILED
    assert rejected.message == (
        "Rejected by contention profile 'cap' (1 of 1 running); its Exceed Action is Reject. "
        "Execute it again later."
    )
    assert (rejected.submit_attempts, rejected.ended_at, rejected.next_poll_at) == (0, at(1), None)


async def test_a_queue_timeout_and_a_full_queue_fail_the_run_with_a_clear_message(
    store: SqlStore,
) -> None:
    platform, job = await platform_and_job(store)
    await store.add_profile(
        concurrency(max_concurrent=1, queue_size_limit=1, queue_timeout_s=30),
        T0,
        platform_ids=[platform.id],
    )
    running, waiting, extra = await runs_of(store, job, 3)
    admission = await admit(store, [running, waiting, extra], 1)
    assert [r.status for r in admission.held_back] == [RunStatus.QUEUED, RunStatus.FAILED]
    assert admission.held_back[1].message.startswith(
        "Rejected: the queue of contention profile 'cap' is full (1 waiting, Queue Size Limit 1"
    )
    # The next try is at the queue timeout at the latest.
    assert admission.held_back[0].next_poll_at == at(6)
    (timed_out,) = (await admit(store, [waiting], 31)).held_back
    assert timed_out.status is RunStatus.FAILED
    assert timed_out.message == (
        "Timed out waiting for contention profile 'cap' (1 of 1 running): waited 30 s, its "
        "Queue Timeout Seconds is 30."
    )


async def test_defer_moves_the_run_to_the_next_window(store: SqlStore) -> None:
    platform, job = await platform_and_job(store)
    await store.add_profile(
        rate(limit=1, window_s=60, exceed_action="defer"), T0, platform_ids=[platform.id]
    )
    first, second = await runs_of(store, job, 2)
    (deferred,) = (await admit(store, [first, second], 10)).held_back
    assert deferred.status is RunStatus.QUEUED
    assert deferred.next_poll_at == at(70)
    assert deferred.message.startswith(
        "Deferred by profile 'pace' (1 of 1 started in the last 60 s)"
    )
    assert len((await admit(store, [second], 70)).begun) == 1


async def test_a_token_bucket_allows_a_burst_then_one_start_per_returned_token(
    store: SqlStore,
) -> None:
    platform, job = await platform_and_job(store)
    await store.add_profile(rate(limit=3, window_s=60), T0, platform_ids=[platform.id])
    runs = await runs_of(store, job, 5)
    admission = await admit(store, runs, 0)
    assert len(admission.begun) == 3
    assert {r.next_poll_at for r in admission.held_back} == {at(60)}
    assert admission.held_back[0].message == (
        "Waiting for profile 'pace' (3 of 3 started in the last 60 s)"
    )
    assert (await admit(store, runs[3:], 59.5)).begun == []
    assert len((await admit(store, runs[3:], 60)).begun) == 2


async def test_a_leaky_bucket_spaces_the_starts_evenly(store: SqlStore) -> None:
    platform, job = await platform_and_job(store)
    await store.add_profile(
        rate(limit=4, window_s=60, algorithm="leaky-bucket"), T0, platform_ids=[platform.id]
    )
    runs = await runs_of(store, job, 3)
    admission = await admit(store, runs, 0)
    assert len(admission.begun) == 1
    assert admission.held_back[0].message == "Waiting for profile 'pace' (one start per 15 s)"
    assert admission.held_back[0].next_poll_at == at(15)
    assert len((await admit(store, runs[1:], 15)).begun) == 1


async def test_per_platform_counts_each_platform_and_global_counts_them_together(
    store: SqlStore,
) -> None:
    prod, prod_job = await platform_and_job(store)
    dev = await store.add_platform(new_platform("dev"), T0)
    dev_job, _ = await store.upsert_job(dev.id, imported(), T0)
    profile = await store.add_profile(
        concurrency(max_concurrent=1), T0, platform_ids=[prod.id, dev.id]
    )
    runs = [await start(store, prod_job), await start(store, dev_job)]
    assert len((await admit(store, runs, 1)).begun) == 2
    await store.update_profile(profile.id, concurrency(max_concurrent=2, scope="global"), at(2))
    more = [await start(store, prod_job), await start(store, dev_job)]
    admission = await admit(store, more, 3)
    assert admission.begun == []
    assert admission.held_back[0].message == "Waiting for profile 'cap' (2 of 2 running)"


async def test_every_profile_of_the_platform_must_admit_the_run(store: SqlStore) -> None:
    platform, job = await platform_and_job(store)
    await store.add_profile(concurrency(max_concurrent=5), T0, platform_ids=[platform.id])
    await store.add_profile(rate(limit=1), T0, platform_ids=[platform.id])
    runs = await runs_of(store, job, 2)
    admission = await admit(store, runs, 1)
    assert len(admission.begun) == 1
    assert admission.held_back[0].message == (
        "Waiting for profile 'pace' (1 of 1 started in the last 60 s)"
    )


async def test_two_stores_admitting_at_once_never_exceed_the_cap(database_url: str) -> None:
    """Two engines (two stores, two connection pools) admit the same profile's runs at the same
    time: the profile's row lock makes them take turns, so the cap holds."""
    async with await open_store(database_url) as first, await open_store(database_url) as second:
        platform, job = await platform_and_job(first)
        await first.add_profile(concurrency(max_concurrent=3), T0, platform_ids=[platform.id])
        runs = await runs_of(first, job, 12)
        results = await asyncio.gather(
            first.admit_submits([(r.id, None) for r in runs[:6]], at(1), recheck_s=5),
            second.admit_submits([(r.id, None) for r in runs[6:]], at(1), recheck_s=5),
        )
        assert sum(len(r.begun) for r in results) == 3
        async with first.engine.connect() as conn:
            admitted = await conn.scalar(
                text("SELECT count(*) FROM runs WHERE admitted_at IS NOT NULL")
            )
        assert admitted == 3


async def test_a_queued_run_cancelled_ends_at_once_and_is_never_sent(store: SqlStore) -> None:
    platform, job = await platform_and_job(store)
    await store.add_profile(concurrency(max_concurrent=1), T0, platform_ids=[platform.id])
    first, second = await runs_of(store, job, 2)
    await admit(store, [first, second], 1)
    cancelled = await store.request_cancel(second.id, at(2), cancelled_by="cli:ops")
    assert cancelled.status is RunStatus.CANCELLED
    assert cancelled.message == "Cancelled before it was submitted to Databricks"
    await finish(store, first, 3)
    assert await admit(store, [second], 4) == SubmitAdmission([], [])
    assert (await store.get_run(second.id)).submit_attempts == 0


async def test_a_waiting_run_is_claimed_by_any_engine_when_it_falls_due(store: SqlStore) -> None:
    platform, job = await platform_and_job(store)
    await store.add_profile(concurrency(max_concurrent=1), T0, platform_ids=[platform.id])
    _, second = await runs_of(store, job, 2)
    claimed = await store.claim_due_runs("engine-a", at(1), 60, 10)
    admission = await store.admit_submits([(r.id, r.lease) for r in claimed], at(1), recheck_s=5)
    assert [r.id for r in admission.held_back] == [second.id]
    # Not held by engine-a any more: due at its next try, engine-b may take it.
    assert await store.claim_due_runs("engine-b", at(5), 60, 10) == []
    (taken,) = await store.claim_due_runs("engine-b", at(6), 60, 10)
    assert (taken.id, taken.lease_owner) == (second.id, "engine-b")
