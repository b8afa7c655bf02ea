"""The run lifecycle on emulated time: task DAG, attempts, retries, timeouts, cancel, run end.

Every change happens in an event of the workspace's `EventLoop`. What the records read after each
outcome is decided in `outcomes`; control-flow tasks plug in as `ControlFlowTasks`.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from polysync.emulator.admission import Admission
from polysync.emulator.controlflow import is_control_flow
from polysync.emulator.errors import INVALID_PARAMETER_VALUE, ApiError
from polysync.emulator.eventloop import EventLoop, seconds_to_ms
from polysync.emulator.ids import Ids
from polysync.emulator.outcomes import (
    dependency_result,
    end_attempt,
    end_attempt_stopped,
    run_if_verdict,
    run_outcome,
    skip_task,
)
from polysync.emulator.records import (
    BLOCKED,
    PENDING,
    QUEUED,
    RUNNING,
    TERMINATED,
    TERMINATING,
    WAITING_FOR_RETRY,
    Job,
    JobRun,
    TaskAttempt,
    Termination,
)
from polysync.emulator.spec import TaskScript, WorkspaceSettings
from polysync.emulator.workspace_tree import WorkspaceTree


class ControlFlowTasks(Protocol):
    """How control-flow tasks run once RUNNING (`controlflow_runs.ControlFlowRuns`)."""

    def run(self, attempt: TaskAttempt) -> None:
        """Run a condition_task, run_job_task or for_each_task attempt that has become RUNNING."""

    def for_each_progress(self, parent: TaskAttempt) -> None:
        """An iteration of the for_each_task attempt `parent` ended: start the next ones, or end it."""

    def child_run_ended(self, attempt: TaskAttempt, child: JobRun) -> None:
        """The run that the run_job_task `attempt` started has ended: the task follows it."""


class RunLifecycle:
    """The job runs and task runs of a workspace, and every change of their state.

    Each change happens in an event on the workspace's `EventLoop`, at an exact emulated time.
    """

    def __init__(
        self,
        loop: EventLoop,
        ids: Ids,
        settings: WorkspaceSettings,
        admission: Admission,
        objects: WorkspaceTree,
        control_flow: Callable[[RunLifecycle], ControlFlowTasks],
    ) -> None:
        self._loop = loop
        self._ids = ids
        self._settings = settings
        self._admission = admission
        self._objects = objects
        self.runs: dict[int, JobRun] = {}
        self.task_runs: dict[int, TaskAttempt] = {}
        self._idempotency: dict[str, int] = {}
        self._cluster_seq = itertools.count(1)
        self._control_flow = control_flow(self)

    @property
    def now_ms(self) -> int:
        """Emulated now in ms."""
        return self._loop.now_ms

    def new_run_id(self) -> int:
        """A fresh id from the run-id sequence (task runs and repairs share it)."""
        return self._ids.run_id()

    def run_for_token(self, token: str | None) -> JobRun | None:
        """The run an earlier run-now or submit with this `idempotency_token` created, if any.

        Tokens stay reserved after their run is deleted: reusing one is refused with 400
        INVALID_PARAMETER_VALUE (reference §3 "If the run with that token was deleted, an error is
        returned"; the wording of the message is ours, UNCONFIRMED).
        """
        if token is None or token not in self._idempotency:
            return None
        run_id = self._idempotency[token]
        run = self.runs.get(run_id)
        if run is None:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"The run created with this idempotency token ({run_id}) was deleted; "
                "use a new idempotency token.",
            )
        return run

    # ------------------------------------------------------------------ runs and task runs
    def new_run(
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
        """A new run of `job` (not yet admitted) with a BLOCKED attempt of each of `tasks`; a run
        started by a run_job_task names it as `parent_attempt`."""
        run = JobRun(
            run_id=self._ids.run_id(),
            job=job,
            settings=settings,
            run_name=run_name,
            start_time_ms=self._loop.now_ms,
            creator_user_name=self._settings.creator_user_name,
            job_parameters=job_parameters,
            overriding_parameters=legacy,
            queue_enabled=queue_enabled,
            idempotency_token=token,
            run_type=run_type,
            trigger="RUN_JOB_TASK" if parent_attempt is not None else "ONE_TIME",
            parent_attempt=parent_attempt,
        )
        for task in tasks:
            self.new_attempt(run, copy.deepcopy(task), attempt_number=0)
        self.runs[run.run_id] = run
        if token is not None:
            self._idempotency[token] = run.run_id
        return run

    def new_attempt(
        self,
        run: JobRun,
        task: dict[str, Any],
        *,
        attempt_number: int,
        original_attempt_run_id: int | None = None,
    ) -> TaskAttempt:
        """A new BLOCKED attempt of `task` in `run`; a rerun keeps its task's `original_attempt_run_id`."""
        attempt = TaskAttempt(
            run_id=self._ids.run_id(),
            parent=run,
            task=task,
            script=self.script_for(run.job, task, task["task_key"]),
            attempt_number=attempt_number,
            original_attempt_run_id=0,
        )
        attempt.original_attempt_run_id = original_attempt_run_id or attempt.run_id
        run.attempts.append(attempt)
        self.task_runs[attempt.run_id] = attempt
        return attempt

    def script_for(self, job: Job, task: Mapping[str, Any], script_key: str) -> TaskScript:
        """A task's script: its own `emulator:` block, else its notebook's script, else success."""
        script = job.scripts.get(script_key)
        if script is not None:
            return script
        notebook = task.get("notebook_task")
        if isinstance(notebook, dict) and isinstance(notebook.get("notebook_path"), str):
            by_path = self._objects.script_for(notebook["notebook_path"])
            if by_path is not None:
                return by_path
        return TaskScript()

    # ------------------------------------------------------------------ lifecycle
    def admit(self, run: JobRun) -> None:
        """Start `run` now if the limits allow it; otherwise it waits QUEUED or ends SKIPPED."""
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
                    self.start_attempt(attempt)
                else:
                    skip_task(attempt, verdict)
                changed = True
        if all(a.terminal for a in run.latest_attempts().values()):
            self._finish_run(run)

    def start_attempt(self, attempt: TaskAttempt) -> None:
        """A task attempt whose turn has come waits for its cluster (PENDING), then runs."""
        if attempt.terminal:  # a retry whose run was cancelled while it waited
            return
        script = attempt.script
        attempt.st.life_cycle_state = PENDING
        attempt.start_time_ms = self._loop.now_ms
        if is_control_flow(attempt.task):
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
            script.pending_s if script.pending_s is not None else self._settings.default_pending_s
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
        if is_control_flow(task):
            self._control_flow.run(attempt)
            return
        script = attempt.script
        duration_s = (
            script.duration_s
            if script.duration_s is not None
            else self._settings.default_task_duration_s
        )
        outcome = script.outcome_for(attempt.attempt_number, attempt.iteration_input)
        task_timeout_s = task.get("timeout_seconds") or 0
        if isinstance(task_timeout_s, int) and 0 < task_timeout_s < duration_s:
            duration_s, outcome = float(task_timeout_s), "timeout"
        self._loop.schedule_at(
            self._loop.now_ms + seconds_to_ms(duration_s),
            lambda: self.attempt_done(attempt, outcome),
        )

    def after_attempt(self, attempt: TaskAttempt) -> None:
        """What follows the end of a task attempt: its for-each parent moves on, or its run."""
        if attempt.foreach_parent is not None:
            self._control_flow.for_each_progress(attempt.foreach_parent)
        else:
            self._evaluate_blocked(attempt.parent)

    def attempt_done(self, attempt: TaskAttempt, outcome: str, error: str | None = None) -> None:
        """A RUNNING attempt ended with `outcome` (see `outcomes.end_attempt`): retry it or move on."""
        if attempt.terminal or attempt.st.life_cycle_state != RUNNING:
            return
        end_attempt(attempt, outcome, error, self._loop.now_ms)
        if self._should_retry(attempt, outcome):
            self._schedule_retry(attempt)
        else:
            self.after_attempt(attempt)

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
            self._loop.now_ms + int(interval_ms), lambda: self.start_attempt(retry)
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
        delay_s = self._settings.cancel_s if outcome.canceled else self._settings.terminating_s

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
            self._control_flow.child_run_ended(run.parent_attempt, run)

    def cancel(self, run: JobRun) -> None:
        """Cancel a job run (reference §5): a queued run ends now, an active one goes TERMINATING;
        a no-op on a terminal run or one already cancelling."""
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
        for iteration in attempt.latest_iterations():
            self._stop_attempt(iteration, result)
        if attempt.child_run_id is not None:
            child = self.runs.get(attempt.child_run_id)
            if child is not None:
                self.cancel(child)
        end_attempt_stopped(attempt, result, self._loop.now_ms)

    def cancel_task_run(self, attempt: TaskAttempt) -> None:
        """Cancel one task run; the tasks after it then run or are skipped as their `run_if` says."""
        if attempt.terminal:
            return
        self._stop_attempt(attempt, "CANCELED")
        self.after_attempt(attempt)

    def reopen(self, run: JobRun) -> None:
        """A repaired run is active again: it counts towards the limits and its new task runs start."""
        self._admission.count(run)
        self._evaluate_blocked(run)
