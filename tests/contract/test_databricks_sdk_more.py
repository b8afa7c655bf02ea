"""Contract: the official databricks-sdk drives runs/submit, runs/repair, control-flow tasks, the
Workspace API and the Pipelines API of the emulator over real HTTP, unchanged."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    BadRequest,
    NotFound,
    OperationFailed,
    ResourceAlreadyExists,
    ResourceConflict,
)
from databricks.sdk.service import jobs, pipelines, workspace

from polysync.emulator.serving import run_in_thread
from tests.conftest import EmulatorHarness, make_harness, make_spec

TWO_MINUTES = timedelta(minutes=2)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EmulatorHarness, WorkspaceClient]]:
    import os

    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "ARM_", "AZURE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", "/nonexistent/.databrickscfg")
    harness = make_harness(make_spec(), served=True)
    base_url, stop = run_in_thread(harness.app)
    try:
        yield harness, WorkspaceClient(host=base_url, token=harness.token, auth_type="pat")
    finally:
        stop()


def advancing(harness: EmulatorHarness, seconds: float = 300) -> Any:
    """A waiter callback that moves emulated time on at each poll."""
    return lambda _: harness.clock.advance(seconds)


# ---------------------------------------------------------------------- runs/submit
def test_submit_a_notebook_run_and_wait(served: tuple[EmulatorHarness, WorkspaceClient]) -> None:
    harness, w = served
    task = jobs.SubmitTask(
        task_key="report",
        notebook_task=jobs.NotebookTask(
            notebook_path="/Shared/report", base_parameters={"region": "emea"}
        ),
        existing_cluster_id="0923-164208-meows279",
    )
    waiter = w.jobs.submit(run_name="adhoc report", tasks=[task], idempotency_token="tok-1")
    run = waiter.result(timeout=TWO_MINUTES, callback=advancing(harness))
    assert run.state is not None
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    assert run.run_type == jobs.RunType.SUBMIT_RUN
    assert run.job_id is None
    assert run.run_name == "adhoc report"
    assert run.tasks is not None
    assert run.tasks[0].notebook_task is not None
    assert run.tasks[0].notebook_task.base_parameters == {"region": "emea"}
    assert run.tasks[0].cluster_instance is not None
    assert run.tasks[0].cluster_instance.cluster_id == "0923-164208-meows279"
    # The same idempotency token is the same run, as with run-now.
    again = w.jobs.submit(run_name="adhoc report", tasks=[task], idempotency_token="tok-1")
    assert again.run_id == waiter.run_id
    listed = list(w.jobs.list_runs(run_type=jobs.RunType.SUBMIT_RUN))
    assert [r.run_id for r in listed] == [waiter.run_id]


def test_a_scripted_notebook_fails_its_submitted_run(
    served: tuple[EmulatorHarness, WorkspaceClient],
) -> None:
    harness, w = served
    harness.state.objects.put_notebook("/Shared/broken", "PYTHON", "raise ValueError('boom')")
    scripted = httpx.post(
        f"{w.config.host}/emulator/notebooks/script",
        json={
            "path": "/Shared/broken",
            "script": {"outcome": "failure", "error": "ValueError: boom"},
        },
    )
    assert scripted.status_code == 200
    waiter = w.jobs.submit(
        tasks=[
            jobs.SubmitTask(
                task_key="t",
                notebook_task=jobs.NotebookTask(notebook_path="/Shared/broken"),
                environment_key="serverless",
            )
        ],
        environments=[jobs.JobEnvironment(environment_key="serverless")],
    )
    with pytest.raises(OperationFailed, match="Task t failed with message"):
        waiter.result(timeout=TWO_MINUTES, callback=advancing(harness))
    run = w.jobs.get_run(waiter.run_id)
    assert run.run_name == "Untitled"
    assert run.tasks is not None
    assert w.jobs.get_run_output(run.tasks[0].run_id).error == "ValueError: boom"


def test_submit_refuses_an_undefined_environment(
    served: tuple[EmulatorHarness, WorkspaceClient],
) -> None:
    _, w = served
    with pytest.raises(BadRequest, match="environment_key 'nope'"):
        w.jobs.submit(
            tasks=[
                jobs.SubmitTask(
                    task_key="t",
                    notebook_task=jobs.NotebookTask(notebook_path="/x"),
                    environment_key="nope",
                )
            ]
        )


# ---------------------------------------------------------------------- control flow
def test_a_condition_task_workflow(served: tuple[EmulatorHarness, WorkspaceClient]) -> None:
    harness, w = served
    created = w.jobs.create(
        name="branch",
        parameters=[jobs.JobParameterDefinition(name="rows", default="10")],
        tasks=[
            jobs.Task(
                task_key="check",
                condition_task=jobs.ConditionTask(
                    op=jobs.ConditionTaskOp.GREATER_THAN,
                    left="{{job.parameters.rows}}",
                    right="100",
                ),
            ),
            jobs.Task(
                task_key="big",
                depends_on=[jobs.TaskDependency(task_key="check", outcome="true")],
                notebook_task=jobs.NotebookTask(notebook_path="/big"),
            ),
            jobs.Task(
                task_key="small",
                depends_on=[jobs.TaskDependency(task_key="check", outcome="false")],
                notebook_task=jobs.NotebookTask(notebook_path="/small"),
            ),
        ],
    )
    assert created.job_id is not None
    for rows, taken, skipped in (("10", "small", "big"), ("500", "big", "small")):
        run = w.jobs.run_now(created.job_id, job_parameters={"rows": rows}).result(
            timeout=TWO_MINUTES, callback=advancing(harness)
        )
        assert run.state is not None
        assert run.state.result_state == jobs.RunResultState.SUCCESS
        assert run.tasks is not None
        by_key = {t.task_key: t for t in run.tasks}
        assert by_key["check"].condition_task is not None
        assert by_key["check"].condition_task.outcome == ("true" if rows == "500" else "false")
        assert by_key[taken].state is not None
        assert by_key[taken].state.result_state == jobs.RunResultState.SUCCESS
        assert by_key[skipped].state is not None
        assert by_key[skipped].state.result_state == jobs.RunResultState.EXCLUDED


def test_a_run_job_task_workflow(served: tuple[EmulatorHarness, WorkspaceClient]) -> None:
    harness, w = served
    child = w.jobs.create(
        name="child",
        parameters=[jobs.JobParameterDefinition(name="day", default="")],
        tasks=[jobs.Task(task_key="load", notebook_task=jobs.NotebookTask(notebook_path="/l"))],
    )
    parent = w.jobs.create(
        name="parent",
        parameters=[jobs.JobParameterDefinition(name="day", default="2026-11-30")],
        tasks=[
            jobs.Task(
                task_key="call_child",
                run_job_task=jobs.RunJobTask(
                    job_id=child.job_id or 0, job_parameters={"day": "{{job.parameters.day}}"}
                ),
            )
        ],
    )
    assert parent.job_id is not None
    run = w.jobs.run_now(parent.job_id).result(timeout=TWO_MINUTES, callback=advancing(harness))
    assert run.state is not None
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    assert run.tasks is not None
    output = w.jobs.get_run_output(run.tasks[0].run_id or 0)
    assert output.run_job_output is not None
    child_run = w.jobs.get_run(output.run_job_output.run_id or 0)
    assert child_run.job_id == child.job_id
    assert child_run.trigger == jobs.TriggerType.RUN_JOB_TASK
    assert child_run.job_parameters is not None
    assert [(p.name, p.value) for p in child_run.job_parameters] == [("day", "2026-11-30")]
    assert child_run.state is not None
    assert child_run.state.result_state == jobs.RunResultState.SUCCESS


def test_a_for_each_task_workflow(served: tuple[EmulatorHarness, WorkspaceClient]) -> None:
    harness, w = served
    created = w.jobs.create(
        name="fan-out",
        parameters=[jobs.JobParameterDefinition(name="regions", default='["emea","apac","amer"]')],
        tasks=[
            jobs.Task(
                task_key="per_region",
                for_each_task=jobs.ForEachTask(
                    inputs="{{job.parameters.regions}}",
                    concurrency=2,
                    task=jobs.Task(
                        task_key="per_region_iteration",
                        notebook_task=jobs.NotebookTask(
                            notebook_path="/region", base_parameters={"region": "{{input}}"}
                        ),
                    ),
                ),
            )
        ],
    )
    run = w.jobs.run_now(created.job_id or 0).result(
        timeout=TWO_MINUTES, callback=advancing(harness)
    )
    assert run.tasks is not None
    loop = run.tasks[0]
    assert loop.for_each_task is not None
    assert loop.for_each_task.stats is not None
    stats = loop.for_each_task.stats.task_run_stats
    assert stats is not None
    assert (stats.total_iterations, stats.succeeded_iterations, stats.failed_iterations) == (
        3,
        3,
        0,
    )
    iterations = w.jobs.get_run(loop.run_id or 0).iterations
    assert iterations is not None
    assert [i.notebook_task.base_parameters["region"] for i in iterations if i.notebook_task] == [
        "emea",
        "apac",
        "amer",
    ]


# ---------------------------------------------------------------------- repair
def test_repair_reruns_the_failed_tasks_in_the_same_run(
    served: tuple[EmulatorHarness, WorkspaceClient],
) -> None:
    harness, w = served
    job = harness.state.create_job(
        {
            "name": "flaky",
            "tasks": [
                {"task_key": "a", "notebook_task": {"notebook_path": "/a"}},
                {
                    "task_key": "b",
                    "depends_on": [{"task_key": "a"}],
                    "notebook_task": {"notebook_path": "/b"},
                    "emulator": {"attempts": ["failure", "success"]},
                },
                {
                    "task_key": "c",
                    "depends_on": [{"task_key": "b"}],
                    "notebook_task": {"notebook_path": "/c"},
                },
            ],
        }
    )
    waiter = w.jobs.run_now(job.job_id)
    with pytest.raises(OperationFailed):
        waiter.result(timeout=TWO_MINUTES, callback=advancing(harness))
    repaired = w.jobs.repair_run(waiter.run_id, rerun_all_failed_tasks=True).result(
        timeout=TWO_MINUTES, callback=advancing(harness)
    )
    assert repaired.run_id == waiter.run_id
    assert repaired.state is not None
    assert repaired.state.result_state == jobs.RunResultState.SUCCESS
    history = w.jobs.get_run(waiter.run_id, include_history=True).repair_history
    assert history is not None
    assert [h.type for h in history] == [
        jobs.RepairHistoryItemType.ORIGINAL,
        jobs.RepairHistoryItemType.REPAIR,
    ]
    assert history[1].task_run_ids is not None
    assert len(history[1].task_run_ids) == 2  # b failed, c was skipped: both rerun
    # A second repair must name the latest repair.
    with pytest.raises(BadRequest, match="latest repair ID needs to be provided"):
        w.jobs.repair_run(waiter.run_id, rerun_tasks=["a"])
    w.jobs.repair_run(waiter.run_id, rerun_tasks=["a"], latest_repair_id=history[1].id)


# ---------------------------------------------------------------------- workspace
def test_workspace_import_list_export_delete(
    served: tuple[EmulatorHarness, WorkspaceClient],
) -> None:
    _, w = served
    w.workspace.mkdirs("/Shared/etl")
    source = "# Databricks notebook source\ndbutils.widgets.text('env', 'prod')\n"
    w.workspace.import_(
        "/Shared/etl/ingest",
        content=base64.b64encode(source.encode()).decode(),
        format=workspace.ImportFormat.SOURCE,
        language=workspace.Language.PYTHON,
    )
    w.workspace.upload(
        "/Shared/etl/report.sql",
        io.BytesIO(b"CREATE WIDGET TEXT day DEFAULT '2026-01-01';\nSELECT 1"),
        format=workspace.ImportFormat.SOURCE,
    )
    listed = {o.path: o for o in w.workspace.list("/Shared", recursive=True)}
    assert set(listed) == {"/Shared/etl/ingest", "/Shared/etl/report.sql"}
    assert listed["/Shared/etl/ingest"].object_type == workspace.ObjectType.NOTEBOOK
    assert listed["/Shared/etl/ingest"].language == workspace.Language.PYTHON
    assert listed["/Shared/etl/report.sql"].language == workspace.Language.SQL
    exported = w.workspace.export("/Shared/etl/ingest", format=workspace.ExportFormat.SOURCE)
    assert exported.file_type == "py"
    assert base64.b64decode(exported.content or "").decode() == source
    with w.workspace.download("/Shared/etl/report.sql") as raw:
        assert raw.read().startswith(b"-- Databricks notebook source\nCREATE WIDGET TEXT day")
    with pytest.raises(ResourceAlreadyExists):
        w.workspace.import_(
            "/Shared/etl/ingest",
            content="",
            format=workspace.ImportFormat.SOURCE,
            language=workspace.Language.PYTHON,
        )
    assert w.workspace.get_status("/Shared/etl").object_type == workspace.ObjectType.DIRECTORY
    with pytest.raises(BadRequest, match="is not empty"):
        w.workspace.delete("/Shared/etl")
    w.workspace.delete("/Shared/etl", recursive=True)
    with pytest.raises(NotFound, match=r"Path \(/Shared/etl\) doesn't exist."):
        w.workspace.get_status("/Shared/etl")


# ---------------------------------------------------------------------- pipelines
def update_state(
    w: WorkspaceClient, harness: EmulatorHarness, pipeline_id: str, update_id: str, seconds: float
) -> pipelines.UpdateInfoState:
    harness.clock.advance(seconds)
    update = w.pipelines.get_update(pipeline_id, update_id).update
    assert update is not None
    assert update.state is not None
    return update.state


def test_pipeline_update_completes_and_lists(
    served: tuple[EmulatorHarness, WorkspaceClient],
) -> None:
    harness, w = served
    created = w.pipelines.create(name="sales-dlt", configuration={"source": "pos"})
    pipeline_id = created.pipeline_id or ""
    update_id = w.pipelines.start_update(pipeline_id, full_refresh=True).update_id or ""
    seen = [update_state(w, harness, pipeline_id, update_id, 0)]
    while seen[-1] not in (pipelines.UpdateInfoState.COMPLETED, pipelines.UpdateInfoState.FAILED):
        seen.append(update_state(w, harness, pipeline_id, update_id, 1))
    assert seen[0] == pipelines.UpdateInfoState.WAITING_FOR_RESOURCES
    assert pipelines.UpdateInfoState.RESETTING in seen  # a full refresh resets the tables
    assert seen[-1] == pipelines.UpdateInfoState.COMPLETED
    got = w.pipelines.get(pipeline_id)
    assert got.spec is not None
    assert got.spec.configuration == {"source": "pos"}
    assert got.state == pipelines.PipelineState.IDLE
    assert got.latest_updates is not None
    assert got.latest_updates[0].update_id == update_id
    assert [p.pipeline_id for p in w.pipelines.list_pipelines(max_results=1)] == [pipeline_id]
    # The listing the engine's pipeline sweep reads: newest first, each update with its state.
    second = w.pipelines.start_update(pipeline_id).update_id or ""
    listed = w.pipelines.list_updates(pipeline_id, max_results=100).updates or []
    assert [(u.update_id, u.state) for u in listed] == [
        (second, pipelines.UpdateInfoState.WAITING_FOR_RESOURCES),
        (update_id, pipelines.UpdateInfoState.COMPLETED),
    ]


def test_pipeline_failure_events_conflict_and_stop(
    served: tuple[EmulatorHarness, WorkspaceClient],
) -> None:
    harness, w = served
    created = w.pipelines.create(name="broken-dlt")
    pipeline_id = created.pipeline_id or ""
    httpx.post(
        f"{w.config.host}/emulator/pipelines/{pipeline_id}/script",
        json={
            "updates": ["failure", "success"],
            "error": "Table 'raw.orders' not found",
            "duration_s": 5,
        },
    ).raise_for_status()
    first = w.pipelines.start_update(pipeline_id).update_id or ""
    with pytest.raises(ResourceConflict):
        w.pipelines.start_update(pipeline_id)
    harness.clock.advance(600)
    assert update_state(w, harness, pipeline_id, first, 0) == pipelines.UpdateInfoState.FAILED
    errors = list(
        w.pipelines.list_pipeline_events(pipeline_id, filter="level='ERROR'", max_results=1)
    )
    assert errors
    assert all(e.level == pipelines.EventLevel.ERROR for e in errors)
    assert errors[0].error is not None
    assert errors[0].error.exceptions is not None
    assert errors[0].error.exceptions[0].message == "Table 'raw.orders' not found"
    second = w.pipelines.start_update(pipeline_id).update_id or ""
    w.pipelines.stop(pipeline_id)
    assert update_state(w, harness, pipeline_id, second, 0) == pipelines.UpdateInfoState.STOPPING
    assert update_state(w, harness, pipeline_id, second, 60) == pipelines.UpdateInfoState.CANCELED
    assert w.pipelines.get(pipeline_id).state == pipelines.PipelineState.IDLE
