"""The engine against the emulator (ASGI transport) and a real SQLite file, on manual clocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from polysync.domain.models import RunStatus
from polysync.domain.records import RunFilter
from polysync.emulator.faults import Fault
from polysync.services import Services
from tests.conftest import EmulatorHarness, autojump, open_services
from tests.integration.conftest import (
    BACKFILL,
    FRAUD,
    SALES,
    databricks_runs,
    drive,
)


async def test_execute_watch_to_success_and_record_each_change_once(
    harness: EmulatorHarness, services: Services
) -> None:
    job = await services.get_job(SALES, platform="demo")
    recorded = await services.execute(job, {"env": "dev", "batch_size": "1000"})
    # Execute Now records the intent and returns; the engine makes the calls (issue 8).
    assert recorded.run_id is None
    assert databricks_runs(harness) == []
    await services.engine.step()
    run = await services.store.get_run(recorded.id)
    assert run.run_id is not None
    assert run.status is RunStatus.STARTING
    # D7 (amended): before the first poll, {workspace}/#job/{job_id}/run/{run_id}.
    assert run.run_page_url == f"{harness.base_url}/#job/{SALES}/run/{run.run_id}"
    assert dict(run.parameters_sent)["env"] == "dev"
    await drive(harness, services.engine, run.id)
    done, _, events = await services.run_details(run.id)
    assert done.status is RunStatus.SUCCESS
    assert done.run_page_url is not None
    assert "?o=1234567890123456#job/" in done.run_page_url
    assert [e.status for e in events] == [
        RunStatus.STARTING,  # committed, submitting
        RunStatus.STARTING,  # submitted to Databricks
        RunStatus.RUNNING,
        RunStatus.SUCCESS,
    ] or [e.status for e in events][-1] is RunStatus.SUCCESS
    statuses = [e.status for e in events]
    assert statuses.count(RunStatus.SUCCESS) == 1
    assert statuses.count(RunStatus.RUNNING) == 1
    assert {t.task_key for t in done.tasks} == {"ingest", "clean", "enrich", "publish"}
    assert databricks_runs(harness) == [int(done.run_id)]  # type: ignore[arg-type]


async def test_crash_between_commit_and_run_now_is_recovered_by_a_new_engine(
    harness: EmulatorHarness, services: Services, tmp_path: Path
) -> None:
    job = await services.get_job(SALES, platform="demo")
    run = await services.engine.submit(job, {})  # committed; the process "dies" here
    assert databricks_runs(harness) == []
    restarted = await open_services(harness, tmp_path / "polysync.db")
    try:
        assert await restarted.engine.reconcile() == 1
        await restarted.engine.step()
        recovered = await restarted.store.get_run(run.id)
        assert recovered.run_id is not None
        assert databricks_runs(harness) == [int(recovered.run_id)]
    finally:
        await restarted.aclose()


async def test_crash_after_run_now_before_recording_reattaches_through_the_token(
    harness: EmulatorHarness, services: Services, tmp_path: Path
) -> None:
    job = await services.get_job(SALES, platform="demo")
    run = await services.engine.submit(job, {})
    platform = await services.store.get_platform("demo")
    # run-now reached Databricks, then the engine died before committing the RunId.
    started = await services.connections.for_job(platform, job).start(
        job.as_imported(), {}, idempotency_token=run.idempotency_token
    )
    restarted = await open_services(harness, tmp_path / "polysync.db")
    try:
        await restarted.engine.reconcile()
        await restarted.engine.step()
        recovered = await restarted.store.get_run(run.id)
        assert recovered.run_id == started.run_id
        assert databricks_runs(harness) == [int(started.run_id)]
    finally:
        await restarted.aclose()


async def test_lost_run_now_response_starts_exactly_one_run(
    harness: EmulatorHarness, services: Services
) -> None:
    harness.app.emulator.faults.add(
        Fault(method="POST", path="jobs/run-now$", kind="lose_response", times=1)
    )
    job = await services.get_job(SALES, platform="demo")
    run = await services.execute(job, {})
    await autojump(harness.real_clock, services.engine.step())  # type: ignore[arg-type]
    run = await services.store.get_run(run.id)
    assert run.run_id is not None
    assert databricks_runs(harness) == [int(run.run_id)]
    assert harness.app.emulator.stats.count("jobs/run-now") == 2


async def test_refused_start_fails_the_run_with_the_reason(
    harness: EmulatorHarness, services: Services
) -> None:
    job = await services.get_job(SALES, platform="demo")
    harness.state.delete_job(int(SALES))
    run = await services.execute(job, {})
    await services.engine.step()
    run = await services.store.get_run(run.id)
    assert run.status is RunStatus.FAILED
    assert run.message.startswith("INVALID_PARAMETER_VALUE: job_id")
    assert run.run_id is None
    assert databricks_runs(harness) == []


async def test_cancel_is_sent_and_confirmed(harness: EmulatorHarness, services: Services) -> None:
    job = await services.get_job(BACKFILL, platform="demo")
    run = await services.execute(job, {})
    await services.engine.step()
    harness.advance(60)
    await services.engine.step()
    cancelled = await services.cancel(run.id)
    assert cancelled.cancel_requested_at is not None
    assert cancelled.run_id is not None
    assert not harness.state.runs[int(cancelled.run_id)].cancel_requested  # only recorded
    await services.engine.step()  # the engine sends it
    assert harness.state.runs[int(cancelled.run_id)].cancel_requested
    await drive(harness, services.engine, run.id)
    final = await services.store.get_run(run.id)
    assert final.status is RunStatus.CANCELLED
    with pytest.raises(Exception, match="nothing to cancel"):
        await services.cancel(run.id)


async def test_failed_run_keeps_the_task_error_in_its_message(
    harness: EmulatorHarness, services: Services
) -> None:
    job = await services.get_job(FRAUD, platform="demo")
    run = await services.execute(job, {})
    await drive(harness, services.engine, run.id)
    final = await services.store.get_run(run.id)
    assert final.status is RunStatus.FAILED
    assert "build_features" in final.message
    assert "merchant_category" in final.message


async def test_many_runs_are_swept_with_runs_list_not_polled_one_by_one(
    harness: EmulatorHarness, services: Services
) -> None:
    job = await services.get_job(BACKFILL, platform="demo")
    harness.state.jobs[int(BACKFILL)].settings["max_concurrent_runs"] = 100
    runs = [await services.engine.submit(job, {}) for _ in range(30)]
    await autojump(harness.real_clock, services.engine.step())  # type: ignore[arg-type]
    stats = harness.app.emulator.stats
    base_get = stats.count("jobs/runs/get")
    for _ in range(20):  # 20 x 15 s of a run that lasts hours
        harness.advance(15)
        await autojump(harness.real_clock, services.engine.step())  # type: ignore[arg-type]
    swept_gets = stats.count("jobs/runs/get") - base_get
    # 30 runs watched for 5 minutes: one Starting->Running change each, plus a task refresh.
    assert swept_gets <= 30 * 3
    assert stats.count("jobs/runs/list") >= 10
    listed = await services.list_runs(RunFilter(job_id=job.id))
    assert {r.id for r in listed} == {r.id for r in runs}
    assert all(r.status is RunStatus.RUNNING for r in listed)


async def test_two_engines_on_one_store_never_start_a_run_twice(
    harness: EmulatorHarness, services: Services, tmp_path: Path
) -> None:
    job = await services.get_job(SALES, platform="demo")
    harness.state.jobs[int(SALES)].settings["max_concurrent_runs"] = 100
    other = await open_services(harness, tmp_path / "polysync.db")
    try:
        runs = [await services.engine.submit(job, {}) for _ in range(12)]
        import asyncio

        both = asyncio.gather(services.engine.step(), other.engine.step())
        await autojump(harness.real_clock, both)  # type: ignore[arg-type]  # run-now is paced
        stored = [await services.store.get_run(r.id) for r in runs]
        assert all(r.run_id for r in stored)
        assert len(databricks_runs(harness)) == 12
        assert sorted(int(r.run_id) for r in stored) == databricks_runs(harness)  # type: ignore[arg-type]
    finally:
        await other.aclose()


async def test_graceful_shutdown_releases_leases_and_leaves_runs_running(
    harness: EmulatorHarness, services: Services
) -> None:
    import asyncio

    job = await services.get_job(BACKFILL, platform="demo")
    run = await services.execute(job, {})
    await services.engine.step()
    run = await services.store.get_run(run.id)
    stop = asyncio.Event()
    stop.set()  # reconcile, release, stop
    await services.engine.run_forever(stop)
    stored = await services.store.get_run(run.id)
    assert stored.lease_owner is None
    assert harness.state.runs[int(run.run_id)].active  # type: ignore[arg-type]
