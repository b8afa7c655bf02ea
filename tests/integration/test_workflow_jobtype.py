"""Acceptance: the Databricks Workflow job type against the emulator over HTTP, row by row of the spec."""

from __future__ import annotations

from typing import Any

import pytest

from polysync.databricks.client import DatabricksClient
from polysync.databricks.settings import ApiVersions, PatAuthSettings, WorkspaceSettings
from polysync.domain.models import DataType, Direction, ImportedJob, Parameter, RunStatus
from polysync.emulator.faults import Fault
from polysync.errors import (
    InvalidExternalIdError,
    JobDeletedError,
    ParameterValueError,
    TaskScopedParameterError,
)
from polysync.jobtypes.base import idempotency_token
from polysync.jobtypes.databricks.parameters import JobKind
from polysync.jobtypes.databricks.workflow import DatabricksWorkflowJobType
from tests.conftest import TEST_TOKEN, EmulatorHarness, autojump


@pytest.fixture(autouse=True)
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYSYNC_TEST_DATABRICKS_TOKEN", TEST_TOKEN)


def job_type(emulator: EmulatorHarness, **versions: str) -> DatabricksWorkflowJobType:
    settings = WorkspaceSettings(
        url=emulator.base_url,
        auth=PatAuthSettings(token="env:POLYSYNC_TEST_DATABRICKS_TOKEN"),
        api_versions=ApiVersions(**versions),  # type: ignore[arg-type]
    )
    assert isinstance(emulator.real_clock, type(emulator.clock))
    client = DatabricksClient(settings, transport=emulator.transport(), clock=emulator.real_clock)
    return DatabricksWorkflowJobType(client)


def api_calls(emulator: EmulatorHarness, endpoint: str) -> int:
    return emulator.app.emulator.stats.count(endpoint)


def with_direction(job: ImportedJob, name: str, direction: Direction) -> ImportedJob:
    from dataclasses import replace

    params = tuple(
        replace(p, direction=direction) if p.name == name and p.task_key is None else p
        for p in job.parameters
    )
    return replace(job, parameters=params)


async def finish(emulator: EmulatorHarness, wf: DatabricksWorkflowJobType, run_id: str) -> Any:
    for _ in range(200):
        snapshot = await wf.poll(run_id)
        if snapshot.is_terminal:
            return snapshot
        emulator.advance(15)
    raise AssertionError("run did not finish")


# ---------------------------------------------------------------------------- discovery (D5)
@pytest.mark.parametrize("version", ["2.0", "2.1", "2.2"])
async def test_discovery_classifies_every_job_whatever_the_list_version(
    demo_emulator: EmulatorHarness, version: str
) -> None:
    wide = demo_emulator.state.create_job(
        {"name": "wide", "tasks": [{"task_key": f"t{i}"} for i in range(150)]}
    )
    wf = job_type(demo_emulator, jobs_list=version)
    found = {job.name: job for job in await wf.discover()}
    assert len(found) == 11
    assert found["nightly-sales-etl"].kind is JobKind.WORKFLOW
    assert found["nightly-sales-etl"].task_count == 4
    assert found["vacuum-delta-tables"].kind is JobKind.JOB
    assert found["refresh-sales-dashboard"].kind is JobKind.JOB
    assert found["wide"].kind is JobKind.WORKFLOW
    assert found["wide"].external_id == str(wide.job_id)
    workflows = sorted(n for n, j in found.items() if j.kind is JobKind.WORKFLOW)
    assert workflows == sorted(
        [
            "nightly-sales-etl",
            "customer-360-refresh",
            "fraud-scoring",
            "warehouse-backfill",
            "hourly-inventory-sync",
            "ml-training-pipeline",
            "legacy-notebook-report",
            "wide",
        ]
    )
    # 2.1 drops the tasks of a job over 100 tasks, 2.2 lists its first 100 (`has_more`): only
    # that one needs a jobs/get, which gives its true task count (issue 10).
    assert api_calls(demo_emulator, "jobs/get") == (0 if version == "2.0" else 1)
    assert (found["wide"].task_count, found["wide"].tasks_truncated) == (150, False)


async def test_a_truncated_task_list_whose_jobs_get_fails_shows_at_least_100(
    demo_emulator: EmulatorHarness,
) -> None:
    demo_emulator.state.create_job(
        {"name": "wide", "tasks": [{"task_key": f"t{i}"} for i in range(150)]}
    )
    demo_emulator.app.emulator.faults.add(
        Fault(method="GET", path="jobs/get$", kind="status", status=404, error_code="NOT_FOUND")
    )
    found = {job.name: job for job in await job_type(demo_emulator, jobs_list="2.2").discover()}
    assert found["wide"].kind is JobKind.WORKFLOW
    assert (found["wide"].task_count, found["wide"].tasks_truncated) == (100, True)
    assert found["nightly-sales-etl"].tasks_truncated is False


# ---------------------------------------------------------------------------- import (D1, D2)
async def test_import_reads_every_parameter_source_and_infers_types(
    emulator: EmulatorHarness,
) -> None:
    job = emulator.state.create_job(
        {
            "name": "sources",
            "description": "all the shapes",
            "tags": {"team": "data"},
            "parameters": [
                {"name": "run_date", "default": ""},
                {"name": "batch", "default": "500"},
                {"name": "ratio", "default": "0.75"},
                {"name": "full", "default": "TRUE"},
            ],
            # The specification's shape, read alongside (D1).
            "job_parameters": [
                {"name": "batch", "default_value": "999"},
                {"name": "region", "default_value": "emea"},
            ],
            "tasks": [
                {
                    "task_key": "nb",
                    "notebook_task": {"notebook_path": "/nb", "base_parameters": {"mode": "full"}},
                },
                {
                    "task_key": "sql",
                    "depends_on": [{"task_key": "nb"}],
                    "sql_task": {
                        "warehouse_id": "w",
                        "parameters": {"channel": "x"},
                        "query": {"query_id": "q"},
                    },
                },
            ],
        }
    )
    imported = await job_type(emulator).import_job(str(job.job_id))
    assert imported.external_id == str(job.job_id)
    assert imported.kind is JobKind.WORKFLOW
    assert (imported.name, imported.description, dict(imported.tags)) == (
        "sources",
        "all the shapes",
        {"team": "data"},
    )
    by_key = {(p.name, p.task_key): p for p in imported.parameters}
    assert by_key[("run_date", None)].data_type is DataType.STRING
    assert by_key[("batch", None)].data_type is DataType.INT
    assert by_key[("batch", None)].default == "500"  # the real shape wins over the spec shape
    assert by_key[("ratio", None)].data_type is DataType.FLOAT
    assert by_key[("full", None)].data_type is DataType.BOOL
    assert by_key[("region", None)].default == "emea"
    assert by_key[("mode", "nb")].default == "full"
    assert by_key[("channel", "sql")].default == "x"
    assert all(p.direction in (None, Direction.INPUT) for p in imported.parameters)


async def test_import_many_runs_concurrently_and_reports_each_failure(
    emulator: EmulatorHarness,
) -> None:
    ids = [
        str(emulator.state.create_job({"name": f"j{i}", "tasks": [{"task_key": "a"}]}).job_id)
        for i in range(40)
    ]
    wf = job_type(emulator)
    results = await autojump(emulator.real_clock, wf.import_jobs([*ids, "abc", "123456789"]))  # type: ignore[arg-type]
    assert [r.external_id for r in results[:40] if isinstance(r, ImportedJob)] == ids
    assert isinstance(results[40], InvalidExternalIdError)
    assert isinstance(results[41], JobDeletedError)


# ---------------------------------------------------------------------------- External Id (D4)
@pytest.mark.parametrize("external_id", ["abc", "-1", "0", "9223372036854775808", "", "4 2"])
async def test_bad_external_ids_fail_before_any_call(
    emulator: EmulatorHarness, external_id: str
) -> None:
    wf = job_type(emulator)
    job = ImportedJob(external_id=external_id, name="x", kind=JobKind.WORKFLOW, task_count=2)
    with pytest.raises(InvalidExternalIdError) as bad:
        await wf.start(job, {}, idempotency_token="t")
    assert str(bad.value).startswith("INVALID_PARAMETER_VALUE: job_id")
    assert "re-import" in str(bad.value).lower()
    with pytest.raises(InvalidExternalIdError):
        await wf.import_job(external_id)
    assert emulator.app.emulator.stats.count() == 0


async def test_external_id_with_spaces_is_trimmed(emulator: EmulatorHarness) -> None:
    emulator.state.create_job(
        {"name": "answer", "tasks": [{"task_key": "a"}, {"task_key": "b"}]}, job_id=42
    )
    imported = await job_type(emulator).import_job(" 42 ")
    assert imported.external_id == "42"


async def test_deleted_job_gives_the_d4_error_on_start_import_and_sync(
    emulator: EmulatorHarness,
) -> None:
    created = emulator.state.create_job({"name": "gone", "tasks": [{"task_key": "a"}]})
    wf = job_type(emulator)
    imported = await wf.import_job(str(created.job_id))
    emulator.state.delete_job(created.job_id)
    for call in (
        wf.start(imported, {}, idempotency_token="tok"),
        wf.import_job(imported.external_id),
        wf.sync_parameters(imported),
    ):
        with pytest.raises(JobDeletedError) as gone:
            await call
        assert str(gone.value).startswith("INVALID_PARAMETER_VALUE: job_id")
        assert str(created.job_id) in str(gone.value)


# ---------------------------------------------------------------------------- start (D3, D8)
async def test_start_sends_input_parameters_only_with_resolution_order(
    emulator: EmulatorHarness,
) -> None:
    job = emulator.state.create_job(
        {
            "name": "dirs",
            "parameters": [
                {"name": "in_param", "default": "a"},
                {"name": "out_param", "default": "b"},
                {"name": "both", "default": "c"},
                {"name": "unset", "default": "d"},
                {"name": "_internal", "default": "e"},
            ],
            "tasks": [{"task_key": "a"}, {"task_key": "b"}],
        }
    )
    wf = job_type(emulator)
    imported = await wf.import_job(str(job.job_id))
    imported = with_direction(imported, "in_param", Direction.INPUT)
    imported = with_direction(imported, "out_param", Direction.OUTPUT)
    imported = with_direction(imported, "both", Direction.INPUT_OUTPUT)
    started = await wf.start(
        imported, {"both": "override"}, idempotency_token=idempotency_token("r1")
    )
    # Only the override is sent: Databricks applies its own defaults (D2 amended).
    assert dict(started.parameters_sent) == {"both": "override"}
    runs = emulator.state.runs
    assert len(runs) == 1
    (run,) = runs.values()
    assert str(run.run_id) == started.run_id
    assert run.idempotency_token == started.idempotency_token
    assert {p["name"]: p["value"] for p in run.job_parameters} == {
        "in_param": "a",
        "out_param": "b",  # not sent: Databricks used its default
        "both": "override",
        "unset": "d",
        "_internal": "e",
    }


async def test_task_scoped_override_is_refused_with_the_troubleshooting_text(
    demo_emulator: EmulatorHarness,
) -> None:
    wf = job_type(demo_emulator)
    imported = await wf.import_job("914275016372845")
    with pytest.raises(TaskScopedParameterError) as refused:
        await wf.start(imported, {"mode": "full"}, idempotency_token="t1")
    text = str(refused.value)
    assert "mode" in text
    assert "ingest" in text
    assert "Sync Parameters" in text
    assert api_calls(demo_emulator, "jobs/run-now") == 0


async def test_value_not_fitting_its_type_is_refused_before_the_call(
    demo_emulator: EmulatorHarness,
) -> None:
    wf = job_type(demo_emulator)
    imported = await wf.import_job("914275016372845")
    with pytest.raises(ParameterValueError) as refused:
        await wf.start(imported, {"batch_size": "lots"}, idempotency_token="t2")
    assert "batch_size" in str(refused.value)
    assert "lots" in str(refused.value)
    assert api_calls(demo_emulator, "jobs/run-now") == 0


async def test_same_token_never_starts_a_second_run(emulator: EmulatorHarness) -> None:
    job = emulator.state.create_job(
        {"name": "once", "tasks": [{"task_key": "a"}, {"task_key": "b"}]}
    )
    wf = job_type(emulator)
    imported = await wf.import_job(str(job.job_id))
    token = idempotency_token("our-run-17")
    first = await wf.start(imported, {}, idempotency_token=token)
    again = await wf.start(imported, {}, idempotency_token=token)
    assert first.run_id == again.run_id
    assert len(emulator.state.runs) == 1
    assert len(token) <= 64


async def test_lost_run_now_response_is_retried_with_the_token_and_starts_exactly_one_run(
    emulator: EmulatorHarness,
) -> None:
    job = emulator.state.create_job(
        {"name": "lossy", "tasks": [{"task_key": "a"}, {"task_key": "b"}]}
    )
    emulator.app.emulator.faults.add(
        Fault(method="POST", path="jobs/run-now$", kind="lose_response", times=2)
    )
    wf = job_type(emulator)
    imported = await wf.import_job(str(job.job_id))
    started = await autojump(
        emulator.real_clock,  # type: ignore[arg-type]
        wf.start(imported, {}, idempotency_token=idempotency_token("lossy-1")),
    )
    assert api_calls(emulator, "jobs/run-now") == 3
    assert [str(r) for r in emulator.state.runs] == [started.run_id]


# ---------------------------------------------------------------------------- poll (D6), URL (D7)
async def test_watch_success_with_url_fallback_then_real_url(
    demo_emulator: EmulatorHarness,
) -> None:
    wf = job_type(demo_emulator)
    imported = await wf.import_job("527703982144019")
    started = await wf.start(imported, {"segment": "vip"}, idempotency_token="w1")
    # D7 amended: before the first poll, the job and the run in their own slots.
    assert started.run_page_url == (
        f"{demo_emulator.base_url}/#job/527703982144019/run/{started.run_id}"
    )
    first = await wf.poll(started.run_id)
    assert first.status is RunStatus.STARTING
    assert first.run_page_url == (
        f"{demo_emulator.base_url}/?o=1234567890123456#job/527703982144019/run/{started.run_id}"
    )
    assert wf.run_url(started.run_id, reported_url=first.run_page_url) == first.run_page_url
    statuses = [first.status]
    for _ in range(40):
        demo_emulator.advance(5)
        snapshot = await wf.poll(started.run_id)
        statuses.append(snapshot.status)
        if snapshot.is_terminal:
            break
    assert statuses[-1] is RunStatus.SUCCESS
    assert RunStatus.RUNNING in statuses
    assert {t.task_key for t in snapshot.tasks} == {
        "crm_extract",
        "web_extract",
        "support_extract",
        "build_profile",
        "notify",
    }
    assert all(t.run_page_url for t in snapshot.tasks)


async def test_failed_workflow_message_names_the_task_and_its_error(
    demo_emulator: EmulatorHarness,
) -> None:
    wf = job_type(demo_emulator)
    imported = await wf.import_job("306118823409576")
    started = await wf.start(imported, {}, idempotency_token="f1")
    snapshot = await finish(demo_emulator, wf, started.run_id)
    assert snapshot.status is RunStatus.FAILED
    assert "build_features" in snapshot.message
    assert "merchant_category" in snapshot.message  # the get-output error text
    failed = {t.task_key: t.result_state for t in snapshot.failed_tasks}
    assert failed == {
        "build_features": "FAILED",
        "score": "UPSTREAM_FAILED",
        "publish_alerts": "UPSTREAM_FAILED",
    }


async def test_skipped_run_is_failed_with_a_skip_message(demo_emulator: EmulatorHarness) -> None:
    wf = job_type(demo_emulator)
    imported = await wf.import_job("449205713860021")  # max_concurrent_runs: 1
    await wf.start(imported, {}, idempotency_token="s1")
    second = await wf.start(imported, {}, idempotency_token="s2")
    snapshot = await wf.poll(second.run_id)
    assert snapshot.status is RunStatus.FAILED
    assert "maximum concurrent runs" in snapshot.message


async def test_retry_then_success_shows_both_attempts(demo_emulator: EmulatorHarness) -> None:
    wf = job_type(demo_emulator)
    imported = await wf.import_job("772318640951237")
    started = await wf.start(imported, {}, idempotency_token="m1")
    snapshot = await finish(demo_emulator, wf, started.run_id)
    assert snapshot.status is RunStatus.SUCCESS
    attempts = [(t.task_key, t.attempt_number) for t in snapshot.tasks if t.task_key == "train"]
    assert attempts == [("train", 0), ("train", 1)]


# ---------------------------------------------------------------------------- cancel (D10)
async def test_cancel_is_confirmed_by_polling_and_a_second_cancel_is_a_noop(
    demo_emulator: EmulatorHarness,
) -> None:
    wf = job_type(demo_emulator)
    imported = await wf.import_job("681940257713388")  # warehouse-backfill: hours long
    started = await wf.start(imported, {}, idempotency_token="c1")
    demo_emulator.advance(60)
    outcome = await wf.cancel(started.run_id)
    assert outcome.requested is True
    assert outcome.snapshot.status is RunStatus.RUNNING
    snapshot = await finish(demo_emulator, wf, started.run_id)
    assert snapshot.status is RunStatus.CANCELLED
    again = await wf.cancel(started.run_id)
    assert again.requested is False
    assert "nothing to cancel" in again.message


# ---------------------------------------------------------------------------- sync (D9)
async def test_sync_parameters_reports_the_diff_and_keeps_user_settings(
    emulator: EmulatorHarness,
) -> None:
    job = emulator.state.create_job(
        {
            "name": "evolving",
            "parameters": [{"name": "keep", "default": "1"}, {"name": "drop", "default": "x"}],
            "tasks": [{"task_key": "a"}, {"task_key": "b"}],
        }
    )
    wf = job_type(emulator)
    imported = with_direction(await wf.import_job(str(job.job_id)), "keep", Direction.INPUT_OUTPUT)
    emulator.state.update_job(
        job.job_id,
        {
            "parameters": [{"name": "keep", "default": "2"}, {"name": "added", "default": "true"}],
            "tasks": [{"task_key": "a"}],
        },
        fields_to_remove=["tasks"],
    )
    synced, diff = await wf.sync_parameters(imported)
    assert [p.name for p in diff.added] == ["added"]
    assert [p.name for p in diff.removed] == ["drop"]
    assert [c.new.name for c in diff.changed] == ["keep"]
    assert diff.kind_changed == (JobKind.WORKFLOW, JobKind.JOB)
    kept = next(p for p in synced.parameters if p.name == "keep")
    assert kept.direction is Direction.INPUT_OUTPUT
    assert kept.default == "2"
    assert isinstance(next(p for p in synced.parameters if p.name == "added"), Parameter)
