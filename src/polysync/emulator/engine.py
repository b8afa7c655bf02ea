"""The emulated workspace: jobs and runs, and the event-driven run lifecycle on an injected clock.

Every state change is an event scheduled at an exact emulated time. Before any read or write the
workspace is advanced to `clock.now()`, processing due events in time order, so what a client
sees depends only on the clock, never on how often it polls.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from polysync.clock import Clock
from polysync.emulator.admission import Admission
from polysync.emulator.controlflow import (
    ReferenceContext,
    evaluate_condition,
    parse_foreach_inputs,
    resolve_in,
    resolve_references,
)
from polysync.emulator.errors import (
    INVALID_PARAMETER_VALUE,
    INVALID_STATE,
    QUOTA_EXCEEDED,
    ApiError,
    job_not_found,
    run_not_found,
)
from polysync.emulator.eventloop import EventLoop, seconds_to_ms
from polysync.emulator.fields import (
    as_param_string,
    idempotency_token,
    int_field,
    legacy_params,
    malformed,
)
from polysync.emulator.ids import Ids
from polysync.emulator.job_settings import (
    ITERATION_SCRIPT,
    job_parameter_values,
    updated_settings,
    validate_settings,
)
from polysync.emulator.outcomes import (
    dependency_result,
    end_attempt,
    end_attempt_stopped,
    run_if_verdict,
    run_outcome,
    skip_task,
)
from polysync.emulator.pipelines import Pipelines
from polysync.emulator.records import (
    BLOCKED,
    INTERNAL_ERROR,
    PENDING,
    QUEUED,
    RUNNING,
    TERMINATED,
    TERMINATING,
    WAITING_FOR_RETRY,
    Job,
    JobRun,
    Repair,
    TaskAttempt,
    Termination,
)
from polysync.emulator.spec import TaskScript, WorkspaceSettings, WorkspaceSpec
from polysync.emulator.workspace_tree import WorkspaceTree

MAX_JOBS = 10_000  # saved jobs per workspace (reference §8)

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
CONTROL_FLOW_TASKS = ("condition_task", "run_job_task", "for_each_task")


class Workspace:
    """All jobs and runs of one emulated workspace."""

    def __init__(self, clock: Clock, settings: WorkspaceSettings | None = None) -> None:
        self.clock = clock
        self.settings = settings or WorkspaceSettings()
        self._loop = EventLoop(clock)
        self._ids = Ids(self.settings.seed)
        self.jobs: dict[int, Job] = {}
        self.runs: dict[int, JobRun] = {}
        self.task_runs: dict[int, TaskAttempt] = {}
        self.idempotency: dict[str, int] = {}
        self._admission = Admission(self.settings)
        self._jobs_sorted: list[Job] | None = None
        self._cluster_seq = itertools.count(1)
        self.objects = WorkspaceTree(lambda: self._loop.now_ms, seed=self.settings.seed)
        self.pipelines = Pipelines(
            self._loop,
            seed=self.settings.seed,
            creator=self.settings.creator_user_name,
            org_id=self.settings.workspace_id,
        )

    # ------------------------------------------------------------------ time
    @property
    def now_ms(self) -> int:
        """Emulated now in ms (see `EventLoop.now_ms`)."""
        return self._loop.now_ms

    def advance(self) -> None:
        """Process every event due by the clock's current time, in time order."""
        self._loop.advance()

    def next_event_ms(self) -> int | None:
        """When the earliest pending event is due, in ms; None when nothing is pending."""
        return self._loop.next_event_ms()

    # ------------------------------------------------------------------ jobs
    def load(self, spec: WorkspaceSpec) -> None:
        """Create the jobs of a workspace file, keeping their ids; the first is the oldest."""
        for notebook in spec.notebooks:
            self.objects.put_notebook(
                notebook.path, notebook.language, notebook.source, script=notebook.emulator
            )
        for file in spec.files:
            self.objects.put_file(file.path, file.content.encode("utf-8"))
        for pipeline in spec.pipelines:
            self.pipelines.create(
                pipeline.spec(), pipeline_id=pipeline.pipeline_id, script=pipeline.emulator
            )
        count = len(spec.jobs)
        for index, entry in enumerate(spec.jobs):
            created = self._loop.now_ms - (count - index) * 60_000
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
        clean, scripts = validate_settings(settings)
        if default_queue and "queue" not in clean:
            # Jobs created through 2.2 queue by default (reference §2, queue settings).
            clean["queue"] = {"enabled": True}
        if job_id is not None and job_id in self.jobs:
            raise ApiError(400, INVALID_PARAMETER_VALUE, f"Job {job_id} already exists.")
        job = Job(
            job_id=job_id if job_id is not None else self._ids.job_id(self.jobs),
            created_time_ms=created_time_ms if created_time_ms is not None else self._loop.now_ms,
            creator_user_name=creator or self.settings.creator_user_name,
            settings=clean,
            scripts=scripts,
        )
        self.jobs[job.job_id] = job
        self._jobs_sorted = None
        return job

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
        job.settings, job.scripts = validate_settings(new_settings)
        return job

    def update_job(
        self, job_id: int, new_settings: Mapping[str, Any], fields_to_remove: Iterable[str]
    ) -> Job:
        job = self.get_job(job_id)
        job.settings, job.scripts = validate_settings(
            updated_settings(job, new_settings, fields_to_remove)
        )
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
        """`jobs/run-now` (reference §3): validate, dedupe on `idempotency_token`, create, admit."""
        self.advance()
        job_id = int_field(body, "job_id", required=True)
        assert job_id is not None
        token = idempotency_token(body)
        job_params = body.get("job_parameters")
        if job_params is not None and not isinstance(job_params, dict):
            raise malformed("job_parameters", "object", job_params)
        if token is not None and token in self.idempotency:
            return self.runs[self.idempotency[token]]
        job = self.jobs.get(job_id)
        if job is None:
            raise job_not_found(job_id)
        legacy = legacy_params(body, job_params)
        params = job_parameter_values(
            job, job_params or {}, reject_unknown=self.settings.reject_unknown_job_parameters
        )
        tasks = self._select_tasks(job, body.get("only"))
        queue = body.get("queue")
        queue_enabled = (
            bool(queue.get("enabled")) if isinstance(queue, dict) else job.queue_enabled()
        )
        self._admission.check_capacity(queue_enabled)
        run = self._new_run(
            job,
            copy.deepcopy(job.settings),
            tasks,
            run_name=str(job.settings.get("name", "Untitled")),
            job_parameters=params,
            legacy=legacy,
            queue_enabled=queue_enabled,
            token=token,
        )
        self._admit(run)
        return run

    def submit(self, body: Mapping[str, Any]) -> JobRun:
        """`jobs/runs/submit`: a one-time run of the given tasks, with no saved job.

        Body (sdk-py `JobsAPI.submit`): `tasks` (required; each with a task type and compute:
        `existing_cluster_id` | `new_cluster` | `environment_key` (serverless, from `environments`)
        | none, which is serverless for notebooks), `run_name` (default "Untitled", as Databricks'
        own fake server), `idempotency_token` (same dedupe as run-now), `timeout_seconds`, `queue`.
        The run has `run_type` SUBMIT_RUN and no `job_id`. Raises ApiError 400
        `INVALID_PARAMETER_VALUE` / `MALFORMED_REQUEST` for bad bodies.
        """
        self.advance()
        token = idempotency_token(body)
        if token is not None and token in self.idempotency:
            return self.runs[self.idempotency[token]]
        run_name = body.get("run_name")
        if run_name is not None and not isinstance(run_name, str):
            raise malformed("run_name", "string", run_name)
        tasks = body.get("tasks")
        if tasks is None:
            raise ApiError(400, INVALID_PARAMETER_VALUE, "Missing required field: tasks")
        settings: dict[str, Any] = {
            "name": run_name or "Untitled",
            "tasks": tasks,
            "max_concurrent_runs": 1000,
        }
        for key in ("timeout_seconds", "environments", "git_source", "queue", "job_clusters"):
            if body.get(key) is not None:
                settings[key] = body[key]
        clean, scripts = validate_settings(settings)
        _check_submit_compute(clean)
        job = Job(
            job_id=0,
            created_time_ms=self._loop.now_ms,
            creator_user_name=self.settings.creator_user_name,
            settings=clean,
            scripts=scripts,
        )
        queue = body.get("queue")
        queue_enabled = bool(queue.get("enabled")) if isinstance(queue, dict) else False
        self._admission.check_capacity(queue_enabled)
        run = self._new_run(
            job,
            clean,
            job.tasks,
            run_name=run_name or "Untitled",
            job_parameters=[],
            legacy={},
            queue_enabled=queue_enabled,
            token=token,
            run_type="SUBMIT_RUN",
        )
        self._admit(run)
        return run

    def _new_run(
        self,
        job: Job,
        settings: dict[str, Any],
        tasks: list[dict[str, Any]],
        *,
        run_name: str,
        job_parameters: list[dict[str, str]],
        legacy: dict[str, Any],
        queue_enabled: bool,
        token: str | None,
        run_type: str = "JOB_RUN",
        parent_attempt: TaskAttempt | None = None,
    ) -> JobRun:
        run = JobRun(
            run_id=self._ids.run_id(),
            job=job,
            settings=settings,
            run_name=run_name,
            start_time_ms=self._loop.now_ms,
            creator_user_name=self.settings.creator_user_name,
            job_parameters=job_parameters,
            overriding_parameters=legacy,
            queue_enabled=queue_enabled,
            idempotency_token=token,
            run_type=run_type,
            trigger="RUN_JOB_TASK" if parent_attempt is not None else "ONE_TIME",
            parent_attempt=parent_attempt,
        )
        for task in tasks:
            self._new_attempt(run, copy.deepcopy(task), attempt_number=0)
        self.runs[run.run_id] = run
        if token is not None:
            self.idempotency[token] = run.run_id
        return run

    def _new_attempt(
        self,
        run: JobRun,
        task: dict[str, Any],
        *,
        attempt_number: int,
        original_attempt_run_id: int | None = None,
    ) -> TaskAttempt:
        attempt = TaskAttempt(
            run_id=self._ids.run_id(),
            parent=run,
            task=task,
            script=self._script_for(run.job, task, task["task_key"]),
            attempt_number=attempt_number,
            original_attempt_run_id=0,
        )
        attempt.original_attempt_run_id = original_attempt_run_id or attempt.run_id
        run.attempts.append(attempt)
        self.task_runs[attempt.run_id] = attempt
        return attempt

    def _script_for(self, job: Job, task: Mapping[str, Any], script_key: str) -> TaskScript:
        """A task's script: its own `emulator:` block, else its notebook's script, else success."""
        script = job.scripts.get(script_key)
        if script is not None:
            return script
        notebook = task.get("notebook_task")
        if isinstance(notebook, dict) and isinstance(notebook.get("notebook_path"), str):
            by_path = self.objects.script_for(notebook["notebook_path"])
            if by_path is not None:
                return by_path
        return TaskScript()

    def _select_tasks(self, job: Job, only: object) -> list[dict[str, Any]]:
        tasks = job.tasks
        if only is None:
            return tasks
        if not isinstance(only, list) or not all(isinstance(k, str) for k in only):
            raise malformed("only", "array of strings", only)
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

    # ------------------------------------------------------------------ lifecycle
    def _admit(self, run: JobRun) -> None:
        if self._admission.admit(run, self._loop.now_ms):
            self._start(run)
        elif run.terminal:  # skipped: the job is at max_concurrent_runs and the run does not queue
            self._run_ended(run)

    def _start(self, run: JobRun) -> None:
        run.st.life_cycle_state = PENDING
        run.st.state_message = ""
        timeout_s = run.settings.get("timeout_seconds") or 0
        if isinstance(timeout_s, int) and timeout_s > 0:
            self._loop.schedule_at(
                self._loop.now_ms + timeout_s * 1000, lambda: self._job_timeout(run)
            )
        if not run.attempts:
            self._finish_run(run)
            return
        self._evaluate_blocked(run)

    def _evaluate_blocked(self, run: JobRun) -> None:
        """Start or skip every BLOCKED task whose dependencies have ended, until nothing changes
        (a skip can unblock the tasks after it); then end the run if every task has."""
        changed = True
        while changed and not run.cancel_requested:
            changed = False
            latest = run.latest_attempts()
            for attempt in list(latest.values()):
                if attempt.st.life_cycle_state != BLOCKED:
                    continue
                deps = attempt.task.get("depends_on", [])
                dep_attempts = [latest[d["task_key"]] for d in deps]
                if not all(d.terminal for d in dep_attempts):
                    continue
                verdict = run_if_verdict(
                    attempt.task.get("run_if", "ALL_SUCCESS"),
                    [dependency_result(d, a) for d, a in zip(deps, dep_attempts, strict=True)],
                )
                if attempt.task.get("disabled"):
                    verdict = "DISABLED"
                if verdict is None:
                    self._start_attempt(attempt)
                else:
                    skip_task(attempt, verdict)
                changed = True
        if all(a.terminal for a in run.latest_attempts().values()):
            self._finish_run(run)

    def _start_attempt(self, attempt: TaskAttempt) -> None:
        if attempt.terminal:  # a retry whose run was cancelled while it waited
            return
        script = attempt.script
        attempt.st.life_cycle_state = PENDING
        attempt.start_time_ms = self._loop.now_ms
        if _is_control_flow(attempt.task):
            # Control-flow tasks run in the Jobs service itself: no cluster to wait for.
            attempt.st.state_message = ""
            self._loop.schedule_at(self._loop.now_ms, lambda: self._attempt_running(attempt))
            return
        attempt.st.state_message = "Waiting for cluster"
        existing = attempt.task.get("existing_cluster_id")
        attempt.cluster_id = (
            existing
            if isinstance(existing, str) and existing
            else f"1125-{next(self._cluster_seq):06d}-emu{attempt.parent.run_id % 1000:03d}"
        )
        pending = (
            script.pending_s if script.pending_s is not None else self.settings.default_pending_s
        )
        self._loop.schedule_at(
            self._loop.now_ms + seconds_to_ms(pending), lambda: self._attempt_running(attempt)
        )

    def _attempt_running(self, attempt: TaskAttempt) -> None:
        if attempt.terminal or attempt.st.life_cycle_state != PENDING:
            return
        run = attempt.parent
        attempt.st.life_cycle_state = RUNNING
        attempt.st.state_message = "In run"
        attempt.running_since_ms = self._loop.now_ms
        if run.st.life_cycle_state == PENDING:
            run.st.life_cycle_state = RUNNING
        task = attempt.task
        if "condition_task" in task:
            self._run_condition(attempt)
            return
        if "run_job_task" in task:
            self._run_child_job(attempt)
            return
        if "for_each_task" in task:
            self._run_for_each(attempt)
            return
        script = attempt.script
        duration_s = (
            script.duration_s
            if script.duration_s is not None
            else self.settings.default_task_duration_s
        )
        outcome = script.outcome_for(attempt.attempt_number, attempt.iteration_input)
        task_timeout_s = task.get("timeout_seconds") or 0
        if isinstance(task_timeout_s, int) and 0 < task_timeout_s < duration_s:
            duration_s, outcome = float(task_timeout_s), "timeout"
        self._loop.schedule_at(
            self._loop.now_ms + seconds_to_ms(duration_s),
            lambda: self._attempt_done(attempt, outcome),
        )

    # ------------------------------------------------------------------ control-flow tasks
    def _references(self, attempt: TaskAttempt) -> ReferenceContext:
        run = attempt.parent
        latest = run.latest_attempts()
        return ReferenceContext(
            job_id=None if run.is_submit_run else run.job_id,
            run_id=run.run_id,
            job_name=run.run_name,
            repair_count=len(run.repairs),
            job_parameters={p["name"]: p["value"] for p in run.job_parameters},
            task_run_ids={key: a.run_id for key, a in latest.items()},
            task_results={
                key: a.st.result_state.lower() for key, a in latest.items() if a.st.result_state
            },
            item=attempt.iteration_input,
        )

    def _run_condition(self, attempt: TaskAttempt) -> None:
        """Evaluate `condition_task` now; `condition_task.outcome` is "true"/"false" (sdk-py
        `RunConditionTask`); a reference or comparison that cannot be evaluated fails the task."""
        condition = attempt.task["condition_task"]
        try:
            context = self._references(attempt)
            left = resolve_references(str(condition["left"]), context)
            right = resolve_references(str(condition["right"]), context)
            outcome = evaluate_condition(str(condition["op"]), left, right)
        except ValueError as exc:
            self._attempt_done(attempt, "failure", error=str(exc))
            return
        attempt.extra["condition_task"] = {"outcome": "true" if outcome else "false"}
        self._attempt_done(attempt, "success")

    def _run_child_job(self, attempt: TaskAttempt) -> None:
        """`run_job_task`: start a run of the other job (trigger RUN_JOB_TASK); the task ends as
        that run ends. Its `job_parameters` may hold references (sdk-py `RunJobTask`)."""
        spec = attempt.task["run_job_task"]
        job_id = int_field(spec, "job_id", required=True)
        assert job_id is not None
        job = self.jobs.get(job_id)
        if job is None:
            self._attempt_done(attempt, "failure", error=f"Job {job_id} does not exist.")
            return
        try:
            raw = spec.get("job_parameters") or {}
            if not isinstance(raw, dict):
                raise ValueError("run_job_task.job_parameters must be an object.")
            values = resolve_in(raw, self._references(attempt))
            assert isinstance(values, dict)
            params = job_parameter_values(
                job, values, reject_unknown=self.settings.reject_unknown_job_parameters
            )
        except (ValueError, ApiError) as exc:
            message = exc.message if isinstance(exc, ApiError) else str(exc)
            self._attempt_done(attempt, "failure", error=message)
            return
        child = self._new_run(
            job,
            copy.deepcopy(job.settings),
            job.tasks,
            run_name=str(job.settings.get("name", "Untitled")),
            job_parameters=params,
            legacy={},
            queue_enabled=job.queue_enabled(),
            token=None,
            parent_attempt=attempt,
        )
        attempt.child_run_id = child.run_id
        self._admit(child)

    def _child_done(self, attempt: TaskAttempt, child: JobRun) -> None:
        if attempt.terminal or attempt.st.life_cycle_state != RUNNING:
            return
        result = child.st.result_state
        if result in ("SUCCESS", "SUCCESS_WITH_FAILURES"):
            self._attempt_done(attempt, "success")
        elif result == "CANCELED":
            end_attempt_stopped(attempt, "CANCELED", self._loop.now_ms)
            self._after_attempt(attempt)
        else:
            reason = child.st.state_message or f"ended {result or child.st.life_cycle_state}"
            self._attempt_done(
                attempt, "failure", error=f"Run {child.run_id} of job {child.job_id}: {reason}"
            )

    def _run_for_each(self, attempt: TaskAttempt) -> None:
        """`for_each_task`: one iteration of the nested task per input, at most `concurrency` at
        once; `for_each_task.stats.task_run_stats` counts them (sdk-py `ForEachTaskTaskRunStats`)."""
        spec = attempt.task["for_each_task"]
        try:
            inputs = parse_foreach_inputs(
                resolve_references(str(spec["inputs"]), self._references(attempt))
            )
        except ValueError as exc:
            self._attempt_done(attempt, "failure", error=str(exc))
            return
        nested = spec["task"]
        script = self._script_for(
            attempt.parent.job, nested, f"{attempt.task_key}{ITERATION_SCRIPT}"
        )
        for index, item in enumerate(inputs):
            iteration = TaskAttempt(
                run_id=self._ids.run_id(),
                parent=attempt.parent,
                task=copy.deepcopy(nested),
                script=script,
                attempt_number=0,
                original_attempt_run_id=0,
                foreach_parent=attempt,
                iteration_input=item,
                iteration_index=index,
            )
            iteration.original_attempt_run_id = iteration.run_id
            attempt.iterations.append(iteration)
            self.task_runs[iteration.run_id] = iteration
        self._foreach_progress(attempt)

    def _foreach_progress(self, parent: TaskAttempt) -> None:
        if parent.terminal:
            return
        latest = _latest_iterations(parent)
        concurrency = int(parent.task["for_each_task"].get("concurrency", 1))
        active = sum(1 for it in latest if not it.terminal and it.st.life_cycle_state != BLOCKED)
        for iteration in latest:
            if active >= concurrency or parent.terminal:
                break
            if iteration.st.life_cycle_state == BLOCKED:
                self._start_iteration(iteration, parent)
                active += 1
        if parent.terminal:
            return
        latest = _latest_iterations(parent)
        parent.extra["for_each_task"] = {"stats": _foreach_stats(latest)}
        if all(it.terminal for it in latest):
            if all(it.st.result_state == "SUCCESS" for it in latest):
                self._attempt_done(parent, "success")
            else:
                failed = sum(1 for it in latest if it.st.result_state != "SUCCESS")
                self._attempt_done(
                    parent,
                    "failure",
                    error=f"{failed} of {len(latest)} iterations of task {parent.task_key} failed.",
                )

    def _start_iteration(self, iteration: TaskAttempt, parent: TaskAttempt) -> None:
        try:
            iteration.task = _as_dict(resolve_in(iteration.task, self._references(iteration)))
        except ValueError as exc:
            iteration.start_time_ms = iteration.running_since_ms = self._loop.now_ms
            iteration.st.life_cycle_state = RUNNING
            self._attempt_done(iteration, "failure", error=str(exc))
            return
        self._start_attempt(iteration)

    def _after_attempt(self, attempt: TaskAttempt) -> None:
        """What follows the end of a task attempt: its for-each parent moves on, or its run."""
        if attempt.foreach_parent is not None:
            self._foreach_progress(attempt.foreach_parent)
        else:
            self._evaluate_blocked(attempt.parent)

    def _attempt_done(self, attempt: TaskAttempt, outcome: str, error: str | None = None) -> None:
        if attempt.terminal or attempt.st.life_cycle_state != RUNNING:
            return
        end_attempt(attempt, outcome, error, self._loop.now_ms)
        if self._should_retry(attempt, outcome):
            self._schedule_retry(attempt)
        else:
            self._after_attempt(attempt)

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
            run_id=self._ids.run_id(),
            parent=run,
            task=previous.task,
            script=previous.script,
            attempt_number=previous.attempt_number + 1,
            original_attempt_run_id=previous.original_attempt_run_id,
            foreach_parent=previous.foreach_parent,
            iteration_input=previous.iteration_input,
            iteration_index=previous.iteration_index,
        )
        retry.st.life_cycle_state = WAITING_FOR_RETRY
        retry.st.state_message = "Waiting for retry"
        if previous.foreach_parent is not None:
            previous.foreach_parent.iterations.append(retry)
        else:
            run.attempts.append(retry)
        self.task_runs[retry.run_id] = retry
        interval_ms = previous.task.get("min_retry_interval_millis") or 0
        self._loop.schedule_at(
            self._loop.now_ms + int(interval_ms), lambda: self._start_attempt(retry)
        )

    def _finish_run(self, run: JobRun) -> None:
        if run.terminal or run.st.life_cycle_state == TERMINATING:
            return
        outcome = run_outcome(run)
        st = run.st
        st.state_message = outcome.state_message
        if outcome.user_cancelled_or_timedout:
            st.user_cancelled_or_timedout = True
        st.result_state = None
        st.life_cycle_state = TERMINATING
        st.termination = outcome.termination
        delay_s = self.settings.cancel_s if outcome.canceled else self.settings.terminating_s

        def terminate() -> None:
            st.life_cycle_state = outcome.life_cycle_state
            st.result_state = outcome.result_state
            run.end_time_ms = self._loop.now_ms
            if run.repairs:
                run.repairs[-1].end_time_ms = self._loop.now_ms
            for admitted in self._admission.release(run, self._loop.now_ms):
                self._start(admitted)
            self._run_ended(run)

        self._loop.schedule_at(self._loop.now_ms + seconds_to_ms(delay_s), terminate)

    def _job_timeout(self, run: JobRun) -> None:
        if run.terminal or run.st.life_cycle_state == TERMINATING:
            return
        run.timed_out = True
        run.cancel_requested = True
        self._stop_attempts(run, "TIMEDOUT")
        self._finish_run(run)

    # ------------------------------------------------------------------ cancel
    def _run_ended(self, run: JobRun) -> None:
        """A run reached a terminal state: the run_job_task that started it follows it."""
        if run.parent_attempt is not None:
            self._child_done(run.parent_attempt, run)

    def cancel_run(self, run_id: int) -> None:
        """`jobs/runs/cancel` of a job run or a task run (reference §5): asynchronous, a no-op on
        terminal runs. Raises ApiError 400 for an unknown run id."""
        self.advance()
        run = self.runs.get(run_id)
        if run is None:
            attempt = self.task_runs.get(run_id)
            if attempt is None:
                raise run_not_found(run_id)
            self._cancel_attempt(attempt)
            return
        self._cancel(run)

    def _cancel(self, run: JobRun) -> None:
        if run.terminal or run.cancel_requested:
            return  # a no-op on terminal runs (reference §5)
        run.cancel_requested = True
        if run.st.life_cycle_state == QUEUED:
            self._admission.withdraw(run, self._loop.now_ms)
            run.st.life_cycle_state, run.st.result_state = TERMINATED, "CANCELED"
            run.st.state_message = "Run cancelled."
            run.st.user_cancelled_or_timedout = True
            run.st.termination = Termination("USER_CANCELED", "SUCCESS", "Run cancelled.")
            run.end_time_ms = self._loop.now_ms
            for attempt in run.attempts:
                skip_task(attempt, "UPSTREAM_CANCELED")
            self._run_ended(run)
            return
        if run.st.life_cycle_state == TERMINATING:
            return
        self._stop_attempts(run, "CANCELED")
        self._finish_run(run)

    def _stop_attempts(self, run: JobRun, result: str) -> None:
        for attempt in run.latest_attempts().values():
            self._stop_attempt(attempt, result)

    def _stop_attempt(self, attempt: TaskAttempt, result: str) -> None:
        if attempt.terminal:
            return
        if attempt.st.life_cycle_state in (BLOCKED, WAITING_FOR_RETRY):
            skip_task(attempt, "UPSTREAM_CANCELED")
            return
        for iteration in _latest_iterations(attempt):
            self._stop_attempt(iteration, result)
        if attempt.child_run_id is not None:
            child = self.runs.get(attempt.child_run_id)
            if child is not None:
                self._cancel(child)
        end_attempt_stopped(attempt, result, self._loop.now_ms)

    def _cancel_attempt(self, attempt: TaskAttempt) -> None:
        if attempt.terminal:
            return
        self._stop_attempt(attempt, "CANCELED")
        self._after_attempt(attempt)

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
            if (job_id is not None and run.job_id == job_id and not run.is_submit_run) or (
                job_id is None and run.st.life_cycle_state == QUEUED
            ):
                self._cancel(run)

    # ------------------------------------------------------------------ repair
    def repair_run(self, body: Mapping[str, Any]) -> int:
        """`jobs/runs/repair`: rerun chosen tasks of an ended run, inside that run; returns the
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
        self.advance()
        run_id = int_field(body, "run_id", required=True)
        assert run_id is not None
        run = self.runs.get(run_id)
        if run is None:
            if run_id in self.task_runs:
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
        self._check_latest_repair_id(run, int_field(body, "latest_repair_id"))
        chosen = self._repair_selection(run, body)
        job_params = body.get("job_parameters")
        if job_params is not None and not isinstance(job_params, dict):
            raise malformed("job_parameters", "object", job_params)
        legacy = legacy_params(body, job_params)
        if job_params:
            overrides = {p["name"]: p["value"] for p in run.job_parameters}
            overrides.update({str(k): as_param_string(v) for k, v in job_params.items()})
            run.job_parameters = job_parameter_values(
                run.job, overrides, reject_unknown=self.settings.reject_unknown_job_parameters
            )
        if legacy:
            run.overriding_parameters = legacy
        if not run.repairs:
            run.original_attempt_ids = [a.run_id for a in run.attempts]
            run.original_end_time_ms = run.end_time_ms
            run.original_state, run.original_status = run.st.state_json(), run.st.status_json()
        else:
            last = run.repairs[-1]
            last.state, last.status = run.st.state_json(), run.st.status_json()
        repair = Repair(
            repair_id=self._ids.run_id(), start_time_ms=self._loop.now_ms, task_run_ids=[]
        )
        current = {t["task_key"]: t for t in run.job.tasks} if run.job.job_id in self.jobs else {}
        for key, previous in run.latest_attempts().items():
            if key not in chosen:
                continue
            previous.superseded = True
            task = copy.deepcopy(current.get(key, previous.task))
            if "depends_on" not in previous.task:
                task.pop("depends_on", None)  # a run started with `only` keeps its trimmed DAG
            attempt = self._new_attempt(
                run,
                task,
                attempt_number=previous.attempt_number + 1,
                original_attempt_run_id=previous.original_attempt_run_id,
            )
            repair.task_run_ids.append(attempt.run_id)
        run.repairs.append(repair)
        st = run.st
        st.life_cycle_state, st.result_state, st.state_message = PENDING, None, ""
        st.user_cancelled_or_timedout, st.termination = False, None
        run.end_time_ms = 0
        run.cancel_requested = run.timed_out = False
        self._admission.count(run)
        self._evaluate_blocked(run)
        return repair.repair_id

    @staticmethod
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

    @staticmethod
    def _repair_selection(run: JobRun, body: Mapping[str, Any]) -> set[str]:
        rerun_tasks = body.get("rerun_tasks")
        all_failed = body.get("rerun_all_failed_tasks") or False
        dependent = body.get("rerun_dependent_tasks") or False
        if rerun_tasks is not None and (
            not isinstance(rerun_tasks, list) or not all(isinstance(k, str) for k in rerun_tasks)
        ):
            raise malformed("rerun_tasks", "array of strings", rerun_tasks)
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
                raise ApiError(
                    400,
                    INVALID_PARAMETER_VALUE,
                    f"Task(s) {', '.join(unknown)} not found in run {run.run_id}.",
                )
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

    def delete_run(self, run_id: int) -> None:
        found = self.get_run(run_id)
        if isinstance(found, TaskAttempt):
            raise ApiError(
                400, INVALID_PARAMETER_VALUE, f"Run {run_id} is a task run; delete its job run."
            )
        if found.active:
            raise ApiError(400, INVALID_STATE, f"Run {run_id} is active and cannot be deleted.")
        del self.runs[run_id]
        for attempt in found.attempts:
            self.task_runs.pop(attempt.run_id, None)

    @property
    def active_runs(self) -> int:
        return sum(1 for r in self.runs.values() if r.active)


_CLUSTER_FIELDS = ("existing_cluster_id", "new_cluster", "job_cluster_key", "environment_key")


def _check_submit_compute(settings: Mapping[str, Any]) -> None:
    """Compute of one-time run tasks (sdk-py `SubmitTask`): at most one of `existing_cluster_id`,
    `new_cluster`, `job_cluster_key`, `environment_key`; a `new_cluster` needs `spark_version` and a
    node type or instance pool; an `environment_key` must name one of `environments`."""
    environments = {
        e.get("environment_key") for e in settings.get("environments") or [] if isinstance(e, dict)
    }
    for task in settings.get("tasks", []):
        key = task["task_key"]
        chosen = [f for f in _CLUSTER_FIELDS if task.get(f) not in (None, "")]
        if len(chosen) > 1:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"Task {key} sets more than one kind of compute ({', '.join(chosen)}); set only one.",
            )
        cluster = task.get("new_cluster")
        if cluster is not None:
            if not isinstance(cluster, dict):
                raise malformed("new_cluster", "object", cluster)
            if not cluster.get("spark_version"):
                raise ApiError(
                    400,
                    INVALID_PARAMETER_VALUE,
                    "Missing required field: new_cluster.spark_version",
                )
            if not (cluster.get("node_type_id") or cluster.get("instance_pool_id")):
                raise ApiError(
                    400,
                    INVALID_PARAMETER_VALUE,
                    f"Task {key}: new_cluster needs node_type_id or instance_pool_id.",
                )
        env_key = task.get("environment_key")
        if env_key is not None and env_key not in environments:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"Task {key} references environment_key {env_key!r}, which is not defined in "
                "environments.",
            )


def _is_control_flow(task: Mapping[str, Any]) -> bool:
    return any(kind in task for kind in CONTROL_FLOW_TASKS)


def _latest_iterations(parent: TaskAttempt) -> list[TaskAttempt]:
    """The latest attempt of each iteration of a for_each_task, in input order."""
    latest: dict[int, TaskAttempt] = {}
    for iteration in parent.iterations:
        latest[iteration.iteration_index] = iteration
    return [latest[index] for index in sorted(latest)]


def _foreach_stats(latest: list[TaskAttempt]) -> dict[str, Any]:
    """`for_each_task.stats` (sdk-py `ForEachStats`; "only latest retries are considered")."""
    succeeded = sum(1 for it in latest if it.terminal and it.st.result_state == "SUCCESS")
    failed = sum(1 for it in latest if it.terminal and it.st.result_state != "SUCCESS")
    waiting = sum(1 for it in latest if it.st.life_cycle_state == BLOCKED)
    stats: dict[str, Any] = {
        "task_run_stats": {
            "total_iterations": len(latest),
            "scheduled_iterations": len(latest) - waiting,
            "active_iterations": len(latest) - waiting - succeeded - failed,
            "completed_iterations": succeeded + failed,
            "succeeded_iterations": succeeded,
            "failed_iterations": failed,
        }
    }
    errors = Counter(it.output_error for it in latest if it.output_error and it.terminal)
    if errors:
        stats["error_message_stats"] = [
            {
                "error_message": message,
                "count": count,
                "termination_category": "RUN_EXECUTION_ERROR",
            }
            for message, count in errors.most_common(3)
        ]
    return stats


def _as_dict(value: object) -> dict[str, Any]:
    assert isinstance(value, dict)
    return value
