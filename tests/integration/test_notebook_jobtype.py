"""Acceptance: the Databricks Notebook job type through services, the engine and the emulator over
HTTP (workspace/list, workspace/export, jobs/runs/submit, runs/get, runs/cancel)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from polysync.domain.models import DataType, RunStatus
from polysync.domain.records import PLATFORM_ATTRIBUTES, Platform, RunFilter
from polysync.errors import ConfigError, InvalidExternalIdError, ParameterValueError, UsageError
from polysync.services import Services
from tests.conftest import EmulatorHarness
from tests.integration.conftest import drive

REPORT = "/Shared/polysync-demo/daily_sales_report"
KPIS = "/Shared/polysync-demo/refresh_kpis"
SCORE = "/Shared/polysync-demo/score_customers"
FORECAST = "/Shared/polysync-demo/forecast_demand"
NOTEBOOK = "Databricks Notebook"


async def with_attributes(services: Services, **attributes: str) -> Platform:
    platform = await services.store.get_platform("demo")
    options = {**platform.options, PLATFORM_ATTRIBUTES: attributes}
    return await services.update_platform(replace(platform, options=options))


async def test_discovery_walks_the_default_notebook_path(services: Services) -> None:
    await with_attributes(services, default_notebook_path="/Shared/polysync-demo")
    _, found = await services.discover("demo")
    notebooks = {job.external_id: job for job in found if job.kind == NOTEBOOK}
    assert set(notebooks) == {REPORT, KPIS, SCORE, FORECAST}
    assert notebooks[REPORT].name == "daily_sales_report"
    assert notebooks[KPIS].tags == {"language": "SQL"}
    # The Jobs API jobs and the pipelines are discovered beside them, each by its own type.
    kinds = {job.kind for job in found}
    assert {"Databricks Workflow", "Databricks Pipeline", NOTEBOOK} <= kinds


async def test_discovery_from_the_root_finds_the_same_notebooks(services: Services) -> None:
    _, found = await services.discover("demo")
    assert {j.external_id for j in found if j.kind == NOTEBOOK} >= {REPORT, KPIS, SCORE, FORECAST}


async def test_import_reads_the_widgets_of_the_four_languages(services: Services) -> None:
    _, results = await services.import_jobs("demo", [REPORT, KPIS, SCORE, FORECAST])
    assert [r.error for r in results] == [None] * 4
    jobs = {r.external_id: r.job for r in results}
    report = jobs[REPORT]
    assert report is not None
    assert report.job_type == NOTEBOOK
    widgets = {p.name: p for p in report.parameters}
    assert list(widgets) == ["run_date", "region", "currency", "channels"]
    assert widgets["region"].default == "emea"
    assert widgets["region"].choices == ("emea", "apac", "amer")
    assert widgets["region"].source == "dbutils.widgets.dropdown"
    assert widgets["channels"].source == "dbutils.widgets.multiselect"
    assert all(p.data_type is DataType.STRING for p in report.parameters)
    sql = jobs[KPIS]
    assert sql is not None
    assert {p.name: (p.default, p.choices) for p in sql.parameters} == {
        "as_of": ("2026-11-30", ()),
        "granularity": ("day", ("day", "week", "month")),
    }
    scala = jobs[SCORE]
    assert scala is not None
    assert {p.name: p.default for p in scala.parameters} == {"model_version": "7", "mode": "batch"}
    r_notebook = jobs[FORECAST]
    assert r_notebook is not None
    assert {p.name: p.choices for p in r_notebook.parameters}["store"] == (
        "all",
        "sydney",
        "melbourne",
    )


async def test_a_path_that_is_not_a_notebook_path_is_refused_before_any_call(
    services: Services,
) -> None:
    _, results = await services.import_jobs("demo", ["Shared/no-slash"])
    assert isinstance(results[0].error, InvalidExternalIdError)
    # The first type's D4 error, then why the other types refuse it too.
    assert str(results[0].error).startswith("INVALID_PARAMETER_VALUE: job_id")
    assert "must be an absolute workspace path" in str(results[0].error)
    assert "is not a pipeline id" in str(results[0].error)
    _, results = await services.import_jobs("demo", ["/Shared/polysync-demo/missing"])
    assert results[0].error is not None
    assert "does not exist" in str(results[0].error)


async def test_execute_with_overrides_runs_submit_with_strings_and_a_token(
    harness: EmulatorHarness, services: Services
) -> None:
    await with_attributes(services, serverless="true")
    _, results = await services.import_jobs("demo", [REPORT])
    job = results[0].job
    assert job is not None
    run = await services.execute(job, {"region": "apac", "channels": "web, store"})
    await services.engine.step()
    started = await services.store.get_run(run.id)
    assert started.run_id is not None
    assert started.run_id.isdigit()
    submitted = harness.state.runs[int(started.run_id)]
    assert submitted.is_submit_run
    assert submitted.idempotency_token == started.idempotency_token  # D8 for runs/submit too
    (task,) = submitted.settings["tasks"]
    assert task["notebook_task"] == {
        "notebook_path": REPORT,
        "source": "WORKSPACE",
        "base_parameters": {"region": "apac", "channels": "web, store"},
    }
    assert "existing_cluster_id" not in task  # serverless
    assert "new_cluster" not in task
    assert dict(started.parameters_sent) == {"region": "apac", "channels": "web, store"}
    await drive(harness, services.engine, run.id)
    done = await services.store.get_run(run.id)
    assert done.status is RunStatus.SUCCESS, done.message
    assert done.run_page_url is not None
    assert done.run_page_url.startswith(harness.base_url)
    assert [t.task_key for t in done.tasks] == ["notebook"]


async def test_a_failing_notebook_fails_with_its_error(
    harness: EmulatorHarness, services: Services
) -> None:
    await with_attributes(services, spark_version="15.4.x-scala2.12", node_type_id="Standard_D4")
    _, results = await services.import_jobs("demo", [FORECAST])
    job = results[0].job
    assert job is not None
    run = await services.execute(job, {"horizon_days": "14"})
    await services.engine.step()
    started = await services.store.get_run(run.id)
    assert started.run_id is not None
    (task,) = harness.state.runs[int(started.run_id)].settings["tasks"]
    assert task["new_cluster"] == {
        "spark_version": "15.4.x-scala2.12",
        "num_workers": 1,
        "node_type_id": "Standard_D4",
    }
    await drive(harness, services.engine, run.id)
    done = await services.store.get_run(run.id)
    assert done.status is RunStatus.FAILED
    assert "there is no package called 'forecast'" in done.message


async def test_cancel_stops_the_one_time_run(harness: EmulatorHarness, services: Services) -> None:
    await with_attributes(services, serverless="true")
    _, results = await services.import_jobs("demo", [SCORE])
    job = results[0].job
    assert job is not None
    run = await services.execute(job, {})
    await services.engine.step()
    await services.cancel(run.id)
    await drive(harness, services.engine, run.id)
    done = await services.store.get_run(run.id)
    assert done.status is RunStatus.CANCELLED


@pytest.mark.parametrize(
    ("attributes", "missing"),
    [
        ({}, "has no compute"),
        ({"node_type_id": "Standard_D4"}, "spark_version"),
        ({"spark_version": "15.4.x-scala2.12"}, "node_type_id"),
        ({"spark_version": "15.4", "node_type_id": "x", "num_workers": "many"}, "num_workers"),
    ],
)
async def test_missing_compute_is_refused_before_anything_is_recorded(
    services: Services, attributes: dict[str, str], missing: str
) -> None:
    await with_attributes(services, **attributes)
    _, results = await services.import_jobs("demo", [KPIS])
    job = results[0].job
    assert job is not None
    with pytest.raises(ConfigError, match=missing):
        await services.execute(job, {})
    assert await services.store.list_runs(RunFilter()) == []


async def test_a_dropdown_value_outside_its_choices_is_refused(services: Services) -> None:
    await with_attributes(services, serverless="true")
    _, results = await services.import_jobs("demo", [REPORT])
    job = results[0].job
    assert job is not None
    with pytest.raises(ParameterValueError, match="'emea', 'apac', 'amer'"):
        await services.execute(job, {"region": "mars"})
    with pytest.raises(ParameterValueError, match="multiselect"):
        await services.execute(job, {"channels": "web,fax"})
    # A combobox takes any value.
    run = await services.execute(job, {"currency": "JPY"})
    assert dict(run.parameters_sent)["currency"] == "JPY"
    with pytest.raises(UsageError, match="no parameter 'nope'"):
        await services.execute(job, {"nope": "1"})
