"""The emulator's run lifecycle on a manual clock: DAG order, roll-up, retries, cancel, skip, queue."""

from __future__ import annotations

from typing import Any

import pytest

from polysync.clock import ManualClock
from polysync.emulator.engine import Workspace
from polysync.emulator.errors import ApiError
from polysync.emulator.records import JobRun, TaskAttempt, job_run_json
from polysync.emulator.spec import WorkspaceSettings

HOST = "https://adb-1234567890123456.7.azuredatabricks.net"


def make_workspace(**settings: Any) -> tuple[Workspace, ManualClock]:
    clock = ManualClock()
    defaults: dict[str, Any] = {"default_pending_s": 5, "terminating_s": 1, "cancel_s": 2}
    defaults.update(settings)
    return Workspace(clock, WorkspaceSettings(**defaults)), clock


def chain_job(ws: Workspace, *scripts: dict[str, Any], **settings: Any) -> int:
    """A job of tasks t0 -> t1 -> ... each with the given emulator script."""
    tasks = []
    for index, script in enumerate(scripts):
        task: dict[str, Any] = {
            "task_key": f"t{index}",
            "notebook_task": {"notebook_path": f"/t{index}"},
            "emulator": script,
        }
        if index:
            task["depends_on"] = [{"task_key": f"t{index - 1}"}]
        tasks.append(task)
    return ws.create_job({"name": "chain", "tasks": tasks, **settings}).job_id


def rendered(ws: Workspace, run_id: int) -> dict[str, Any]:
    found = ws.get_run(run_id)
    assert isinstance(found, JobRun)
    return job_run_json(found, HOST, 1234567890123456)


def task_states(body: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {
        t["task_key"]: (t["state"]["life_cycle_state"], t["state"].get("result_state"))
        for t in body["tasks"]
    }


def test_success_walks_pending_running_terminating_terminated_in_dag_order() -> None:
    ws, clock = make_workspace()
    job_id = chain_job(ws, {"duration_s": 10}, {"duration_s": 20})
    run = ws.run_now({"job_id": job_id})
    body = rendered(ws, run.run_id)
    assert body["state"]["life_cycle_state"] == "PENDING"
    assert body["status"] == {"state": "PENDING"}
    assert task_states(body) == {"t0": ("PENDING", None), "t1": ("BLOCKED", None)}
    assert body["end_time"] == 0

    clock.advance(5)  # t0 cluster ready
    body = rendered(ws, run.run_id)
    assert body["state"]["life_cycle_state"] == "RUNNING"
    assert task_states(body)["t0"] == ("RUNNING", None)

    clock.advance(10)  # t0 done, t1 pending
    assert task_states(rendered(ws, run.run_id)) == {
        "t0": ("TERMINATED", "SUCCESS"),
        "t1": ("PENDING", None),
    }
    clock.advance(25)  # t1 done, run terminating
    body = rendered(ws, run.run_id)
    assert body["state"]["life_cycle_state"] == "TERMINATING"
    assert "result_state" not in body["state"]
    clock.advance(1)
    body = rendered(ws, run.run_id)
    assert body["state"] == {
        "life_cycle_state": "TERMINATED",
        "result_state": "SUCCESS",
        "state_message": "",
        "user_cancelled_or_timedout": False,
    }
    assert body["status"] == {
        "state": "TERMINATED",
        "termination_details": {"code": "SUCCESS", "type": "SUCCESS"},
    }
    assert body["end_time"] - body["start_time"] == 41_000
    assert body["run_duration"] == 41_000
    assert (body["setup_duration"], body["execution_duration"]) == (0, 0)
    t1 = body["tasks"][1]
    assert (t1["setup_duration"], t1["execution_duration"]) == (5_000, 20_000)
    assert t1["run_id"] != run.run_id
    assert t1["run_page_url"].endswith(f"/run/{t1['run_id']}")


def test_middle_task_failure_rolls_up_like_real_databricks() -> None:
    ws, clock = make_workspace()
    job_id = chain_job(
        ws,
        {"duration_s": 1},
        {"duration_s": 1, "outcome": "failure", "error": "ValueError: bad row 17"},
        {"duration_s": 1},
    )
    run = ws.run_now({"job_id": job_id})
    clock.advance(60)
    body = rendered(ws, run.run_id)
    message = (
        "Task t1 failed with message: Workload failed, see run output for details. "
        "This caused all downstream tasks to get skipped."
    )
    assert body["state"]["life_cycle_state"] == "INTERNAL_ERROR"
    assert body["state"]["result_state"] == "FAILED"
    assert body["state"]["state_message"] == message
    assert body["status"] == {
        "state": "TERMINATED",
        "termination_details": {
            "code": "RUN_EXECUTION_ERROR",
            "type": "CLIENT_ERROR",
            "message": message,
        },
    }
    assert task_states(body) == {
        "t0": ("TERMINATED", "SUCCESS"),
        "t1": ("TERMINATED", "FAILED"),
        "t2": ("SKIPPED", "UPSTREAM_FAILED"),
    }
    failed = body["tasks"][1]
    assert failed["state"]["state_message"] == "Workload failed, see run output for details"
    assert failed["status"]["termination_details"]["code"] == "RUN_EXECUTION_ERROR"
    assert body["tasks"][2]["status"]["termination_details"] == {
        "code": "SKIPPED",
        "type": "CLIENT_ERROR",
    }
    assert ws.output(failed["run_id"]).output_error == "ValueError: bad row 17"
    with pytest.raises(ApiError) as parent_output:
        ws.output(run.run_id)
    assert parent_output.value.status == 400
    assert "multiple tasks is not supported" in parent_output.value.message


def test_all_done_leaf_that_succeeds_makes_success_with_failures() -> None:
    ws, clock = make_workspace()
    job = ws.create_job(
        {
            "name": "cleanup",
            "tasks": [
                {"task_key": "work", "emulator": {"outcome": "failure", "duration_s": 1}},
                {
                    "task_key": "cleanup",
                    "depends_on": [{"task_key": "work"}],
                    "run_if": "ALL_DONE",
                    "emulator": {"duration_s": 1},
                },
            ],
        }
    )
    run = ws.run_now({"job_id": job.job_id})
    clock.advance(60)
    body = rendered(ws, run.run_id)
    assert (body["state"]["life_cycle_state"], body["state"]["result_state"]) == (
        "TERMINATED",
        "SUCCESS_WITH_FAILURES",
    )
    assert task_states(body)["cleanup"] == ("TERMINATED", "SUCCESS")


def test_retry_goes_through_waiting_for_retry_and_keeps_every_attempt() -> None:
    ws, clock = make_workspace(default_pending_s=0)
    job = ws.create_job(
        {
            "name": "retry",
            "tasks": [
                {
                    "task_key": "train",
                    "max_retries": 2,
                    "min_retry_interval_millis": 10_000,
                    "emulator": {"attempts": ["failure", "success"], "duration_s": 3},
                }
            ],
        }
    )
    run = ws.run_now({"job_id": job.job_id})
    clock.advance(3)
    body = rendered(ws, run.run_id)
    assert [(t["attempt_number"], t["state"]["life_cycle_state"]) for t in body["tasks"]] == [
        (0, "TERMINATED"),
        (1, "WAITING_FOR_RETRY"),
    ]
    assert body["tasks"][1]["status"]["state"] == "WAITING"
    assert body["state"]["life_cycle_state"] == "RUNNING"
    first, retry = body["tasks"]
    assert retry["original_attempt_run_id"] == first["run_id"] != retry["run_id"]
    clock.advance(10)
    assert rendered(ws, run.run_id)["tasks"][1]["state"]["life_cycle_state"] == "RUNNING"
    clock.advance(10)
    body = rendered(ws, run.run_id)
    assert body["state"]["result_state"] == "SUCCESS"
    assert [t["state"]["result_state"] for t in body["tasks"]] == ["FAILED", "SUCCESS"]


def test_retries_exhausted_fail_the_run() -> None:
    ws, clock = make_workspace(default_pending_s=0)
    job = ws.create_job(
        {
            "name": "flaky",
            "tasks": [
                {
                    "task_key": "a",
                    "max_retries": 1,
                    "emulator": {"outcome": "failure", "duration_s": 1},
                }
            ],
        }
    )
    run = ws.run_now({"job_id": job.job_id})
    clock.advance(30)
    body = rendered(ws, run.run_id)
    assert [t["attempt_number"] for t in body["tasks"]] == [0, 1]
    assert body["state"]["result_state"] == "FAILED"


def test_cancel_is_asynchronous_and_marks_downstream_upstream_canceled() -> None:
    ws, clock = make_workspace()
    job_id = chain_job(ws, {"duration_s": 100}, {"duration_s": 1})
    run = ws.run_now({"job_id": job_id})
    clock.advance(10)
    ws.cancel_run(run.run_id)
    body = rendered(ws, run.run_id)
    assert body["state"]["life_cycle_state"] == "TERMINATING"
    assert task_states(body) == {
        "t0": ("TERMINATED", "CANCELED"),
        "t1": ("SKIPPED", "UPSTREAM_CANCELED"),
    }
    clock.advance(2)
    body = rendered(ws, run.run_id)
    assert body["state"]["life_cycle_state"] == "TERMINATED"
    assert body["state"]["result_state"] == "CANCELED"
    assert body["state"]["user_cancelled_or_timedout"] is True
    assert body["status"]["termination_details"]["code"] == "USER_CANCELED"
    end = body["end_time"]
    ws.cancel_run(run.run_id)  # no-op on a terminal run
    clock.advance(100)
    assert rendered(ws, run.run_id)["end_time"] == end
    assert rendered(ws, run.run_id)["state"]["result_state"] == "CANCELED"


def test_cancel_unknown_run_is_the_legacy_400() -> None:
    ws, _ = make_workspace()
    with pytest.raises(ApiError) as missing:
        ws.cancel_run(42)
    assert (missing.value.status, missing.value.error_code, missing.value.message) == (
        400,
        "INVALID_PARAMETER_VALUE",
        "Run 42 does not exist.",
    )


def test_max_concurrent_runs_without_queue_skips_with_the_real_message() -> None:
    ws, _clock = make_workspace()
    job_id = chain_job(ws, {"duration_s": 100}, max_concurrent_runs=1)
    first = ws.run_now({"job_id": job_id})
    second = ws.run_now({"job_id": job_id})
    body = rendered(ws, second.run_id)
    assert body["state"]["life_cycle_state"] == "SKIPPED"
    assert "result_state" not in body["state"]
    assert body["state"]["state_message"] == (
        "Skipping this run because the limit of 1 maximum concurrent runs has been reached."
    )
    assert body["status"]["termination_details"]["code"] == "MAX_CONCURRENT_RUNS_EXCEEDED"
    assert rendered(ws, first.run_id)["state"]["life_cycle_state"] == "PENDING"


def test_max_concurrent_runs_with_queue_waits_in_queued_then_starts() -> None:
    ws, clock = make_workspace(default_pending_s=0, terminating_s=0)
    job_id = chain_job(ws, {"duration_s": 100}, max_concurrent_runs=1, queue={"enabled": True})
    first = ws.run_now({"job_id": job_id})
    second = ws.run_now({"job_id": job_id})
    body = rendered(ws, second.run_id)
    assert body["state"]["life_cycle_state"] == "QUEUED"
    assert body["status"]["queue_details"]["code"] == "MAX_CONCURRENT_RUNS_REACHED"
    clock.advance(100)
    assert rendered(ws, first.run_id)["state"]["result_state"] == "SUCCESS"
    body = rendered(ws, second.run_id)
    assert body["state"]["life_cycle_state"] == "RUNNING"
    clock.advance(100)
    body = rendered(ws, second.run_id)
    assert body["state"]["result_state"] == "SUCCESS"
    assert body["queue_duration"] == 100_000


def test_workspace_active_run_limit_queues_or_refuses() -> None:
    ws, clock = make_workspace(max_active_runs=1, default_pending_s=0, terminating_s=0)
    a = chain_job(ws, {"duration_s": 50}, max_concurrent_runs=5)
    ws.run_now({"job_id": a})
    with pytest.raises(ApiError) as refused:
        ws.run_now({"job_id": a})
    assert refused.value.status == 429
    queued = ws.run_now({"job_id": a, "queue": {"enabled": True}})
    assert (
        rendered(ws, queued.run_id)["status"]["queue_details"]["code"]
        == "ACTIVE_RUNS_LIMIT_REACHED"
    )
    clock.advance(50)
    assert rendered(ws, queued.run_id)["state"]["life_cycle_state"] == "RUNNING"


def test_idempotency_token_returns_the_same_run() -> None:
    ws, _ = make_workspace()
    job_id = chain_job(ws, {})
    first = ws.run_now({"job_id": job_id, "idempotency_token": "polysync-run-1"})
    again = ws.run_now({"job_id": job_id, "idempotency_token": "polysync-run-1"})
    other = ws.run_now({"job_id": job_id, "idempotency_token": "polysync-run-2"})
    assert first.run_id == again.run_id != other.run_id
    assert len(ws.runs) == 2
    with pytest.raises(ApiError, match="at most 64"):
        ws.run_now({"job_id": job_id, "idempotency_token": "x" * 65})


def test_a_deleted_runs_idempotency_token_stays_reserved() -> None:
    """Reference §3: "If the run with that token was deleted, an error is returned" - a 400,
    not a 500 and not a second run (run-now and submit alike)."""
    ws, clock = make_workspace()
    job_id = chain_job(ws, {"duration_s": 5})
    first = ws.run_now({"job_id": job_id, "idempotency_token": "polysync-run-1"})
    submitted = ws.submit(
        {
            "idempotency_token": "polysync-submit-1",
            "tasks": [{"task_key": "n", "notebook_task": {"notebook_path": "/x"}}],
        }
    )
    clock.advance(600)
    ws.delete_run(first.run_id)
    ws.delete_run(submitted.run_id)
    with pytest.raises(ApiError, match="was deleted") as refused:
        ws.run_now({"job_id": job_id, "idempotency_token": "polysync-run-1"})
    assert (refused.value.status, refused.value.error_code) == (400, "INVALID_PARAMETER_VALUE")
    with pytest.raises(ApiError, match="was deleted"):
        ws.submit(
            {
                "idempotency_token": "polysync-submit-1",
                "tasks": [{"task_key": "n", "notebook_task": {"notebook_path": "/x"}}],
            }
        )
    assert ws.runs == {}


def test_job_parameters_are_resolved_and_unknown_names_refused_by_switch() -> None:
    ws, _ = make_workspace()
    job = ws.create_job(
        {
            "name": "params",
            "parameters": [{"name": "env", "default": "prod"}, {"name": "n", "default": "5"}],
            "tasks": [{"task_key": "a"}],
        }
    )
    run = ws.run_now({"job_id": job.job_id, "job_parameters": {"n": "7"}})
    assert rendered(ws, run.run_id)["job_parameters"] == [
        {"name": "env", "default": "prod", "value": "prod"},
        {"name": "n", "default": "5", "value": "7"},
    ]
    with pytest.raises(ApiError) as unknown:
        ws.run_now({"job_id": job.job_id, "job_parameters": {"nope": "1"}})
    assert unknown.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "nope" in unknown.value.message
    with pytest.raises(ApiError) as mixed:
        ws.run_now(
            {"job_id": job.job_id, "job_parameters": {"n": "1"}, "notebook_params": {"x": "1"}}
        )
    assert mixed.value.status == 400
    assert "notebook_params" in mixed.value.message

    lenient, _ = make_workspace(reject_unknown_job_parameters=False)
    job2 = lenient.create_job({"name": "p", "tasks": [{"task_key": "a"}]})
    accepted = lenient.run_now({"job_id": job2.job_id, "job_parameters": {"nope": "1"}})
    assert accepted.job_parameters == [{"name": "nope", "default": "", "value": "1"}]


def test_missing_job_is_the_legacy_400_does_not_exist() -> None:
    ws, _ = make_workspace()
    with pytest.raises(ApiError) as missing:
        ws.run_now({"job_id": 998654886170278})
    assert (missing.value.status, missing.value.error_code, missing.value.message) == (
        400,
        "INVALID_PARAMETER_VALUE",
        "Job 998654886170278 does not exist.",
    )


def test_task_timeout_and_internal_error_outcomes() -> None:
    ws, clock = make_workspace(default_pending_s=0)
    timeout_job = ws.create_job(
        {
            "name": "slow",
            "tasks": [{"task_key": "a", "timeout_seconds": 10, "emulator": {"duration_s": 99}}],
        }
    )
    broken_job = ws.create_job(
        {
            "name": "broken",
            "tasks": [
                {"task_key": "a", "emulator": {"outcome": "internal_error", "duration_s": 2}}
            ],
        }
    )
    slow = ws.run_now({"job_id": timeout_job.job_id})
    broken = ws.run_now({"job_id": broken_job.job_id})
    clock.advance(20)
    slow_body = rendered(ws, slow.run_id)
    assert task_states(slow_body)["a"] == ("TERMINATED", "TIMEDOUT")
    assert slow_body["state"]["result_state"] == "TIMEDOUT"
    broken_body = rendered(ws, broken.run_id)
    assert task_states(broken_body)["a"] == ("INTERNAL_ERROR", "FAILED")
    assert broken_body["state"]["life_cycle_state"] == "INTERNAL_ERROR"


def test_job_timeout_stops_the_run() -> None:
    ws, clock = make_workspace(default_pending_s=0)
    job_id = chain_job(ws, {"duration_s": 500}, {"duration_s": 1}, timeout_seconds=60)
    run = ws.run_now({"job_id": job_id})
    clock.advance(70)
    body = rendered(ws, run.run_id)
    assert body["state"]["result_state"] == "TIMEDOUT"
    assert body["state"]["user_cancelled_or_timedout"] is True
    assert task_states(body) == {
        "t0": ("TERMINATED", "TIMEDOUT"),
        "t1": ("SKIPPED", "UPSTREAM_CANCELED"),
    }


def test_cancel_while_waiting_for_retry_never_restarts_the_task() -> None:
    ws, clock = make_workspace(default_pending_s=0)
    job = ws.create_job(
        {
            "name": "retry",
            "tasks": [
                {
                    "task_key": "a",
                    "max_retries": 3,
                    "min_retry_interval_millis": 60_000,
                    "emulator": {"outcome": "failure", "duration_s": 1},
                }
            ],
        }
    )
    run = ws.run_now({"job_id": job.job_id})
    clock.advance(5)
    ws.cancel_run(run.run_id)
    clock.advance(600)
    body = rendered(ws, run.run_id)
    assert body["state"]["result_state"] == "CANCELED"
    assert [t["state"]["life_cycle_state"] for t in body["tasks"]] == ["TERMINATED", "SKIPPED"]


def test_only_runs_the_chosen_tasks() -> None:
    ws, clock = make_workspace()
    job_id = chain_job(ws, {"duration_s": 1}, {"duration_s": 1}, {"duration_s": 1})
    run = ws.run_now({"job_id": job_id, "only": ["t1"]})
    clock.advance(30)
    body = rendered(ws, run.run_id)
    assert list(task_states(body)) == ["t1"]
    assert body["state"]["result_state"] == "SUCCESS"


@pytest.mark.parametrize(
    ("only", "code", "message"),
    [
        (
            ["t1", "zz", "yy"],
            "INVALID_PARAMETER_VALUE",
            "Task(s) zz, yy not found in job {job_id}.",
        ),
        (
            "t1",
            "MALFORMED_REQUEST",
            "Could not parse request object: Expected array of strings for field 'only', found STRING",
        ),
        (
            ["t1", 2],
            "MALFORMED_REQUEST",
            "Could not parse request object: Expected array of strings for field 'only', found ARRAY",
        ),
    ],
)
def test_only_refuses_unknown_tasks_and_non_string_arrays(
    only: object, code: str, message: str
) -> None:
    ws, _ = make_workspace()
    job_id = chain_job(ws, {}, {})
    with pytest.raises(ApiError) as refused:
        ws.run_now({"job_id": job_id, "only": only})
    assert (refused.value.status, refused.value.error_code) == (400, code)
    assert refused.value.message == message.format(job_id=job_id)
    assert ws.runs == {}


def test_task_run_ids_resolve_to_task_runs() -> None:
    ws, _ = make_workspace()
    job_id = chain_job(ws, {})
    run = ws.run_now({"job_id": job_id})
    task_run = ws.get_run(run.attempts[0].run_id)
    assert isinstance(task_run, TaskAttempt)
    assert task_run.parent is run


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"name": "x", "tasks": [{"task_key": "a"}, {"task_key": "a"}]}, "more than one task"),
        (
            {"name": "x", "tasks": [{"task_key": "a", "depends_on": [{"task_key": "zz"}]}]},
            "not a task",
        ),
        (
            {
                "name": "x",
                "tasks": [
                    {"task_key": "a", "depends_on": [{"task_key": "b"}]},
                    {"task_key": "b", "depends_on": [{"task_key": "a"}]},
                ],
            },
            "cycle",
        ),
        (
            {"name": "x", "parameters": [{"name": "bad name", "default": ""}]},
            "Invalid job parameter name",
        ),
        ({"name": "x", "max_concurrent_runs": 5000}, "max_concurrent_runs"),
        ({"name": "x", "tasks": "nope"}, "Expected array for field 'tasks'"),
    ],
)
def test_create_job_refuses_invalid_settings(settings: dict[str, Any], fragment: str) -> None:
    ws, _ = make_workspace()
    with pytest.raises(ApiError) as refused:
        ws.create_job(settings)
    assert refused.value.status == 400
    assert fragment in refused.value.message
    assert ws.jobs == {}
