"""The emulator's records of jobs, runs and task attempts, and how the Jobs API renders them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from polysync.emulator.spec import TaskScript

# RunLifeCycleState values (reference §4).
QUEUED = "QUEUED"
PENDING = "PENDING"
RUNNING = "RUNNING"
TERMINATING = "TERMINATING"
TERMINATED = "TERMINATED"
SKIPPED = "SKIPPED"
INTERNAL_ERROR = "INTERNAL_ERROR"
BLOCKED = "BLOCKED"
WAITING_FOR_RETRY = "WAITING_FOR_RETRY"

TERMINAL_LIFE_CYCLE = frozenset({TERMINATED, SKIPPED, INTERNAL_ERROR})
# `runs/list?active_only=true` covers these (reference §6).
ACTIVE_LIFE_CYCLE = frozenset({QUEUED, PENDING, RUNNING, TERMINATING, BLOCKED, WAITING_FOR_RETRY})

# RunLifecycleStateV2State for each V1 life-cycle state (reference §4: SKIPPED and INTERNAL_ERROR
# show as TERMINATED with a termination code).
V2_STATE = {
    QUEUED: "QUEUED",
    PENDING: "PENDING",
    RUNNING: "RUNNING",
    TERMINATING: "TERMINATING",
    TERMINATED: "TERMINATED",
    SKIPPED: "TERMINATED",
    INTERNAL_ERROR: "TERMINATED",
    BLOCKED: "BLOCKED",
    WAITING_FOR_RETRY: "WAITING",
}

WORKLOAD_FAILED = "Workload failed, see run output for details"

LEGACY_PARAM_FIELDS = (
    "notebook_params",
    "python_params",
    "jar_params",
    "spark_submit_params",
    "python_named_params",
    "sql_params",
    "dbt_commands",
    "pipeline_params",
)


@dataclass(slots=True)
class Termination:
    code: str
    type: str
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "type": self.type}
        if self.message:
            body["message"] = self.message
        return body


@dataclass(slots=True)
class RunStateFields:
    """The mutable state shared by job runs and task runs."""

    life_cycle_state: str = PENDING
    result_state: str | None = None
    state_message: str = ""
    user_cancelled_or_timedout: bool = False
    termination: Termination | None = None
    queue_code: str | None = None
    queue_message: str = ""

    def state_json(self) -> dict[str, Any]:
        state: dict[str, Any] = {"life_cycle_state": self.life_cycle_state}
        if self.result_state is not None:
            state["result_state"] = self.result_state
        state["state_message"] = self.state_message
        state["user_cancelled_or_timedout"] = self.user_cancelled_or_timedout
        if self.queue_code is not None and self.life_cycle_state == QUEUED:
            state["queue_reason"] = self.queue_message
        return state

    def status_json(self) -> dict[str, Any]:
        status: dict[str, Any] = {"state": V2_STATE.get(self.life_cycle_state, "TERMINATED")}
        if self.life_cycle_state == QUEUED and self.queue_code:
            status["queue_details"] = {"code": self.queue_code, "message": self.queue_message}
        if self.termination is not None and status["state"] in ("TERMINATING", "TERMINATED"):
            status["termination_details"] = self.termination.as_json()
        return status


@dataclass(slots=True)
class Job:
    job_id: int
    created_time_ms: int
    creator_user_name: str
    settings: dict[str, Any]
    scripts: dict[str, TaskScript] = field(default_factory=dict)

    @property
    def tasks(self) -> list[dict[str, Any]]:
        tasks = self.settings.get("tasks") or []
        return tasks if isinstance(tasks, list) else []

    @property
    def parameters(self) -> list[dict[str, Any]]:
        params = self.settings.get("parameters") or []
        return params if isinstance(params, list) else []

    def max_concurrent_runs(self) -> int:
        value = self.settings.get("max_concurrent_runs", 1)
        return value if isinstance(value, int) else 1

    def queue_enabled(self) -> bool:
        queue = self.settings.get("queue")
        return bool(isinstance(queue, dict) and queue.get("enabled"))


@dataclass(slots=True)
class TaskAttempt:
    """One attempt of one task of a job run; each has its own run_id (reference §4)."""

    run_id: int
    parent: JobRun
    task: dict[str, Any]
    script: TaskScript
    attempt_number: int
    original_attempt_run_id: int
    st: RunStateFields = field(default_factory=lambda: RunStateFields(life_cycle_state=BLOCKED))
    start_time_ms: int = 0
    running_since_ms: int = 0
    end_time_ms: int = 0
    queued_since_ms: int = 0
    cluster_id: str | None = None
    output_error: str | None = None
    output_error_trace: str | None = None
    output_result: str | None = None
    superseded: bool = False  # a later attempt of the same task exists
    # Read-only fields the API adds to the task-type field (condition_task.outcome,
    # for_each_task.stats), merged over the task's own definition when rendered.
    extra: dict[str, Any] = field(default_factory=dict)
    child_run_id: int | None = None  # run_job_task: the run it started (run_job_output.run_id)
    iterations: list[TaskAttempt] = field(default_factory=list)  # for_each_task
    foreach_parent: TaskAttempt | None = None  # set on an iteration of a for_each_task
    iteration_input: str | None = None  # the input of that iteration, as a JSON value text
    iteration_index: int = 0

    @property
    def task_key(self) -> str:
        return str(self.task.get("task_key", ""))

    @property
    def terminal(self) -> bool:
        return self.st.life_cycle_state in TERMINAL_LIFE_CYCLE

    def latest_iterations(self) -> list[TaskAttempt]:
        """The latest attempt of each iteration of this for_each_task, in input order."""
        latest: dict[int, TaskAttempt] = {}
        for iteration in self.iterations:
            latest[iteration.iteration_index] = iteration
        return [latest[index] for index in sorted(latest)]


@dataclass(slots=True)
class JobRun:
    run_id: int
    job: Job
    settings: dict[str, Any]  # the job's settings when the run was created
    run_name: str
    start_time_ms: int
    creator_user_name: str
    job_parameters: list[dict[str, str]]
    overriding_parameters: dict[str, Any]
    queue_enabled: bool
    idempotency_token: str | None = None
    st: RunStateFields = field(default_factory=RunStateFields)
    attempts: list[TaskAttempt] = field(default_factory=list)
    end_time_ms: int = 0
    queued_since_ms: int | None = None
    queue_duration_ms: int = 0
    cancel_requested: bool = False
    timed_out: bool = False
    run_type: str = "JOB_RUN"  # JOB_RUN (run-now) | SUBMIT_RUN (runs/submit) (reference §4)
    trigger: str = "ONE_TIME"  # RUN_JOB_TASK for a run started by a run_job_task
    parent_attempt: TaskAttempt | None = None  # the run_job_task that started this run
    repairs: list[Repair] = field(default_factory=list)
    original_attempt_ids: list[int] = field(default_factory=list)  # task runs before any repair
    original_end_time_ms: int = 0
    original_state: dict[str, Any] = field(default_factory=dict)
    original_status: dict[str, Any] = field(default_factory=dict)

    @property
    def job_id(self) -> int:
        return self.job.job_id

    @property
    def is_submit_run(self) -> bool:
        return self.run_type == "SUBMIT_RUN"

    @property
    def terminal(self) -> bool:
        return self.st.life_cycle_state in TERMINAL_LIFE_CYCLE

    @property
    def active(self) -> bool:
        return not self.terminal

    def latest_attempts(self) -> dict[str, TaskAttempt]:
        latest: dict[str, TaskAttempt] = {}
        for attempt in self.attempts:
            latest[attempt.task_key] = attempt
        return latest


@dataclass(slots=True)
class Repair:
    """One `jobs/runs/repair` of a run: its id, times, the task runs it started, its outcome."""

    repair_id: int
    start_time_ms: int
    task_run_ids: list[int]
    end_time_ms: int = 0
    state: dict[str, Any] = field(default_factory=dict)  # frozen once a later repair starts
    status: dict[str, Any] = field(default_factory=dict)


def run_page_url(host: str, workspace_id: int, job_id: int | None, run_id: int) -> str:
    """Legacy hash form that real runs/get returns on Azure (reference §10); a one-time run has no
    job in it (`#job/run/<id>`, the form Databricks' own fake server uses, cli `libs/testserver/jobs.go`)."""
    job = f"{job_id}/" if job_id is not None else ""
    return f"{host.rstrip('/')}/?o={workspace_id}#job/{job}run/{run_id}"


def _run_job_id(run: JobRun) -> int | None:
    return None if run.is_submit_run else run.job_id


def task_json(attempt: TaskAttempt, host: str, workspace_id: int) -> dict[str, Any]:
    task = attempt.task
    end_ms = attempt.end_time_ms
    started = attempt.start_time_ms > 0
    setup_ms = (attempt.running_since_ms or end_ms) - attempt.start_time_ms if started else 0
    exec_ms = end_ms - attempt.running_since_ms if end_ms and attempt.running_since_ms else 0
    body: dict[str, Any] = {
        "run_id": attempt.run_id,
        "task_key": attempt.task_key,
        "attempt_number": attempt.attempt_number,
        "original_attempt_run_id": attempt.original_attempt_run_id,
        "job_run_id": attempt.parent.run_id,
        "state": attempt.st.state_json(),
        "status": attempt.st.status_json(),
        "run_page_url": run_page_url(
            host, workspace_id, _run_job_id(attempt.parent), attempt.run_id
        ),
        "start_time": attempt.start_time_ms,
        "end_time": end_ms,
        "setup_duration": max(0, setup_ms) if end_ms else 0,
        "execution_duration": max(0, exec_ms),
        "cleanup_duration": 0,
        "run_duration": end_ms - attempt.start_time_ms if end_ms and started else 0,
        "queue_duration": 0,
        "run_if": task.get("run_if", "ALL_SUCCESS"),
    }
    for key, value in task.items():
        if key not in body and key not in ("emulator",):
            body[key] = value
    for key, value in attempt.extra.items():
        body[key] = {**body.get(key, {}), **value}
    if attempt.cluster_id:
        body["cluster_instance"] = {
            "cluster_id": attempt.cluster_id,
            "spark_context_id": str(attempt.run_id * 7 % 10**19),
        }
    return body


def job_run_json(
    run: JobRun, host: str, workspace_id: int, *, include_tasks: bool = True
) -> dict[str, Any]:
    end_ms = run.end_time_ms
    body: dict[str, Any] = {
        "job_id": run.job_id,
        "run_id": run.run_id,
        "number_in_job": run.run_id,
        "original_attempt_run_id": run.run_id,
        "creator_user_name": run.creator_user_name,
        "run_name": run.run_name,
        "run_type": run.run_type,
        "trigger": run.trigger,
        "attempt_number": 0,
        "format": "MULTI_TASK",
        "start_time": run.start_time_ms,
        "end_time": end_ms,
        # Always 0 for multi-task job runs; run_duration carries the time (reference §4).
        "setup_duration": 0,
        "execution_duration": 0,
        "cleanup_duration": 0,
        "run_duration": end_ms - run.start_time_ms if end_ms else 0,
        "queue_duration": run.queue_duration_ms,
        "run_page_url": run_page_url(host, workspace_id, _run_job_id(run), run.run_id),
        "state": run.st.state_json(),
        "status": run.st.status_json(),
    }
    if run.is_submit_run:
        # One-time runs belong to no job (runs/submit, as the brief and the CLI's fake show).
        del body["job_id"], body["number_in_job"]
    if run.parent_attempt is not None:
        body["trigger_info"] = {"run_id": run.parent_attempt.run_id}
    if run.job_parameters:
        body["job_parameters"] = [dict(p) for p in run.job_parameters]
    if run.overriding_parameters:
        body["overriding_parameters"] = dict(run.overriding_parameters)
    if include_tasks:
        body["tasks"] = [task_json(a, host, workspace_id) for a in run.attempts]
        clusters = run.settings.get("job_clusters")
        if clusters:
            body["job_clusters"] = clusters
    return body


def job_json(job: Job, *, include_tasks: bool, version: str) -> dict[str, Any]:
    settings = {key: value for key, value in job.settings.items() if key != "tasks"}
    if include_tasks:
        settings["tasks"] = [_public_task(t) for t in job.tasks]
    else:
        settings.pop("job_clusters", None)
    if version == "2.0":
        # 2.0 carries `format` to tell multi-task jobs apart (reference §1).
        settings["format"] = "MULTI_TASK" if len(job.tasks) > 1 else "SINGLE_TASK"
    else:
        settings["format"] = "MULTI_TASK"
    return {
        "job_id": job.job_id,
        "creator_user_name": job.creator_user_name,
        "run_as_user_name": job.creator_user_name,
        "created_time": job.created_time_ms,
        "settings": settings,
    }


def _public_task(task: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in task.items() if key != "emulator"}


def repair_history_json(run: JobRun) -> list[dict[str, Any]]:
    """`repair_history` of runs/get (`include_history=true`): the ORIGINAL run, then each REPAIR
    with its `id`, times, state and the task runs it started (sdk-py `RepairHistoryItem`); the
    list always starts with the original run (astronomer-cosmos PR #163, checked against the API)."""
    if not run.repairs:
        original_state, original_status = run.st.state_json(), run.st.status_json()
        original_end = run.end_time_ms
        original_ids = [a.run_id for a in run.attempts]
    else:
        original_state, original_status = run.original_state, run.original_status
        original_end = run.original_end_time_ms
        original_ids = run.original_attempt_ids
    entries: list[dict[str, Any]] = [
        {
            "type": "ORIGINAL",
            "start_time": run.start_time_ms,
            "end_time": original_end,
            "state": original_state,
            "status": original_status,
            "task_run_ids": original_ids,
        }
    ]
    for index, repair in enumerate(run.repairs):
        latest = index == len(run.repairs) - 1
        entries.append(
            {
                "type": "REPAIR",
                "id": repair.repair_id,
                "start_time": repair.start_time_ms,
                "end_time": repair.end_time_ms,
                "state": run.st.state_json() if latest else repair.state,
                "status": run.st.status_json() if latest else repair.status,
                "task_run_ids": list(repair.task_run_ids),
            }
        )
    return entries
