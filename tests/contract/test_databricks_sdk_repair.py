"""Contract: the official databricks-sdk repairs runs on the emulator as on a workspace (D13):
`w.jobs.repair_run(...).result()`, the run reopened by runs/get, `rerun_tasks`, the
`latest_repair_id` checks and the in-progress refusal, `repair_history` and the run's
`job_parameters` kept."""

from __future__ import annotations

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest
from databricks.sdk.service import jobs

from tests.conftest import EmulatorHarness
from tests.contract.test_databricks_sdk_more import (  # noqa: F401 - the fixture
    TWO_MINUTES,
    advancing,
    served,
)

Served = tuple[EmulatorHarness, WorkspaceClient]


def flaky_job(harness: EmulatorHarness) -> int:
    job = harness.state.create_job(
        {
            "name": "flaky",
            "parameters": [{"name": "env", "default": "dev"}],
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
    return int(job.job_id)


def failed_run(harness: EmulatorHarness, w: WorkspaceClient) -> int:
    waiter = w.jobs.run_now(flaky_job(harness), job_parameters={"env": "prod"})
    with pytest.raises(Exception, match="b"):
        waiter.result(timeout=TWO_MINUTES, callback=advancing(harness))
    return int(waiter.run_id)


def test_a_repaired_run_is_in_progress_again_then_ends_with_the_repaired_outcome(
    served: Served,  # noqa: F811 - the fixture
) -> None:
    harness, w = served
    run_id = failed_run(harness, w)
    before = w.jobs.get_run(run_id)
    assert before.state is not None
    assert before.state.result_state is jobs.RunResultState.FAILED
    waiter = w.jobs.repair_run(run_id, rerun_all_failed_tasks=True)
    assert waiter.response.repair_id is not None
    during = w.jobs.get_run(run_id)
    assert during.state is not None
    assert during.state.life_cycle_state in (
        jobs.RunLifeCycleState.PENDING,
        jobs.RunLifeCycleState.RUNNING,
    )
    assert during.state.result_state is None
    # While it runs, another repair is refused, whatever it names.
    with pytest.raises(BadRequest, match="in progress"):
        w.jobs.repair_run(run_id, rerun_tasks=["a"], latest_repair_id=waiter.response.repair_id)
    repaired = waiter.result(timeout=TWO_MINUTES, callback=advancing(harness))
    assert repaired.state is not None
    assert repaired.state.result_state is jobs.RunResultState.SUCCESS
    # The run's own job_parameters were kept.
    assert {p.name: p.value for p in repaired.job_parameters or []} == {"env": "prod"}
    latest = {t.task_key: t for t in repaired.tasks or []}
    assert (latest["b"].attempt_number, latest["c"].attempt_number) == (1, 1)
    history = w.jobs.get_run(run_id, include_history=True).repair_history or []
    assert [(h.type, h.id) for h in history] == [
        (jobs.RepairHistoryItemType.ORIGINAL, None),
        (jobs.RepairHistoryItemType.REPAIR, waiter.response.repair_id),
    ]


def test_latest_repair_id_must_be_the_latest(served: Served) -> None:  # noqa: F811
    harness, w = served
    run_id = failed_run(harness, w)
    first = w.jobs.repair_run(run_id, rerun_tasks=["b"]).result(
        timeout=TWO_MINUTES, callback=advancing(harness)
    )
    assert first.state is not None
    # `rerun_tasks` reran only b: c stays skipped, so the run stays failed.
    assert {t.task_key for t in first.tasks or [] if (t.attempt_number or 0) > 0} == {"b"}
    history = w.jobs.get_run(run_id, include_history=True).repair_history or []
    first_id = history[-1].id
    assert first_id is not None
    with pytest.raises(BadRequest, match="latest repair ID needs to be provided"):
        w.jobs.repair_run(run_id, rerun_all_failed_tasks=True)
    with pytest.raises(BadRequest, match="is not the latest repair"):
        w.jobs.repair_run(run_id, rerun_all_failed_tasks=True, latest_repair_id=first_id + 1)
    second = w.jobs.repair_run(run_id, rerun_all_failed_tasks=True, latest_repair_id=first_id)
    done = second.result(timeout=TWO_MINUTES, callback=advancing(harness))
    assert done.state is not None
    assert done.state.result_state is jobs.RunResultState.SUCCESS
    ids = [h.id for h in w.jobs.get_run(run_id, include_history=True).repair_history or []]
    assert ids == [None, first_id, second.response.repair_id]
