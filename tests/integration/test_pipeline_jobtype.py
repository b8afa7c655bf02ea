"""Acceptance: the Databricks Pipeline job type through services, the engine and the emulator over
HTTP (pipelines list/get, updates start/get, stop, events)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from polysync.domain.models import DataType, Direction, RunStatus
from polysync.domain.records import Job, RunFilter
from polysync.errors import InvalidExternalIdError, ParameterValueError, UsageError
from polysync.services import Services
from tests.conftest import EmulatorHarness
from tests.integration.conftest import drive

SALES_DLT = "6f1c2b7e-3a4d-4e5f-8a9b-0c1d2e3f4a5b"
IOT_DLT = "0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d"
PIPELINE = "Databricks Pipeline"


async def imported(services: Services, pipeline_id: str) -> Job:
    _, results = await services.import_jobs("demo", [pipeline_id])
    assert results[0].error is None, results[0].error
    job = results[0].job
    assert job is not None
    return job


async def test_discovery_lists_every_pipeline(services: Services) -> None:
    _, found = await services.discover("demo")
    pipelines = {job.external_id: job for job in found if job.kind == PIPELINE}
    assert set(pipelines) == {SALES_DLT, IOT_DLT}
    assert pipelines[SALES_DLT].name == "sales-medallion-dlt"


async def test_import_full_refresh_and_configuration_for_reference(services: Services) -> None:
    job = await imported(services, SALES_DLT)
    assert job.job_type == PIPELINE
    assert job.name == "sales-medallion-dlt"
    by_name = {p.name: p for p in job.parameters}
    full_refresh = by_name.pop("full_refresh")
    assert full_refresh.data_type is DataType.BOOL
    assert full_refresh.default == "false"
    assert full_refresh.direction is Direction.INPUT
    assert full_refresh.is_sent
    assert {name: p.default for name, p in by_name.items()} == {
        "source_path": "/mnt/landing/pos",
        "quality_threshold": "0.98",
    }
    assert all(p.reference_only and not p.is_sent for p in by_name.values())


async def test_execute_full_refresh_watch_to_success(
    harness: EmulatorHarness, services: Services
) -> None:
    job = await imported(services, SALES_DLT)
    run = await services.execute(job, {"full_refresh": "True"})
    assert dict(run.parameters_sent) == {"full_refresh": "true"}
    await services.engine.step()
    started = await services.store.get_run(run.id)
    assert started.run_id is not None
    pipeline_id, update_id = started.run_id.split(":")
    assert pipeline_id == SALES_DLT
    update = harness.state.pipelines.by_id[SALES_DLT].updates[-1]
    assert update.update_id == update_id
    assert update.full_refresh is True
    assert started.run_page_url == (
        f"{harness.base_url}/#joblist/pipelines/{SALES_DLT}/updates/{update_id}"
    )
    await drive(harness, services.engine, run.id)
    done, _, events = await services.run_details(run.id)
    assert done.status is RunStatus.SUCCESS, done.message
    statuses = [event.status for event in events]
    assert RunStatus.RUNNING in statuses
    assert statuses[-1] is RunStatus.SUCCESS
    assert done.life_cycle_state == "COMPLETED"


async def test_a_failed_update_carries_the_error_events(
    harness: EmulatorHarness, services: Services
) -> None:
    job = await imported(services, IOT_DLT)
    run = await services.execute(job, {})
    assert dict(run.parameters_sent) == {"full_refresh": "false"}
    await drive(harness, services.engine, run.id)
    done = await services.store.get_run(run.id)
    assert done.status is RunStatus.FAILED
    assert "TABLE_OR_VIEW_NOT_FOUND" in done.message
    assert "org.apache.spark.sql.AnalysisException" in done.message


async def test_cancel_stops_the_active_update(harness: EmulatorHarness, services: Services) -> None:
    job = await imported(services, SALES_DLT)
    run = await services.execute(job, {})
    await services.engine.step()
    harness.advance(20)
    await services.cancel(run.id)
    await drive(harness, services.engine, run.id)
    done = await services.store.get_run(run.id)
    assert done.status is RunStatus.CANCELLED
    assert harness.state.pipelines.by_id[SALES_DLT].updates[-1].state == "CANCELED"


async def test_a_start_while_an_update_is_active_shows_databricks_refusal(
    harness: EmulatorHarness, services: Services
) -> None:
    job = await imported(services, SALES_DLT)
    first = await services.execute(job, {})
    second = await services.execute(job, {})
    await services.engine.step()
    runs = {r.id: r for r in await services.store.list_runs(RunFilter())}
    # Both starts are sent in one cycle, concurrently: whichever Databricks saw second is refused.
    started = [runs[r.id] for r in (first, second) if runs[r.id].run_id is not None]
    assert len(started) == 1
    (refused,) = [runs[r.id] for r in (first, second) if runs[r.id].run_id is None]
    assert refused.status is RunStatus.FAILED
    assert "An active update" in refused.message
    assert "already exists" in refused.message
    assert len(harness.state.pipelines.by_id[SALES_DLT].updates) == 1


async def test_overrides_are_checked_before_anything_is_sent(services: Services) -> None:
    job = await imported(services, SALES_DLT)
    with pytest.raises(ParameterValueError, match="Bool"):
        await services.execute(job, {"full_refresh": "sometimes"})
    with pytest.raises(UsageError, match="reference only"):
        await services.execute(job, {"source_path": "/mnt/other"})
    assert await services.store.list_runs(RunFilter()) == []


async def test_a_pipeline_id_is_checked_before_any_call(services: Services) -> None:
    _, results = await services.import_jobs("demo", ["6f1c2b7e-not-a-uuid"])
    assert isinstance(results[0].error, InvalidExternalIdError)
    _, results = await services.import_jobs("demo", ["11111111-2222-3333-4444-555555555555"])
    assert results[0].error is not None
    assert "does not exist" in str(results[0].error)


async def test_stored_values_go_through_one_rule_whatever_the_adapter(services: Services) -> None:
    job = await imported(services, SALES_DLT)

    def with_value(name: str, value: str) -> Job:
        return replace(
            job,
            parameters=tuple(
                replace(p, stored_value=value) if p.name == name else p for p in job.parameters
            ),
        )

    saved = await services.save_job(with_value("full_refresh", " TRUE "))
    assert {p.name: p.stored_value for p in saved.parameters}["full_refresh"] == "TRUE"
    with pytest.raises(ParameterValueError, match="Bool"):
        await services.save_job(with_value("full_refresh", "often"))
    with pytest.raises(UsageError, match="reference only"):
        await services.save_job(with_value("source_path", "/elsewhere"))
    run = await services.execute(saved, {})
    assert dict(run.parameters_sent) == {"full_refresh": "true"}


def update_gets(harness: EmulatorHarness, *run_ids: str) -> int:
    """Requests for these updates' `pipelines/{id}/updates/{update_id}`."""
    stats = harness.app.emulator.stats
    return sum(stats.count("pipelines/" + run_id.replace(":", "/updates/")) for run_id in run_ids)


async def test_the_sweep_lists_a_pipelines_updates_once_and_gets_a_lone_one(
    harness: EmulatorHarness, services: Services
) -> None:
    # Issue 11: pipeline updates are swept per pipeline, not polled one by one: a pipeline with
    # several of our updates costs one `pipelines/{id}/updates` listing, one with a single
    # update its `updates/{update_id}`; a bad RunId is left to its poll.
    platform = await services.get_platform("demo")
    pipelines = services.connections.job_type(platform, PIPELINE)
    client = services.connections.client(platform)
    first = (await client.start_pipeline_update(SALES_DLT, full_refresh=False))["update_id"]
    harness.advance(120)  # the first update completes
    second = (await client.start_pipeline_update(SALES_DLT, full_refresh=False))["update_id"]
    lone = (await client.start_pipeline_update(IOT_DLT, full_refresh=False))["update_id"]
    ours = [f"{SALES_DLT}:{first}", f"{SALES_DLT}:{second}", f"{IOT_DLT}:{lone}", "junk"]
    stats = harness.app.emulator.stats
    lists = stats.count(f"pipelines/{SALES_DLT}/updates", method="GET")
    gets = update_gets(harness, *ours[:3])
    seen = await pipelines.sweep(ours)
    assert stats.count(f"pipelines/{SALES_DLT}/updates", method="GET") - lists == 1
    assert update_gets(harness, *ours[:3]) - gets == 1
    assert update_gets(harness, ours[2]) == 1  # the lone update's
    assert set(seen) == set(ours[:3])
    assert seen[f"{SALES_DLT}:{first}"].status is RunStatus.SUCCESS
    assert seen[f"{SALES_DLT}:{second}"].status is RunStatus.STARTING
    assert seen[f"{IOT_DLT}:{lone}"].status is RunStatus.STARTING


async def test_a_pipeline_run_is_watched_by_its_own_sweep_not_by_runs_list(
    harness: EmulatorHarness, services: Services
) -> None:
    # The engine sweeps each job type's sweep group: a platform watching only a pipeline update
    # makes no jobs/runs/list call, and its update is seen by one call per grid point.
    job = await imported(services, SALES_DLT)
    run = await services.execute(job, {})
    await services.engine.step()
    stats = harness.app.emulator.stats
    started = await services.store.get_run(run.id)
    assert started.run_id is not None
    runs_lists, gets = stats.count("jobs/runs/list"), update_gets(harness, started.run_id)
    harness.advance(services.engine.settings.policy.sweep_interval_s)
    report = await services.engine.step()
    assert report.swept_platforms == 1
    assert stats.count("jobs/runs/list") == runs_lists
    assert update_gets(harness, started.run_id) - gets == 1
    seen = await services.store.get_run(run.id)
    assert seen.status is RunStatus.STARTING
    assert seen.life_cycle_state == "INITIALIZING"  # 10 s in: past WAITING_FOR_RESOURCES
