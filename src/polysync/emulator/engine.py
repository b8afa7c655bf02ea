"""The emulated workspace: one façade over its jobs, runs, notebooks and pipelines.

Every call first advances the workspace to the injected clock's now (`eventloop`), so what a
client sees depends only on the clock, never on how often it polls. The work is done by:
`job_settings` (validation), `admission` (limits and queue), `lifecycle` (the run lifecycle),
`controlflow_runs` (condition, run_job and for_each tasks), `submit` (one-time runs) and
`repair` (reruns); `records` holds what they share.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from polysync.clock import Clock
from polysync.emulator.admission import Admission
from polysync.emulator.controlflow_runs import ControlFlowRuns
from polysync.emulator.errors import (
    INVALID_PARAMETER_VALUE,
    INVALID_STATE,
    QUOTA_EXCEEDED,
    ApiError,
    job_not_found,
    run_not_found,
    tasks_not_found,
)
from polysync.emulator.eventloop import EventLoop
from polysync.emulator.fields import (
    idempotency_token,
    int_field,
    legacy_params,
    malformed,
    str_list_field,
)
from polysync.emulator.ids import Ids
from polysync.emulator.job_settings import (
    job_parameter_values,
    updated_settings,
    validate_settings,
)
from polysync.emulator.lifecycle import RunLifecycle
from polysync.emulator.pipelines import Pipelines
from polysync.emulator.records import (
    QUEUED,
    Job,
    JobRun,
    TaskAttempt,
)
from polysync.emulator.repair import repair
from polysync.emulator.spec import TaskScript, WorkspaceSettings, WorkspaceSpec
from polysync.emulator.submit import one_time_job
from polysync.emulator.workspace_tree import WorkspaceTree

MAX_JOBS = 10_000  # saved jobs per workspace (reference §8)


class Workspace:
    """All jobs and runs of one emulated workspace."""

    def __init__(self, clock: Clock, settings: WorkspaceSettings | None = None) -> None:
        self.clock = clock
        self.settings = settings or WorkspaceSettings()
        self._loop = EventLoop(clock)
        self._ids = Ids(self.settings.seed)
        self.jobs: dict[int, Job] = {}
        self._admission = Admission(self.settings)
        self._jobs_sorted: list[Job] | None = None
        self.objects = WorkspaceTree(lambda: self._loop.now_ms, seed=self.settings.seed)
        self._lifecycle = RunLifecycle(
            self._loop,
            self._ids,
            self.settings,
            self._admission,
            self.objects,
            control_flow=lambda runs: ControlFlowRuns(runs, self.jobs, self.settings),
        )
        self.pipelines = Pipelines(
            self._loop,
            seed=self.settings.seed,
            creator=self.settings.creator_user_name,
            org_id=self.settings.workspace_id,
        )

    @property
    def runs(self) -> dict[int, JobRun]:
        """Every job run by run id (one-time runs and runs started by run_job_tasks too)."""
        return self._lifecycle.runs

    @property
    def task_runs(self) -> dict[int, TaskAttempt]:
        """Every task run (attempts, iterations) by its own run id."""
        return self._lifecycle.task_runs

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

    # ------------------------------------------------------------------ runs
    def run_now(self, body: Mapping[str, Any]) -> JobRun:
        """`jobs/run-now` (reference §3): validate, dedupe on `idempotency_token`, create, admit."""
        self.advance()
        job_id = int_field(body, "job_id", required=True)
        assert job_id is not None
        token = idempotency_token(body)
        job_params = body.get("job_parameters")
        if job_params is not None and not isinstance(job_params, dict):
            raise malformed("job_parameters", "object", job_params)
        earlier = self._lifecycle.run_for_token(token)
        if earlier is not None:
            return earlier
        job = self.jobs.get(job_id)
        if job is None:
            raise job_not_found(job_id)
        legacy = legacy_params(body, job_params)
        params = job_parameter_values(
            job, job_params or {}, reject_unknown=self.settings.reject_unknown_job_parameters
        )
        tasks = _select_tasks(job, str_list_field(body, "only"))
        queue = body.get("queue")
        queue_enabled = (
            bool(queue.get("enabled")) if isinstance(queue, dict) else job.queue_enabled()
        )
        self._admission.check_capacity(queue_enabled)
        run = self._lifecycle.new_run(
            job,
            copy.deepcopy(job.settings),
            tasks,
            run_name=str(job.settings.get("name", "Untitled")),
            job_parameters=params,
            legacy=legacy,
            queue_enabled=queue_enabled,
            token=token,
        )
        self._lifecycle.admit(run)
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
        earlier = self._lifecycle.run_for_token(token)
        if earlier is not None:
            return earlier
        job = one_time_job(body, now_ms=self._loop.now_ms, creator=self.settings.creator_user_name)
        queue = body.get("queue")
        queue_enabled = bool(queue.get("enabled")) if isinstance(queue, dict) else False
        self._admission.check_capacity(queue_enabled)
        run = self._lifecycle.new_run(
            job,
            job.settings,
            job.tasks,
            run_name=str(job.settings.get("name", "Untitled")),
            job_parameters=[],
            legacy={},
            queue_enabled=queue_enabled,
            token=token,
            run_type="SUBMIT_RUN",
        )
        self._lifecycle.admit(run)
        return run

    def cancel_run(self, run_id: int) -> None:
        """`jobs/runs/cancel` of a job run or a task run (reference §5): asynchronous, a no-op on
        terminal runs. Raises ApiError 400 for an unknown run id."""
        self.advance()
        run = self.runs.get(run_id)
        if run is None:
            attempt = self.task_runs.get(run_id)
            if attempt is None:
                raise run_not_found(run_id)
            self._lifecycle.cancel_task_run(attempt)
            return
        self._lifecycle.cancel(run)

    def cancel_all(self, job_id: int | None, all_queued_runs: bool) -> None:
        """`jobs/runs/cancel-all`: every active run of a job, or every queued run (reference §5)."""
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
                self._lifecycle.cancel(run)

    # ------------------------------------------------------------------ repair
    def repair_run(self, body: Mapping[str, Any]) -> int:
        """`jobs/runs/repair`: rerun chosen tasks of an ended run; returns the `repair_id`
        (see `repair.repair` for the body and the errors)."""
        self.advance()
        return repair(
            self._lifecycle,
            self.jobs,
            body,
            reject_unknown=self.settings.reject_unknown_job_parameters,
        )

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
        """How many job runs have not ended."""
        return sum(1 for r in self.runs.values() if r.active)


def _select_tasks(job: Job, only: list[str] | None) -> list[dict[str, Any]]:
    """The tasks a run-now with `only` runs, with their `depends_on` trimmed to those tasks."""
    tasks = job.tasks
    if only is None:
        return tasks
    keys = {t["task_key"] for t in tasks}
    missing = [k for k in only if k not in keys]
    if missing:
        raise tasks_not_found(missing, f"job {job.job_id}")
    chosen = [copy.deepcopy(t) for t in tasks if t["task_key"] in only]
    for task in chosen:
        deps = [d for d in task.get("depends_on", []) if d["task_key"] in only]
        task["depends_on"] = deps
    return chosen
