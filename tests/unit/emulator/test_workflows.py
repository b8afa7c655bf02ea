"""Control-flow tasks, one-time runs and repairs on a manual clock (no sockets, no sleeps)."""

from __future__ import annotations

from typing import Any

import pytest

from polysync.emulator.errors import ApiError
from polysync.emulator.records import JobRun, TaskAttempt, repair_history_json
from tests.unit.emulator.test_lifecycle import make_workspace, rendered, task_states


def nb(key: str, **extra: Any) -> dict[str, Any]:
    return {"task_key": key, "notebook_task": {"notebook_path": f"/{key}"}, **extra}


def test_condition_branches_and_excluded_chain() -> None:
    ws, clock = make_workspace()
    job = ws.create_job(
        {
            "name": "branch",
            "parameters": [{"name": "n", "default": "5"}],
            "tasks": [
                {
                    "task_key": "c",
                    "condition_task": {
                        "op": "EQUAL_TO",
                        "left": "{{job.parameters.n}}",
                        "right": "5",
                    },
                },
                nb("no", depends_on=[{"task_key": "c", "outcome": "false"}]),
                nb("after_no", depends_on=[{"task_key": "no"}]),
                nb("yes", depends_on=[{"task_key": "c", "outcome": "true"}]),
            ],
        }
    )
    run = ws.run_now({"job_id": job.job_id})
    # The condition runs in the Jobs service: no cluster wait, decided at once.
    body = rendered(ws, run.run_id)
    states = task_states(body)
    assert states["c"] == ("TERMINATED", "SUCCESS")
    assert states["no"] == ("SKIPPED", "EXCLUDED")
    assert states["after_no"] == ("SKIPPED", "EXCLUDED")  # the whole branch not taken
    assert states["yes"] == ("PENDING", None)
    assert next(t for t in body["tasks"] if t["task_key"] == "c")["condition_task"] == {
        "op": "EQUAL_TO",
        "left": "{{job.parameters.n}}",
        "right": "5",
        "outcome": "true",
    }
    clock.advance(60)
    assert rendered(ws, run.run_id)["state"]["result_state"] == "SUCCESS"


def test_a_condition_on_a_non_number_fails_the_task_and_the_run() -> None:
    ws, clock = make_workspace()
    job = ws.create_job(
        {
            "name": "bad",
            "tasks": [
                {"task_key": "c", "condition_task": {"op": "LESS_THAN", "left": "x", "right": "1"}}
            ],
        }
    )
    run = ws.run_now({"job_id": job.job_id})
    clock.advance(5)
    body = rendered(ws, run.run_id)
    assert task_states(body)["c"] == ("TERMINATED", "FAILED")
    assert body["state"]["result_state"] == "FAILED"
    attempt = ws.output(body["tasks"][0]["run_id"])
    assert attempt.output_error is not None
    assert "numerically" in attempt.output_error


def test_bad_condition_definitions_are_refused_at_create() -> None:
    ws, _ = make_workspace()
    with pytest.raises(ApiError, match=r"Invalid condition_task\.op"):
        ws.create_job(
            {
                "name": "x",
                "tasks": [
                    {"task_key": "c", "condition_task": {"op": "IS", "left": "1", "right": "1"}}
                ],
            }
        )
    with pytest.raises(ApiError, match=r"for_each_task\.concurrency"):
        ws.create_job(
            {
                "name": "x",
                "tasks": [
                    {
                        "task_key": "f",
                        "for_each_task": {"inputs": "[]", "concurrency": 0, "task": nb("i")},
                    }
                ],
            }
        )


def test_run_job_task_follows_its_child_run_and_cancel_reaches_it() -> None:
    ws, clock = make_workspace(default_task_duration_s=10)
    child = ws.create_job({"name": "child", "tasks": [nb("work", emulator={"duration_s": 100})]})
    parent = ws.create_job(
        {
            "name": "parent",
            "tasks": [{"task_key": "call", "run_job_task": {"job_id": child.job_id}}],
        }
    )
    run = ws.run_now({"job_id": parent.job_id})
    ws.advance()  # the run_job_task starts at this instant, with no cluster to wait for
    call = run.attempts[0]
    assert call.child_run_id is not None
    child_run = ws.runs[call.child_run_id]
    assert child_run.trigger == "RUN_JOB_TASK"
    assert child_run.parent_attempt is call
    clock.advance(30)
    assert task_states(rendered(ws, run.run_id))["call"] == ("RUNNING", None)
    ws.cancel_run(run.run_id)
    clock.advance(10)
    assert rendered(ws, run.run_id)["state"]["result_state"] == "CANCELED"
    assert ws.runs[child_run.run_id].st.result_state == "CANCELED"


def test_run_job_task_fails_with_its_child() -> None:
    ws, clock = make_workspace()
    child = ws.create_job({"name": "child", "tasks": [nb("work", emulator={"outcome": "failure"})]})
    parent = ws.create_job(
        {
            "name": "parent",
            "tasks": [{"task_key": "call", "run_job_task": {"job_id": child.job_id}}],
        }
    )
    run = ws.run_now({"job_id": parent.job_id})
    clock.advance(600)
    body = rendered(ws, run.run_id)
    assert body["state"]["result_state"] == "FAILED"
    output = ws.output(body["tasks"][0]["run_id"])
    assert output.output_error is not None
    assert f"Run {run.attempts[0].child_run_id} of job {child.job_id}" in output.output_error


def test_for_each_respects_concurrency_and_counts_iterations() -> None:
    ws, clock = make_workspace(default_pending_s=0)
    job = ws.create_job(
        {
            "name": "loop",
            "tasks": [
                {
                    "task_key": "f",
                    "for_each_task": {
                        "inputs": '["a","b","c","d"]',
                        "concurrency": 2,
                        "task": nb(
                            "it",
                            emulator={"duration_s": 10, "iteration_outcomes": {"c": "failure"}},
                        ),
                    },
                }
            ],
        }
    )
    run = ws.run_now({"job_id": job.job_id})
    ws.advance()
    parent = run.attempts[0]
    stats = parent.extra["for_each_task"]["stats"]["task_run_stats"]
    assert (stats["scheduled_iterations"], stats["active_iterations"]) == (2, 2)
    clock.advance(10)
    ws.advance()
    stats = parent.extra["for_each_task"]["stats"]["task_run_stats"]
    assert (stats["completed_iterations"], stats["active_iterations"]) == (2, 2)
    clock.advance(10)
    body = rendered(ws, run.run_id)
    final = body["tasks"][0]["for_each_task"]["stats"]
    assert final["task_run_stats"] == {
        "total_iterations": 4,
        "scheduled_iterations": 4,
        "active_iterations": 0,
        "completed_iterations": 4,
        "succeeded_iterations": 3,
        "failed_iterations": 1,
    }
    assert final["error_message_stats"][0]["count"] == 1
    assert body["tasks"][0]["state"]["result_state"] == "FAILED"
    # Iterations are not tasks of the run: they belong to the for-each task run.
    assert [t["task_key"] for t in body["tasks"]] == ["f"]
    found = ws.get_run(parent.run_id)
    assert isinstance(found, TaskAttempt)
    assert [it.iteration_input for it in found.iterations] == ['"a"', '"b"', '"c"', '"d"']


def test_for_each_with_an_input_that_is_not_an_array_fails() -> None:
    ws, clock = make_workspace()
    job = ws.create_job(
        {
            "name": "loop",
            "parameters": [{"name": "items", "default": "not json"}],
            "tasks": [
                {
                    "task_key": "f",
                    "for_each_task": {"inputs": "{{job.parameters.items}}", "task": nb("i")},
                }
            ],
        }
    )
    run = ws.run_now({"job_id": job.job_id})
    clock.advance(5)
    assert rendered(ws, run.run_id)["state"]["result_state"] == "FAILED"
    assert run.attempts[0].output_error is not None
    assert "not a valid JSON array" in run.attempts[0].output_error


def test_submit_runs_have_no_job_and_no_job_concurrency_limit() -> None:
    ws, _ = make_workspace()
    body = {
        "run_name": "once",
        "tasks": [
            nb(
                "t",
                new_cluster={
                    "spark_version": "15.4.x-scala2.12",
                    "node_type_id": "Standard_D4ds_v5",
                    "num_workers": 1,
                },
            )
        ],
    }
    runs = [ws.submit(body) for _ in range(3)]
    assert all(r.st.life_cycle_state == "PENDING" for r in runs)
    out = rendered(ws, runs[0].run_id)
    assert "job_id" not in out
    assert out["run_type"] == "SUBMIT_RUN"
    assert out["run_page_url"].endswith(f"#job/run/{runs[0].run_id}")
    with pytest.raises(ApiError, match="node_type_id or instance_pool_id"):
        ws.submit({"tasks": [nb("t", new_cluster={"spark_version": "x"})]})
    with pytest.raises(ApiError, match="more than one kind of compute"):
        ws.submit({"tasks": [nb("t", existing_cluster_id="a", environment_key="b")]})
    with pytest.raises(ApiError, match="Missing required field: tasks"):
        ws.submit({"run_name": "x"})


def failing_chain(ws: Any) -> int:
    job = ws.create_job(
        {
            "name": "chain",
            "tasks": [
                nb("a"),
                nb(
                    "b",
                    depends_on=[{"task_key": "a"}],
                    emulator={"attempts": ["failure", "success"]},
                ),
                nb("c", depends_on=[{"task_key": "b"}]),
                nb("d", depends_on=[{"task_key": "a"}]),
            ],
        }
    )
    return int(job.job_id)


def test_repair_reruns_only_the_chosen_tasks_and_reopens_the_run() -> None:
    ws, clock = make_workspace()
    run = ws.run_now({"job_id": failing_chain(ws)})
    clock.advance(600)
    before = rendered(ws, run.run_id)
    assert before["state"]["life_cycle_state"] == "INTERNAL_ERROR"
    end_of_original = before["end_time"]
    ids_before = {t["task_key"]: t["run_id"] for t in before["tasks"]}
    repair_id = ws.repair_run({"run_id": run.run_id, "rerun_all_failed_tasks": True})
    after = rendered(ws, run.run_id)
    assert after["state"]["life_cycle_state"] in ("PENDING", "RUNNING")
    assert after["end_time"] == 0
    new = [t for t in after["tasks"] if t["run_id"] not in ids_before.values()]
    assert sorted((t["task_key"], t["attempt_number"]) for t in new) == [("b", 1), ("c", 1)]
    assert all(t["original_attempt_run_id"] == ids_before[t["task_key"]] for t in new)
    clock.advance(600)
    final = rendered(ws, run.run_id)
    assert final["state"] == {
        "life_cycle_state": "TERMINATED",
        "result_state": "SUCCESS",
        "state_message": "",
        "user_cancelled_or_timedout": False,
    }
    found = ws.get_run(run.run_id)
    assert isinstance(found, JobRun)
    history = repair_history_json(found)
    assert [h["type"] for h in history] == ["ORIGINAL", "REPAIR"]
    assert history[0]["end_time"] == end_of_original
    assert history[0]["state"]["life_cycle_state"] == "INTERNAL_ERROR"
    assert history[1]["id"] == repair_id
    assert sorted(history[1]["task_run_ids"]) == sorted(t["run_id"] for t in new)
    assert history[1]["end_time"] == final["end_time"]
    assert "id" not in history[0]


def test_rerun_dependent_tasks_adds_the_downstream() -> None:
    ws, clock = make_workspace()
    run = ws.run_now({"job_id": failing_chain(ws)})
    clock.advance(600)
    ws.repair_run({"run_id": run.run_id, "rerun_tasks": ["a"], "rerun_dependent_tasks": True})
    found = ws.get_run(run.run_id)
    assert isinstance(found, JobRun)
    assert sorted(a.task_key for a in found.attempts if a.attempt_number == 1) == [
        "a",
        "b",
        "c",
        "d",
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rerun_tasks": ["a", "a"]}, "rerun_tasks cannot contain duplicate task keys."),
        ({"rerun_tasks": ["zz"]}, "Task(s) zz not found in run"),
        ({}, "Either rerun_tasks or rerun_all_failed_tasks must be set."),
        ({"rerun_tasks": ["a"], "rerun_all_failed_tasks": True}, "Only one of rerun_tasks"),
        ({"rerun_tasks": ["a"], "latest_repair_id": 5}, "is not the latest repair"),
        (
            {"rerun_tasks": ["a"], "job_parameters": {"x": "1"}, "notebook_params": {"a": "b"}},
            "cannot be used together",
        ),
    ],
)
def test_repair_errors(body: dict[str, Any], message: str) -> None:
    ws, clock = make_workspace()
    run = ws.run_now({"job_id": failing_chain(ws)})
    clock.advance(600)
    with pytest.raises(ApiError) as refused:
        ws.repair_run({"run_id": run.run_id, **body})
    assert refused.value.status == 400
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert message in refused.value.message


@pytest.mark.parametrize("rerun_tasks", ["a", ["a", 1], {"a": True}])
def test_repair_refuses_rerun_tasks_that_are_not_an_array_of_strings(rerun_tasks: object) -> None:
    ws, clock = make_workspace()
    run = ws.run_now({"job_id": failing_chain(ws)})
    clock.advance(600)
    with pytest.raises(ApiError) as refused:
        ws.repair_run({"run_id": run.run_id, "rerun_tasks": rerun_tasks})
    assert (refused.value.status, refused.value.error_code) == (400, "MALFORMED_REQUEST")
    assert "Expected array of strings for field 'rerun_tasks'" in refused.value.message
    found = ws.get_run(run.run_id)
    assert isinstance(found, JobRun)
    assert found.repairs == []


def test_an_active_run_or_a_stale_repair_id_cannot_be_repaired() -> None:
    ws, clock = make_workspace()
    run = ws.run_now({"job_id": failing_chain(ws)})
    with pytest.raises(ApiError) as active:
        ws.repair_run({"run_id": run.run_id, "rerun_tasks": ["a"]})
    assert (active.value.status, active.value.error_code) == (400, "INVALID_STATE")
    clock.advance(600)
    first = ws.repair_run({"run_id": run.run_id, "rerun_all_failed_tasks": True})
    clock.advance(600)
    with pytest.raises(ApiError, match="latest repair ID needs to be provided"):
        ws.repair_run({"run_id": run.run_id, "rerun_tasks": ["a"]})
    second = ws.repair_run({"run_id": run.run_id, "rerun_tasks": ["a"], "latest_repair_id": first})
    assert second != first
    with pytest.raises(ApiError, match=r"Run 1 does not exist\."):
        ws.repair_run({"run_id": 1, "rerun_tasks": ["a"]})


def test_repair_with_new_job_parameters() -> None:
    ws, clock = make_workspace()
    job = ws.create_job(
        {
            "name": "p",
            "parameters": [{"name": "day", "default": "1"}],
            "tasks": [nb("a", emulator={"outcome": "failure"})],
        }
    )
    run = ws.run_now({"job_id": job.job_id, "job_parameters": {"day": "2"}})
    clock.advance(600)
    ws.repair_run(
        {"run_id": run.run_id, "rerun_all_failed_tasks": True, "job_parameters": {"day": "3"}}
    )
    assert rendered(ws, run.run_id)["job_parameters"] == [
        {"name": "day", "default": "1", "value": "3"}
    ]
