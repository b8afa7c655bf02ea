"""`jobs/runs/repair`: which tasks of an ended run rerun, and their rerun inside that run."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from polysync.emulator.errors import (
    INVALID_PARAMETER_VALUE,
    INVALID_STATE,
    ApiError,
    run_not_found,
    tasks_not_found,
)
from polysync.emulator.fields import (
    as_param_string,
    int_field,
    legacy_params,
    malformed,
    str_list_field,
)
from polysync.emulator.job_settings import job_parameter_values
from polysync.emulator.lifecycle import RunLifecycle
from polysync.emulator.records import INTERNAL_ERROR, PENDING, Job, JobRun, Repair

# What `rerun_all_failed_tasks` reruns: failed, timed-out, cancelled and the tasks they skipped
# (the "Repair run" of the UI reruns "all failed and skipped tasks"; issue 12).
REPAIRABLE_RESULTS = frozenset(
    {
        "FAILED",
        "TIMEDOUT",
        "CANCELED",
        "UPSTREAM_FAILED",
        "UPSTREAM_CANCELED",
        "MAXIMUM_CONCURRENT_RUNS_REACHED",
    }
)


def repair(
    runs: RunLifecycle, jobs: Mapping[int, Job], body: Mapping[str, Any], *, reject_unknown: bool
) -> int:
    """`jobs/runs/repair`: rerun chosen tasks of an ended run of `runs`, inside that run; returns the
    `repair_id` (sdk-py `JobsAPI.repair_run`, `RepairRunResponse`).

    Body: `run_id`; `rerun_tasks` (task keys) or `rerun_all_failed_tasks` (failed, timed-out,
    cancelled tasks and the tasks they skipped); `rerun_dependent_tasks` adds every task
    downstream of those; `latest_repair_id` is required once the run was repaired and must be
    the latest; `job_parameters` (or legacy parameters, not both) replace the run's values.
    Tasks rerun with the job's current settings, as new task runs whose `attempt_number`
    continues from the task's last attempt (INFERENCE); the run is active again until they end,
    and its final state is the repaired outcome.

    Raises ApiError 400: `INVALID_STATE` for a run still active; `INVALID_PARAMETER_VALUE` for
    unknown or duplicate task keys, a missing or stale `latest_repair_id` ("The latest repair ID
    needs to be provided in order to create a new repair", as databricks-sdk-py issue #157
    quotes it), both or neither of `rerun_tasks`/`rerun_all_failed_tasks`, nothing to rerun;
    "Run N does not exist." for an unknown run.
    """
    run_id = int_field(body, "run_id", required=True)
    assert run_id is not None
    run = runs.runs.get(run_id)
    if run is None:
        if run_id in runs.task_runs:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"Run {run_id} is a task run; repair the job run it belongs to.",
            )
        raise run_not_found(run_id)
    if run.active:
        # Status and code UNCONFIRMED; the SDK documents "The run must not be in progress."
        raise ApiError(
            400,
            INVALID_STATE,
            f"Run {run_id} is still in progress; only a run that has ended can be repaired.",
        )
    _check_latest_repair_id(run, int_field(body, "latest_repair_id"))
    chosen = _repair_selection(run, body)
    job_params = body.get("job_parameters")
    if job_params is not None and not isinstance(job_params, dict):
        raise malformed("job_parameters", "object", job_params)
    legacy = legacy_params(body, job_params)
    if job_params:
        overrides = {p["name"]: p["value"] for p in run.job_parameters}
        overrides.update({str(k): as_param_string(v) for k, v in job_params.items()})
        run.job_parameters = job_parameter_values(run.job, overrides, reject_unknown=reject_unknown)
    if legacy:
        run.overriding_parameters = legacy
    if not run.repairs:
        run.original_attempt_ids = [a.run_id for a in run.attempts]
        run.original_end_time_ms = run.end_time_ms
        run.original_state, run.original_status = run.st.state_json(), run.st.status_json()
    else:
        last = run.repairs[-1]
        last.state, last.status = run.st.state_json(), run.st.status_json()
    record = Repair(repair_id=runs.new_run_id(), start_time_ms=runs.now_ms, task_run_ids=[])
    current = {t["task_key"]: t for t in run.job.tasks} if run.job.job_id in jobs else {}
    for key, previous in run.latest_attempts().items():
        if key not in chosen:
            continue
        previous.superseded = True
        task = copy.deepcopy(current.get(key, previous.task))
        if "depends_on" not in previous.task:
            task.pop("depends_on", None)  # a run started with `only` keeps its trimmed DAG
        attempt = runs.new_attempt(
            run,
            task,
            attempt_number=previous.attempt_number + 1,
            original_attempt_run_id=previous.original_attempt_run_id,
        )
        record.task_run_ids.append(attempt.run_id)
    run.repairs.append(record)
    st = run.st
    st.life_cycle_state, st.result_state, st.state_message = PENDING, None, ""
    st.user_cancelled_or_timedout, st.termination = False, None
    run.end_time_ms = 0
    run.cancel_requested = run.timed_out = False
    runs.reopen(run)
    return record.repair_id


def _check_latest_repair_id(run: JobRun, given: int | None) -> None:
    latest = run.repairs[-1].repair_id if run.repairs else None
    if latest is not None and given is None:
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            "The latest repair ID needs to be provided in order to create a new repair",
        )
    if given is not None and given != latest:
        # Wording UNCONFIRMED: the check itself is documented (sdk-py `latest_repair_id`).
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            f"The latest repair ID {given} is not the latest repair of run {run.run_id}"
            + (f" (the latest is {latest})." if latest is not None else " (it has none)."),
        )


def _repair_selection(run: JobRun, body: Mapping[str, Any]) -> set[str]:
    rerun_tasks = str_list_field(body, "rerun_tasks")
    all_failed = body.get("rerun_all_failed_tasks") or False
    dependent = body.get("rerun_dependent_tasks") or False
    for name, flag in (
        ("rerun_all_failed_tasks", all_failed),
        ("rerun_dependent_tasks", dependent),
    ):
        if not isinstance(flag, bool):
            raise malformed(name, "boolean", flag)
    if rerun_tasks and all_failed:
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            "Only one of rerun_tasks or rerun_all_failed_tasks can be used.",
        )
    if not rerun_tasks and not all_failed:
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            "Either rerun_tasks or rerun_all_failed_tasks must be set.",
        )
    latest = run.latest_attempts()
    if rerun_tasks:
        if len(set(rerun_tasks)) != len(rerun_tasks):
            # Quoted from a live workspace (apache/airflow PR #69998 review).
            raise ApiError(
                400, INVALID_PARAMETER_VALUE, "rerun_tasks cannot contain duplicate task keys."
            )
        unknown = [k for k in rerun_tasks if k not in latest]
        if unknown:
            raise tasks_not_found(unknown, f"run {run.run_id}")
        chosen = set(rerun_tasks)
    else:
        chosen = {
            key
            for key, attempt in latest.items()
            if attempt.st.result_state in REPAIRABLE_RESULTS
            or attempt.st.life_cycle_state == INTERNAL_ERROR
        }
        if not chosen:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"Run {run.run_id} has no failed tasks to repair.",
            )
    if dependent:
        downstream: dict[str, set[str]] = {key: set() for key in latest}
        for key, attempt in latest.items():
            for dep in attempt.task.get("depends_on", []):
                downstream.setdefault(dep["task_key"], set()).add(key)
        stack = list(chosen)
        while stack:
            for child in downstream.get(stack.pop(), set()):
                if child not in chosen:
                    chosen.add(child)
                    stack.append(child)
    return chosen
