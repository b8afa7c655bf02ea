"""The emulated workspace: jobs and runs, and the event-driven run lifecycle on an injected clock.

Every state change is an event scheduled at an exact emulated time. Before any read or write the
workspace is advanced to `clock.now()`, processing due events in time order, so what a client
sees depends only on the clock, never on how often it polls.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from polysync.clock import Clock
from polysync.emulator.errors import (
    INVALID_PARAMETER_VALUE,
    INVALID_STATE,
    MALFORMED_REQUEST,
    QUOTA_EXCEEDED,
    REQUEST_LIMIT_EXCEEDED,
    ApiError,
    job_not_found,
    run_not_found,
)
from polysync.emulator.records import (
    BLOCKED,
    INTERNAL_ERROR,
    LEGACY_PARAM_FIELDS,
    PENDING,
    QUEUED,
    RUNNING,
    SKIPPED,
    TERMINATED,
    TERMINATING,
    WAITING_FOR_RETRY,
    WORKLOAD_FAILED,
    Job,
    JobRun,
    TaskAttempt,
    Termination,
)
from polysync.emulator.spec import TaskScript, WorkspaceSettings, WorkspaceSpec

MAX_JOBS = 10_000  # saved jobs per workspace (reference §8)
MAX_TASKS = 1_000  # tasks per job via write endpoints (reference §8)
MAX_IDEMPOTENCY_TOKEN = 64
PARAM_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")

FAILED_RESULTS = frozenset({"FAILED", "TIMEDOUT", "UPSTREAM_FAILED"})
CANCELED_RESULTS = frozenset({"CANCELED", "UPSTREAM_CANCELED"})
RUN_IF = frozenset(
    {
        "ALL_SUCCESS",
        "AT_LEAST_ONE_SUCCESS",
        "NONE_FAILED",
        "ALL_DONE",
        "AT_LEAST_ONE_FAILED",
        "ALL_FAILED",
    }
)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class Workspace:
    """All jobs and runs of one emulated workspace."""

    def __init__(self, clock: Clock, settings: WorkspaceSettings | None = None) -> None:
        self.clock = clock
        self.settings = settings or WorkspaceSettings()
        self._rng = random.Random(self.settings.seed)
        self.jobs: dict[int, Job] = {}
        self.runs: dict[int, JobRun] = {}
        self.task_runs: dict[int, TaskAttempt] = {}
        self.idempotency: dict[str, int] = {}
        self._queue: list[JobRun] = []  # QUEUED runs in arrival order
        self._active_count = 0  # admitted (not queued), not terminal
        self._job_active: Counter[int] = Counter()  # the same, per job
        self._events: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._now_ms = _ms(clock.now())
        self._next_job_id = 100_000_000_000_000 + self._rng.randrange(10**13)
        self._next_run_id = 700_000_000_000_000 + self._rng.randrange(10**13)
        self._jobs_sorted: list[Job] | None = None
        self._cluster_seq = itertools.count(1)

    # ------------------------------------------------------------------ time
    @property
    def now_ms(self) -> int:
        return self._now_ms

    def advance(self) -> None:
        """Process every event due by the clock's current time, in time order."""
        target = _ms(self.clock.now())
        while self._events and self._events[0][0] <= target:
            when, _, action = heapq.heappop(self._events)
            self._now_ms = max(self._now_ms, when)
            action()
        self._now_ms = max(self._now_ms, target)

    def _at(self, when_ms: int, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (max(when_ms, self._now_ms), next(self._seq), action))

    def next_event_ms(self) -> int | None:
        return self._events[0][0] if self._events else None

    # ------------------------------------------------------------------ ids
    def _new_job_id(self) -> int:
        self._next_job_id += self._rng.randrange(1, 10**6)
        while self._next_job_id in self.jobs:
            self._next_job_id += 1
        return self._next_job_id

    def _new_run_id(self) -> int:
        self._next_run_id += self._rng.randrange(1, 1000)
        return self._next_run_id

    # ------------------------------------------------------------------ jobs
    def load(self, spec: WorkspaceSpec) -> None:
        """Create the jobs of a workspace file, keeping their ids; the first is the oldest."""
        count = len(spec.jobs)
        for index, entry in enumerate(spec.jobs):
            created = self._now_ms - (count - index) * 60_000
            self.create_job(
                entry.settings(),
                job_id=entry.job_id,
                creator=entry.creator_user_name,
                created_time_ms=created,
            )

    def create_job(
        self,
        settings: Mapping[str, Any],
        *,
        job_id: int | None = None,
        creator: str | None = None,
        created_time_ms: int | None = None,
        default_queue: bool = False,
    ) -> Job:
        self.advance()
        if len(self.jobs) >= MAX_JOBS:
            raise ApiError(
                400,
                QUOTA_EXCEEDED,
                f"The quota for the number of jobs has been reached. The current quota is {MAX_JOBS}.",
            )
        clean, scripts = self._validate_settings(settings)
        if default_queue and "queue" not in clean:
            # Jobs created through 2.2 queue by default (reference §2, queue settings).
            clean["queue"] = {"enabled": True}
        if job_id is not None and job_id in self.jobs:
            raise ApiError(400, INVALID_PARAMETER_VALUE, f"Job {job_id} already exists.")
        job = Job(
            job_id=job_id if job_id is not None else self._new_job_id(),
            created_time_ms=created_time_ms if created_time_ms is not None else self._now_ms,
            creator_user_name=creator or self.settings.creator_user_name,
            settings=clean,
            scripts=scripts,
        )
        self.jobs[job.job_id] = job
        self._jobs_sorted = None
        return job

    def _validate_settings(
        self, settings: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, TaskScript]]:
        clean = copy.deepcopy(dict(settings))
        name = clean.get("name", "Untitled")
        if not isinstance(name, str):
            raise _malformed("name", "string", name)
        clean["name"] = name
        tasks = clean.get("tasks", [])
        if not isinstance(tasks, list):
            raise _malformed("tasks", "array", tasks)
        if len(tasks) > MAX_TASKS:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"A job can have at most {MAX_TASKS} tasks, got {len(tasks)}.",
            )
        scripts: dict[str, TaskScript] = {}
        keys: set[str] = set()
        for task in tasks:
            if not isinstance(task, dict):
                raise _malformed("tasks", "object", task)
            key = task.get("task_key")
            if not isinstance(key, str) or not key:
                raise ApiError(400, INVALID_PARAMETER_VALUE, "Missing required field: task_key")
            if key in keys:
                raise ApiError(
                    400, INVALID_PARAMETER_VALUE, f"Task key {key!r} is used by more than one task."
                )
            keys.add(key)
            script = task.pop("emulator", None)
            try:
                scripts[key] = TaskScript.model_validate(script or {})
            except ValueError as exc:
                raise ApiError(
                    400, INVALID_PARAMETER_VALUE, f"Invalid emulator script for task {key}: {exc}"
                ) from exc
            run_if = task.get("run_if", "ALL_SUCCESS")
            if run_if not in RUN_IF:
                raise ApiError(
                    400, INVALID_PARAMETER_VALUE, f"Invalid run_if {run_if!r} for task {key}."
                )
        for task in tasks:
            deps = task.get("depends_on") or []
            if not isinstance(deps, list):
                raise _malformed("depends_on", "array", deps)
            normal: list[dict[str, Any]] = []
            for dep in deps:
                dep_key = (
                    dep
                    if isinstance(dep, str)
                    else dep.get("task_key")
                    if isinstance(dep, dict)
                    else None
                )
                if dep_key not in keys:
                    raise ApiError(
                        400,
                        INVALID_PARAMETER_VALUE,
                        f"Task {task['task_key']} depends on {dep_key!r}, which is not a task of this job.",
                    )
                normal.append(dep if isinstance(dep, dict) else {"task_key": dep_key})
            if deps:
                task["depends_on"] = normal
        _check_acyclic(tasks)
        params = clean.get("parameters", [])
        if not isinstance(params, list):
            raise _malformed("parameters", "array", params)
        for param in params:
            if not isinstance(param, dict) or "name" not in param or "default" not in param:
                raise ApiError(
                    400,
                    INVALID_PARAMETER_VALUE,
                    "Job parameter definitions need both `name` and `default`.",
                )
            if not PARAM_NAME.match(str(param["name"])):
                raise ApiError(
                    400,
                    INVALID_PARAMETER_VALUE,
                    f"Invalid job parameter name {param['name']!r}: only alphanumerics, "
                    "'_', '-' and '.' are allowed.",
                )
            param["default"] = _as_param_string(param["default"])
        mcr = clean.get("max_concurrent_runs", 1)
        if not isinstance(mcr, int) or isinstance(mcr, bool) or not 0 <= mcr <= 1000:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"max_concurrent_runs must be between 0 and 1000, got {mcr!r}.",
            )
        clean.setdefault("max_concurrent_runs", 1)
        clean.setdefault("timeout_seconds", 0)
        clean.setdefault("email_notifications", {})
        return clean, scripts

    def get_job(self, job_id: int) -> Job:
        self.advance()
        job = self.jobs.get(job_id)
        if job is None:
            raise job_not_found(job_id)
        return job

    def delete_job(self, job_id: int) -> None:
        self.get_job(job_id)
        del self.jobs[job_id]
        self._jobs_sorted = None

    def reset_job(self, job_id: int, new_settings: Mapping[str, Any]) -> Job:
        job = self.get_job(job_id)
        job.settings, job.scripts = self._validate_settings(new_settings)
        return job

    def update_job(
        self, job_id: int, new_settings: Mapping[str, Any], fields_to_remove: Iterable[str]
    ) -> Job:
        job = self.get_job(job_id)
        merged = copy.deepcopy(job.settings)
        for task in merged.get("tasks", []):
            script = job.scripts.get(task.get("task_key"))
            if script is not None:
                task["emulator"] = script.model_dump(exclude_none=True)
        for name in fields_to_remove:
            merged.pop(name, None)
        if "tasks" in new_settings:
            by_key = {t["task_key"]: t for t in merged.get("tasks", [])}
            for task in new_settings["tasks"]:
                by_key[task.get("task_key")] = task
            merged["tasks"] = list(by_key.values())
        merged.update({k: v for k, v in new_settings.items() if k != "tasks"})
        job.settings, job.scripts = self._validate_settings(merged)
        return job

    def sorted_jobs(self) -> list[Job]:
        """Newest created first (reference §1, ordering)."""
        self.advance()
        if self._jobs_sorted is None:
            self._jobs_sorted = sorted(
                self.jobs.values(), key=lambda j: (j.created_time_ms, j.job_id), reverse=True
            )
        return self._jobs_sorted

    def script_task(self, job_id: int, task_key: str, script: TaskScript) -> None:
        job = self.get_job(job_id)
        if task_key not in {t.get("task_key") for t in job.tasks}:
            raise ApiError(400, INVALID_PARAMETER_VALUE, f"Job {job_id} has no task {task_key!r}.")
        job.scripts[task_key] = script

    # ------------------------------------------------------------------ run-now
    def run_now(self, body: Mapping[str, Any]) -> JobRun:
        self.advance()
        job_id = _int_field(body, "job_id", required=True)
        assert job_id is not None
        token = body.get("idempotency_token")
        if token is not None:
            if not isinstance(token, str):
                raise _malformed("idempotency_token", "string", token)
            if len(token) > MAX_IDEMPOTENCY_TOKEN:
                raise ApiError(
                    400,
                    INVALID_PARAMETER_VALUE,
                    f"Idempotency token must be at most {MAX_IDEMPOTENCY_TOKEN} characters long.",
                )
        job_params = body.get("job_parameters")
        if job_params is not None and not isinstance(job_params, dict):
            raise _malformed("job_parameters", "object", job_params)
        if token is not None and token in self.idempotency:
            return self.runs[self.idempotency[token]]
        job = self.jobs.get(job_id)
        if job is None:
            raise job_not_found(job_id)
        legacy = {f: body[f] for f in LEGACY_PARAM_FIELDS if body.get(f) is not None}
        if job_params and legacy:
            # The API refuses mixing job parameters with legacy task parameters (reference §3).
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                "Job parameters cannot be used together with task parameters "
                f"({', '.join(sorted(legacy))}). Pass only job_parameters.",
            )
        values = {str(k): _as_param_string(v) for k, v in (job_params or {}).items()}
        defined = {str(p["name"]): str(p["default"]) for p in job.parameters}
        if self.settings.reject_unknown_job_parameters:
            unknown = sorted(set(values) - set(defined))
            if unknown:
                raise ApiError(
                    400,
                    INVALID_PARAMETER_VALUE,
                    f"Job {job_id} does not define the job parameter(s) {', '.join(unknown)}. "
                    f"Defined job parameters: {', '.join(sorted(defined)) or 'none'}.",
                )
        tasks = self._select_tasks(job, body.get("only"))
        queue = body.get("queue")
        queue_enabled = (
            bool(queue.get("enabled")) if isinstance(queue, dict) else job.queue_enabled()
        )
        if self._active_count >= self.settings.max_active_runs and not queue_enabled:
            raise ApiError(
                429,
                REQUEST_LIMIT_EXCEEDED,
                f"The workspace has reached its limit of {self.settings.max_active_runs} "
                "concurrent active runs; this run cannot start now.",
                {"Retry-After": "10"},
            )
        params = [
            {"name": name, "default": default, "value": values.get(name, default)}
            for name, default in defined.items()
        ]
        params += [
            {"name": name, "default": "", "value": value}
            for name, value in values.items()
            if name not in defined
        ]
        run = JobRun(
            run_id=self._new_run_id(),
            job=job,
            settings=copy.deepcopy(job.settings),
            run_name=str(job.settings.get("name", "Untitled")),
            start_time_ms=self._now_ms,
            creator_user_name=self.settings.creator_user_name,
            job_parameters=params,
            overriding_parameters=legacy,
            queue_enabled=queue_enabled,
            idempotency_token=token,
        )
        for task in tasks:
            attempt = TaskAttempt(
                run_id=self._new_run_id(),
                parent=run,
                task=copy.deepcopy(task),
                script=job.scripts.get(task["task_key"], TaskScript()),
                attempt_number=0,
                original_attempt_run_id=0,
            )
            attempt.original_attempt_run_id = attempt.run_id
            run.attempts.append(attempt)
            self.task_runs[attempt.run_id] = attempt
        self.runs[run.run_id] = run
        if token is not None:
            self.idempotency[token] = run.run_id
        self._admit(run)
        return run

    def _select_tasks(self, job: Job, only: object) -> list[dict[str, Any]]:
        tasks = job.tasks
        if only is None:
            return tasks
        if not isinstance(only, list) or not all(isinstance(k, str) for k in only):
            raise _malformed("only", "array of strings", only)
        keys = {t["task_key"] for t in tasks}
        missing = [k for k in only if k not in keys]
        if missing:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"Task(s) {', '.join(missing)} not found in job {job.job_id}.",
            )
        chosen = [copy.deepcopy(t) for t in tasks if t["task_key"] in only]
        for task in chosen:
            deps = [d for d in task.get("depends_on", []) if d["task_key"] in only]
            task["depends_on"] = deps
        return chosen

    # ------------------------------------------------------------------ admission and queue
    def _admit(self, run: JobRun) -> None:
        limit = run.job.max_concurrent_runs()
        if self._job_active[run.job_id] >= limit:
            if run.queue_enabled:
                self._enqueue(
                    run,
                    "MAX_CONCURRENT_RUNS_REACHED",
                    f"Queued due to reaching maximum concurrent runs of {limit}.",
                )
            else:
                self._skip(run, limit)
            return
        if self._active_count >= self.settings.max_active_runs:
            self._enqueue(
                run,
                "ACTIVE_RUNS_LIMIT_REACHED",
                "Queued due to reaching the workspace limit of active runs.",
            )
            return
        self._start(run)

    def _enqueue(self, run: JobRun, code: str, message: str) -> None:
        run.st.life_cycle_state = QUEUED
        run.st.queue_code = code
        run.st.queue_message = message
        run.queued_since_ms = self._now_ms
        for attempt in run.attempts:
            attempt.st.life_cycle_state = BLOCKED
        self._queue.append(run)

    def _skip(self, run: JobRun, limit: int) -> None:
        message = f"Skipping this run because the limit of {limit} maximum concurrent runs has been reached."
        run.st.life_cycle_state = SKIPPED
        run.st.state_message = message
        run.st.termination = Termination("MAX_CONCURRENT_RUNS_EXCEEDED", "CLIENT_ERROR", message)
        run.end_time_ms = self._now_ms
        for attempt in run.attempts:
            attempt.st.life_cycle_state = SKIPPED
            attempt.st.termination = Termination("SKIPPED", "CLIENT_ERROR")

    def _drain_queue(self) -> None:
        waiting, self._queue = self._queue, []
        for run in waiting:
            if run.terminal:
                continue
            if self._active_count >= self.settings.max_active_runs:
                self._queue.append(run)
                continue
            if self._job_active[run.job_id] >= run.job.max_concurrent_runs():
                self._queue.append(run)
                continue
            assert run.queued_since_ms is not None
            run.queue_duration_ms += self._now_ms - run.queued_since_ms
            run.queued_since_ms = None
            run.st.queue_code = None
            run.st.queue_message = ""
            self._start(run)

    # ------------------------------------------------------------------ lifecycle
    def _start(self, run: JobRun) -> None:
        self._active_count += 1
        self._job_active[run.job_id] += 1
        run.st.life_cycle_state = PENDING
        run.st.state_message = ""
        timeout_s = run.settings.get("timeout_seconds") or 0
        if isinstance(timeout_s, int) and timeout_s > 0:
            self._at(self._now_ms + timeout_s * 1000, lambda: self._job_timeout(run))
        if not run.attempts:
            self._finish_run(run)
            return
        self._evaluate_blocked(run)

    def _evaluate_blocked(self, run: JobRun) -> None:
        latest = run.latest_attempts()
        for attempt in list(latest.values()):
            if attempt.st.life_cycle_state != BLOCKED or run.cancel_requested:
                continue
            deps = [latest[d["task_key"]] for d in attempt.task.get("depends_on", [])]
            if not all(d.terminal for d in deps):
                continue
            verdict = _run_if_verdict(attempt.task.get("run_if", "ALL_SUCCESS"), deps)
            if attempt.task.get("disabled"):
                verdict = "DISABLED"
            if verdict is None:
                self._start_attempt(attempt)
            else:
                self._skip_task(attempt, verdict)
        if all(a.terminal for a in run.latest_attempts().values()):
            self._finish_run(run)

    def _start_attempt(self, attempt: TaskAttempt) -> None:
        if attempt.terminal:  # a retry whose run was cancelled while it waited
            return
        script = attempt.script
        attempt.st.life_cycle_state = PENDING
        attempt.st.state_message = "Waiting for cluster"
        attempt.start_time_ms = self._now_ms
        attempt.cluster_id = (
            f"1125-{next(self._cluster_seq):06d}-emu{attempt.parent.run_id % 1000:03d}"
        )
        pending = (
            script.pending_s if script.pending_s is not None else self.settings.default_pending_s
        )
        self._at(self._now_ms + _ms(pending), lambda: self._attempt_running(attempt))

    def _attempt_running(self, attempt: TaskAttempt) -> None:
        if attempt.terminal or attempt.st.life_cycle_state != PENDING:
            return
        run = attempt.parent
        attempt.st.life_cycle_state = RUNNING
        attempt.st.state_message = "In run"
        attempt.running_since_ms = self._now_ms
        if run.st.life_cycle_state == PENDING:
            run.st.life_cycle_state = RUNNING
        script = attempt.script
        duration_s = (
            script.duration_s
            if script.duration_s is not None
            else self.settings.default_task_duration_s
        )
        outcome = script.outcome_for(attempt.attempt_number)
        task_timeout_s = attempt.task.get("timeout_seconds") or 0
        if isinstance(task_timeout_s, int) and 0 < task_timeout_s < duration_s:
            duration_s, outcome = float(task_timeout_s), "timeout"
        self._at(self._now_ms + _ms(duration_s), lambda: self._attempt_done(attempt, outcome))

    def _attempt_done(self, attempt: TaskAttempt, outcome: str) -> None:
        if attempt.terminal or attempt.st.life_cycle_state != RUNNING:
            return
        st = attempt.st
        script = attempt.script
        attempt.end_time_ms = self._now_ms
        if outcome == "success":
            st.life_cycle_state, st.result_state, st.state_message = TERMINATED, "SUCCESS", ""
            st.termination = Termination("SUCCESS", "SUCCESS")
            attempt.output_result = script.output
        elif outcome == "failure":
            st.life_cycle_state, st.result_state = TERMINATED, "FAILED"
            st.state_message = WORKLOAD_FAILED
            st.termination = Termination("RUN_EXECUTION_ERROR", "CLIENT_ERROR", WORKLOAD_FAILED)
            attempt.output_error = script.error or f"Exception: task {attempt.task_key} failed"
            attempt.output_error_trace = script.error_trace or (
                "Traceback (most recent call last):\n"
                f'  File "/Workspace/{attempt.task_key}", line 1, in <module>\n'
                f"{attempt.output_error}"
            )
        elif outcome == "timeout":
            timeout_s = (attempt.end_time_ms - attempt.running_since_ms) // 1000
            message = f"Task timed out after {timeout_s} seconds."
            st.life_cycle_state, st.result_state, st.state_message = TERMINATED, "TIMEDOUT", message
            st.user_cancelled_or_timedout = True
            st.termination = Termination("CANCELED", "CLIENT_ERROR", message)
            attempt.output_error = script.error or message
        else:  # internal_error
            message = (
                "Could not reach driver of cluster "
                f"{attempt.cluster_id}. The cluster may have been terminated."
            )
            st.life_cycle_state, st.result_state, st.state_message = (
                INTERNAL_ERROR,
                "FAILED",
                message,
            )
            st.termination = Termination("DRIVER_ERROR", "INTERNAL_ERROR", message)
            attempt.output_error = script.error or message
        if self._should_retry(attempt, outcome):
            self._schedule_retry(attempt)
        else:
            self._evaluate_blocked(attempt.parent)

    def _should_retry(self, attempt: TaskAttempt, outcome: str) -> bool:
        if outcome == "success" or attempt.parent.cancel_requested:
            return False
        if outcome == "timeout" and not attempt.task.get("retry_on_timeout"):
            return False
        max_retries = attempt.task.get("max_retries", 0)
        if not isinstance(max_retries, int):
            return False
        return max_retries == -1 or attempt.attempt_number < max_retries

    def _schedule_retry(self, previous: TaskAttempt) -> None:
        run = previous.parent
        previous.superseded = True
        retry = TaskAttempt(
            run_id=self._new_run_id(),
            parent=run,
            task=previous.task,
            script=previous.script,
            attempt_number=previous.attempt_number + 1,
            original_attempt_run_id=previous.original_attempt_run_id,
        )
        retry.st.life_cycle_state = WAITING_FOR_RETRY
        retry.st.state_message = "Waiting for retry"
        run.attempts.append(retry)
        self.task_runs[retry.run_id] = retry
        interval_ms = previous.task.get("min_retry_interval_millis") or 0
        self._at(self._now_ms + int(interval_ms), lambda: self._start_attempt(retry))

    def _skip_task(self, attempt: TaskAttempt, result: str) -> None:
        st = attempt.st
        st.life_cycle_state = SKIPPED
        st.result_state = result
        st.state_message = {
            "UPSTREAM_FAILED": "Upstream task failed.",
            "UPSTREAM_CANCELED": "Upstream task was cancelled.",
            "EXCLUDED": "Task was excluded because its run condition was not met.",
            "DISABLED": "Task is disabled.",
        }.get(result, "")
        kind = "CLIENT_ERROR" if result.startswith("UPSTREAM") else "SUCCESS"
        st.termination = Termination("SKIPPED", kind)

    def _finish_run(self, run: JobRun) -> None:
        if run.terminal or run.st.life_cycle_state == TERMINATING:
            return
        latest = list(run.latest_attempts().values())
        st = run.st
        failed = [a for a in latest if a.st.result_state in ("FAILED", "TIMEDOUT")]
        failed.sort(key=lambda a: (a.end_time_ms, a.run_id))
        canceled = run.cancel_requested or any(a.st.result_state == "CANCELED" for a in latest)
        final_life, termination_code, termination_type = TERMINATED, "SUCCESS", "SUCCESS"
        if run.timed_out:
            timeout_s = run.settings.get("timeout_seconds", 0)
            st.result_state = "TIMEDOUT"
            st.state_message = f"Run timed out after {timeout_s} seconds."
            st.user_cancelled_or_timedout = True
            termination_code, termination_type = "CANCELED", "CLIENT_ERROR"
        elif canceled:
            st.result_state = "CANCELED"
            st.state_message = "Run cancelled."
            st.user_cancelled_or_timedout = True
            termination_code, termination_type = "USER_CANCELED", "SUCCESS"
        elif failed:
            depended_on = {d["task_key"] for a in latest for d in a.task.get("depends_on", [])}
            leaves = [a for a in latest if a.task_key not in depended_on]
            if leaves and all(a.st.result_state == "SUCCESS" for a in leaves):
                st.result_state = "SUCCESS_WITH_FAILURES"
                st.state_message = ""
                termination_code = "SUCCESS_WITH_FAILURES"
            else:
                first = failed[0]
                message = f"Task {first.task_key} failed with message: {first.st.state_message.rstrip('.')}."
                if any(a.st.result_state == "UPSTREAM_FAILED" for a in latest):
                    message += " This caused all downstream tasks to get skipped."
                st.state_message = message
                termination_code, termination_type = "RUN_EXECUTION_ERROR", "CLIENT_ERROR"
                if first.st.result_state == "TIMEDOUT":
                    st.result_state = "TIMEDOUT"
                else:
                    # A failed multi-task run reports INTERNAL_ERROR in the deprecated
                    # life_cycle_state though its tasks are TERMINATED (reference §4).
                    st.result_state = "FAILED"
                    final_life = INTERNAL_ERROR
        else:
            st.result_state = "SUCCESS"
            st.state_message = ""
        pending_result = st.result_state
        st.result_state = None
        st.life_cycle_state = TERMINATING
        st.termination = Termination(termination_code, termination_type, st.state_message)
        delay_s = self.settings.cancel_s if canceled else self.settings.terminating_s

        def terminate() -> None:
            st.life_cycle_state = final_life
            st.result_state = pending_result
            run.end_time_ms = self._now_ms
            self._active_count -= 1
            self._job_active[run.job_id] -= 1
            self._drain_queue()

        self._at(self._now_ms + _ms(delay_s), terminate)

    def _job_timeout(self, run: JobRun) -> None:
        if run.terminal or run.st.life_cycle_state == TERMINATING:
            return
        run.timed_out = True
        run.cancel_requested = True
        self._stop_attempts(run, "TIMEDOUT")
        self._finish_run(run)

    # ------------------------------------------------------------------ cancel
    def cancel_run(self, run_id: int) -> None:
        self.advance()
        run = self.runs.get(run_id)
        if run is None:
            attempt = self.task_runs.get(run_id)
            if attempt is None:
                raise run_not_found(run_id)
            self._cancel_attempt(attempt)
            return
        if run.terminal or run.cancel_requested:
            return  # a no-op on terminal runs (reference §5)
        run.cancel_requested = True
        if run.st.life_cycle_state == QUEUED:
            assert run.queued_since_ms is not None
            run.queue_duration_ms += self._now_ms - run.queued_since_ms
            self._queue.remove(run)
            run.st.queue_code = None
            run.st.life_cycle_state, run.st.result_state = TERMINATED, "CANCELED"
            run.st.state_message = "Run cancelled."
            run.st.user_cancelled_or_timedout = True
            run.st.termination = Termination("USER_CANCELED", "SUCCESS", "Run cancelled.")
            run.end_time_ms = self._now_ms
            for attempt in run.attempts:
                self._skip_task(attempt, "UPSTREAM_CANCELED")
            return
        if run.st.life_cycle_state == TERMINATING:
            return
        self._stop_attempts(run, "CANCELED")
        self._finish_run(run)

    def _stop_attempts(self, run: JobRun, result: str) -> None:
        for attempt in run.latest_attempts().values():
            if attempt.terminal:
                continue
            if attempt.st.life_cycle_state in (BLOCKED, WAITING_FOR_RETRY):
                self._skip_task(attempt, "UPSTREAM_CANCELED")
                continue
            self._end_attempt_stopped(attempt, result)

    def _end_attempt_stopped(self, attempt: TaskAttempt, result: str) -> None:
        st = attempt.st
        st.life_cycle_state = TERMINATED
        st.result_state = result
        st.user_cancelled_or_timedout = True
        message = "Run cancelled." if result == "CANCELED" else "Run timed out."
        st.state_message = message
        st.termination = Termination(
            "USER_CANCELED" if result == "CANCELED" else "CANCELED",
            "SUCCESS" if result == "CANCELED" else "CLIENT_ERROR",
            message,
        )
        attempt.end_time_ms = self._now_ms

    def _cancel_attempt(self, attempt: TaskAttempt) -> None:
        if attempt.terminal:
            return
        if attempt.st.life_cycle_state in (BLOCKED, WAITING_FOR_RETRY):
            self._skip_task(attempt, "UPSTREAM_CANCELED")
        else:
            self._end_attempt_stopped(attempt, "CANCELED")
        self._evaluate_blocked(attempt.parent)

    def cancel_all(self, job_id: int | None, all_queued_runs: bool) -> None:
        self.advance()
        if job_id is None and not all_queued_runs:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                "Either job_id or all_queued_runs must be set.",
            )
        if job_id is not None and job_id not in self.jobs:
            raise job_not_found(job_id)
        for run in list(self.runs.values()):
            if run.terminal:
                continue
            if (job_id is not None and run.job_id == job_id) or (
                job_id is None and run.st.life_cycle_state == QUEUED
            ):
                self.cancel_run(run.run_id)

    # ------------------------------------------------------------------ reads
    def get_run(self, run_id: int) -> JobRun | TaskAttempt:
        self.advance()
        run = self.runs.get(run_id)
        if run is not None:
            return run
        attempt = self.task_runs.get(run_id)
        if attempt is None:
            raise run_not_found(run_id)
        return attempt

    def output(self, run_id: int) -> TaskAttempt:
        found = self.get_run(run_id)
        if isinstance(found, JobRun):
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                "Retrieving the output of runs with multiple tasks is not supported. "
                "Please retrieve the output of each individual task run instead.",
            )
        return found

    def delete_run(self, run_id: int, *, active_too: bool = False) -> None:
        """runs/delete: a job run that is not active (reference §5). `active_too` (control
        plane only): forget it whatever its state, as when its history expires or an admin
        purges it; an active run then finishes unseen, and runs/get answers "does not exist"."""
        found = self.get_run(run_id)
        if isinstance(found, TaskAttempt):
            raise ApiError(
                400, INVALID_PARAMETER_VALUE, f"Run {run_id} is a task run; delete its job run."
            )
        if found.active and not active_too:
            raise ApiError(400, INVALID_STATE, f"Run {run_id} is active and cannot be deleted.")
        del self.runs[run_id]
        for attempt in found.attempts:
            self.task_runs.pop(attempt.run_id, None)

    @property
    def active_runs(self) -> int:
        return sum(1 for r in self.runs.values() if r.active)


def _run_if_verdict(run_if: str, deps: list[TaskAttempt]) -> str | None:
    """None if the task runs; otherwise the result_state it is skipped with."""
    if not deps:
        return None
    results = [d.st.result_state or "" for d in deps]
    succeeded = [r in ("SUCCESS", "SUCCESS_WITH_FAILURES", "DISABLED") for r in results]
    failed = [r in FAILED_RESULTS or r == "FAILED" for r in results]
    canceled = [r in CANCELED_RESULTS for r in results]
    excluded = [r == "EXCLUDED" for r in results]
    if run_if == "ALL_DONE":
        return None
    if run_if == "ALL_SUCCESS":
        if any(canceled):
            return "UPSTREAM_CANCELED"
        if any(failed):
            return "UPSTREAM_FAILED"
        return "EXCLUDED" if any(excluded) else None
    if run_if == "NONE_FAILED":
        if any(failed):
            return "UPSTREAM_FAILED"
        return "UPSTREAM_CANCELED" if any(canceled) else None
    if run_if == "AT_LEAST_ONE_SUCCESS":
        if any(succeeded):
            return None
        return "UPSTREAM_FAILED" if any(failed) else "EXCLUDED"
    if run_if == "AT_LEAST_ONE_FAILED":
        return None if any(failed) else "EXCLUDED"
    if run_if == "ALL_FAILED":
        return None if all(failed) else "EXCLUDED"
    return None


def _check_acyclic(tasks: list[dict[str, Any]]) -> None:
    deps = {
        t["task_key"]: [
            d["task_key"] if isinstance(d, dict) else d for d in t.get("depends_on") or []
        ]
        for t in tasks
    }
    state: dict[str, int] = {}

    def visit(key: str, path: list[str]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            cycle = " -> ".join([*path[path.index(key) :], key])
            raise ApiError(
                400, INVALID_PARAMETER_VALUE, f"Task dependencies form a cycle: {cycle}."
            )
        state[key] = 1
        for dep in deps.get(key, []):
            visit(dep, [*path, key])
        state[key] = 2

    for key in deps:
        visit(key, [])


def _as_param_string(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ApiError(
        400,
        MALFORMED_REQUEST,
        f"Could not parse request object: Expected a string parameter value, found {type(value).__name__.upper()}",
    )


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int | float):
        return "NUMBER"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, list):
        return "ARRAY"
    if isinstance(value, dict):
        return "OBJECT"
    return "NULL"


def _malformed(field: str, expected: str, value: object) -> ApiError:
    # Shape of the real message (reference §3, "Bad JSON types").
    return ApiError(
        400,
        MALFORMED_REQUEST,
        f"Could not parse request object: Expected {expected} for field '{field}', found {_json_kind(value)}",
    )


def _int_field(body: Mapping[str, Any], name: str, *, required: bool = False) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, INVALID_PARAMETER_VALUE, f"Missing required field: {name}")
        return None
    if isinstance(value, bool):
        raise _malformed(name, "integer", value)
    if isinstance(value, int):
        return value
    # Protobuf JSON accepts int64 as a decimal string too.
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,19}", value):
        return int(value)
    raise _malformed(name, "integer", value)
