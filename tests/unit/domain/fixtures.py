"""Realistic Jobs API payloads for the domain tests (shapes and texts from reference §2, §4)."""

from __future__ import annotations

import copy
from typing import Any

WORKSPACE_URL = "https://adb-2211091707396001.1.azuredatabricks.net"
JOB_ID = 977904116405742
RUN_ID = 1052232433102036
TASK_RUN_ID = 1052232433102040
RUN_PAGE_URL = f"{WORKSPACE_URL}/?o=2211091707396001#job/{JOB_ID}/run/{RUN_ID}"
FAILED_TASK_MESSAGE = "Workload failed, see run output for details"
FAILED_RUN_MESSAGE = (
    "Task ingest failed with message: Workload failed, see run output for details. "
    "This caused all downstream tasks to get skipped."
)

# reference §2 "Example": a real-shaped jobs/get answer.
JOB: dict[str, Any] = {
    "job_id": JOB_ID,
    "creator_user_name": "someone@contoso.com",
    "created_time": 1725303285952,
    "settings": {
        "name": "nightly-etl",
        "description": "Nightly ETL",
        "format": "MULTI_TASK",
        "max_concurrent_runs": 1,
        "tags": {"team": "data"},
        "parameters": [{"name": "run_date", "default": ""}, {"name": "env", "default": "prod"}],
        "tasks": [
            {
                "task_key": "ingest",
                "notebook_task": {
                    "notebook_path": "/Repos/etl/ingest",
                    "base_parameters": {"mode": "full"},
                    "source": "WORKSPACE",
                },
                "job_cluster_key": "main",
            },
            {
                "task_key": "transform",
                "depends_on": [{"task_key": "ingest"}],
                "python_wheel_task": {
                    "package_name": "etl",
                    "entry_point": "transform",
                    "parameters": ["--date", "{{job.parameters.run_date}}"],
                },
                "job_cluster_key": "main",
            },
        ],
    },
}

# reference §4 "Example runs/get": a failed multi-task run, INTERNAL_ERROR/FAILED at the top,
# the failing task TERMINATED/FAILED, its downstream task SKIPPED/UPSTREAM_FAILED.
FAILED_RUN: dict[str, Any] = {
    "job_id": JOB_ID,
    "run_id": RUN_ID,
    "number_in_job": RUN_ID,
    "original_attempt_run_id": RUN_ID,
    "run_name": "nightly-etl",
    "run_type": "JOB_RUN",
    "trigger": "ONE_TIME",
    "attempt_number": 0,
    "start_time": 1719000000000,
    "end_time": 1719000404690,
    "setup_duration": 0,
    "execution_duration": 0,
    "cleanup_duration": 0,
    "run_duration": 404690,
    "queue_duration": 0,
    "run_page_url": RUN_PAGE_URL,
    "state": {
        "life_cycle_state": "INTERNAL_ERROR",
        "result_state": "FAILED",
        "state_message": FAILED_RUN_MESSAGE,
        "user_cancelled_or_timedout": False,
    },
    "status": {
        "state": "TERMINATED",
        "termination_details": {
            "code": "RUN_EXECUTION_ERROR",
            "type": "CLIENT_ERROR",
            "message": FAILED_RUN_MESSAGE,
        },
    },
    "job_parameters": [
        {"name": "env", "default": "prod", "value": "prod"},
        {"name": "run_date", "default": "", "value": "2024-06-21"},
    ],
    "tasks": [
        {
            "task_key": "ingest",
            "run_id": 1052232433102040,
            "attempt_number": 0,
            "state": {
                "life_cycle_state": "TERMINATED",
                "result_state": "FAILED",
                "state_message": FAILED_TASK_MESSAGE,
                "user_cancelled_or_timedout": False,
            },
            "status": {
                "state": "TERMINATED",
                "termination_details": {
                    "code": "RUN_EXECUTION_ERROR",
                    "type": "CLIENT_ERROR",
                    "message": FAILED_TASK_MESSAGE,
                },
            },
            "run_page_url": f"{WORKSPACE_URL}/?o=2211091707396001#job/{JOB_ID}/run/{TASK_RUN_ID}",
            "start_time": 1719000000500,
            "end_time": 1719000400000,
        },
        {
            "task_key": "transform",
            "run_id": 1052232433102041,
            "depends_on": [{"task_key": "ingest"}],
            "attempt_number": 0,
            "state": {
                "life_cycle_state": "SKIPPED",
                "result_state": "UPSTREAM_FAILED",
                "state_message": "",
                "user_cancelled_or_timedout": False,
            },
            "status": {
                "state": "TERMINATED",
                "termination_details": {"code": "SKIPPED", "type": "CLIENT_ERROR"},
            },
            "start_time": 0,
            "end_time": 0,
        },
    ],
}


def task(
    key: str,
    life_cycle: str,
    result: str | None = None,
    *,
    run_id: int,
    attempt: int = 0,
    message: str = "",
) -> dict[str, Any]:
    state: dict[str, Any] = {"life_cycle_state": life_cycle, "state_message": message}
    if result is not None:
        state["result_state"] = result
    return {"task_key": key, "run_id": run_id, "attempt_number": attempt, "state": state}


def run(
    life_cycle: str | None,
    result: str | None = None,
    *,
    message: str = "",
    tasks: list[dict[str, Any]] | None = None,
    status: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A runs/get answer with the given top-level state (None: no `state` at all)."""
    body: dict[str, Any] = {"job_id": JOB_ID, "run_id": RUN_ID, "run_page_url": RUN_PAGE_URL}
    if life_cycle is not None:
        body["state"] = {"life_cycle_state": life_cycle, "state_message": message}
        if result is not None:
            body["state"]["result_state"] = result
    if status is not None:
        body["status"] = status
    if tasks is not None:
        body["tasks"] = tasks
    body.update(extra)
    return body


def failed_run() -> dict[str, Any]:
    return copy.deepcopy(FAILED_RUN)


def job() -> dict[str, Any]:
    return copy.deepcopy(JOB)
