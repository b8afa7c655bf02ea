"""Wire models: tolerant of unknown values and fields, precise about what was absent."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from polysync.databricks.models import DatabricksJob, DatabricksRun, RunOutput

FAILED_RUN: dict[str, Any] = {
    "job_id": 977904116405742,
    "run_id": 1052232433102036,
    "number_in_job": 1052232433102036,
    "run_page_url": "https://adb-1.1.azuredatabricks.net/?o=1#job/977904116405742/run/1052232433102036",
    "state": {
        "life_cycle_state": "INTERNAL_ERROR",
        "result_state": "FAILED",
        "state_message": "Task ingest failed",
        "user_cancelled_or_timedout": False,
    },
    "status": {
        "state": "TERMINATED",
        "termination_details": {"code": "RUN_EXECUTION_ERROR", "type": "CLIENT_ERROR"},
    },
    "job_parameters": [{"name": "env", "default": "prod", "value": "prod"}],
    "tasks": [
        {
            "task_key": "ingest",
            "run_id": 1052232433102040,
            "attempt_number": 0,
            "state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED"},
        },
        {
            "task_key": "transform",
            "run_id": 1052232433102041,
            "depends_on": [{"task_key": "ingest"}],
            "state": {"life_cycle_state": "SKIPPED", "result_state": "UPSTREAM_FAILED"},
        },
    ],
    "some_future_field": {"x": 1},
}


def test_a_failed_run_parses() -> None:
    run = DatabricksRun.model_validate(FAILED_RUN)
    assert run.state is not None
    assert (run.state.life_cycle_state, run.state.result_state) == ("INTERNAL_ERROR", "FAILED")
    assert run.status is not None
    assert run.status.termination_details is not None
    assert run.status.termination_details.code == "RUN_EXECUTION_ERROR"
    assert run.tasks is not None
    assert [t.task_key for t in run.tasks] == ["ingest", "transform"]
    assert run.tasks[1].depends_on[0].task_key == "ingest"
    assert run.raw() == FAILED_RUN  # what the domain decoders take: exactly what was sent


def test_unknown_enum_values_never_crash() -> None:
    run = DatabricksRun.model_validate(
        {
            "run_id": 1,
            "state": {"life_cycle_state": "HIBERNATING", "result_state": "MAYBE"},
            "status": {
                "state": "DREAMING",
                "queue_details": {"code": "NEW_REASON"},
                "termination_details": {"code": "NEW_CODE", "type": "NEW_TYPE"},
            },
        }
    )
    assert run.state is not None
    assert run.state.life_cycle_state == "HIBERNATING"
    assert run.status is not None
    assert run.status.state == "DREAMING"


@given(life=st.text(), result=st.none() | st.text(), v2=st.none() | st.text())
def test_any_state_strings_parse(life: str, result: str | None, v2: str | None) -> None:
    run = DatabricksRun.model_validate(
        {
            "run_id": 1,
            "state": {"life_cycle_state": life, "result_state": result},
            "status": {"state": v2},
        }
    )
    assert run.state is not None
    assert run.state.life_cycle_state == life


def test_tasks_absent_is_not_zero_tasks() -> None:
    listed = DatabricksJob.model_validate({"job_id": 1, "settings": {"name": "n"}})
    assert listed.settings.tasks is None
    empty = DatabricksJob.model_validate({"job_id": 1, "settings": {"name": "n", "tasks": []}})
    assert empty.settings.tasks == []
    bare = DatabricksJob.model_validate({"job_id": 2})
    assert bare.settings.name is None
    assert bare.raw() == {"job_id": 2}


def test_job_fields_read_by_the_domain() -> None:
    job = DatabricksJob.model_validate(
        {
            "job_id": 5,
            "has_more": True,
            "settings": {
                "name": "etl",
                "parameters": [{"name": "run_date", "default": ""}, {"name": "n", "default": 3}],
                "job_parameters": [{"name": "legacy", "default_value": "x"}],
                "tasks": [
                    {
                        "task_key": "a",
                        "notebook_task": {"notebook_path": "/p", "base_parameters": {"m": "full"}},
                    },
                    {
                        "task_key": "b",
                        "python_wheel_task": {"package_name": "p", "entry_point": "e"},
                    },
                    {"task_key": "c"},
                ],
            },
        }
    )
    assert job.has_more is True
    assert job.settings.parameters is not None
    assert [(p.name, p.default) for p in job.settings.parameters] == [("run_date", ""), ("n", 3)]
    assert job.settings.tasks is not None
    assert [t.task_type for t in job.settings.tasks] == ["notebook_task", "python_wheel_task", None]


def test_run_output() -> None:
    output = RunOutput.model_validate(
        {
            "error": "ZeroDivisionError",
            "error_trace": "Traceback...",
            "metadata": {"run_id": 8, "job_id": 1},
        }
    )
    assert output.metadata is not None
    assert output.metadata.run_id == 8
