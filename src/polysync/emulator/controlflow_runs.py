"""Control-flow task runs on the run lifecycle: condition_task, run_job_task and for_each_task.

They run in the Jobs service itself, with no cluster: a condition is evaluated the moment it runs,
a run_job_task follows the run it starts, a for_each_task runs one iteration per input.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping
from typing import Any

from polysync.emulator.controlflow import (
    ReferenceContext,
    evaluate_condition,
    parse_foreach_inputs,
    resolve_in,
    resolve_references,
)
from polysync.emulator.errors import ApiError
from polysync.emulator.fields import int_field
from polysync.emulator.job_settings import ITERATION_SCRIPT, job_parameter_values
from polysync.emulator.lifecycle import RunLifecycle
from polysync.emulator.outcomes import end_attempt_stopped
from polysync.emulator.records import BLOCKED, RUNNING, Job, JobRun, TaskAttempt
from polysync.emulator.spec import WorkspaceSettings


class ControlFlowRuns:
    """The `lifecycle.ControlFlowTasks` of a workspace: how its control-flow task runs run."""

    def __init__(
        self, runs: RunLifecycle, jobs: Mapping[int, Job], settings: WorkspaceSettings
    ) -> None:
        self._runs = runs
        self._jobs = jobs
        self._settings = settings

    def run(self, attempt: TaskAttempt) -> None:
        """Run a condition_task, run_job_task or for_each_task attempt that has become RUNNING."""
        task = attempt.task
        if "condition_task" in task:
            self._run_condition(attempt)
        elif "run_job_task" in task:
            self._run_child_job(attempt)
        elif "for_each_task" in task:
            self._run_for_each(attempt)

    def _run_condition(self, attempt: TaskAttempt) -> None:
        """Evaluate `condition_task` now; `condition_task.outcome` is "true"/"false" (sdk-py
        `RunConditionTask`); a reference or comparison that cannot be evaluated fails the task."""
        condition = attempt.task["condition_task"]
        try:
            context = _references(attempt)
            left = resolve_references(str(condition["left"]), context)
            right = resolve_references(str(condition["right"]), context)
            outcome = evaluate_condition(str(condition["op"]), left, right)
        except ValueError as exc:
            self._runs.attempt_done(attempt, "failure", error=str(exc))
            return
        attempt.extra["condition_task"] = {"outcome": "true" if outcome else "false"}
        self._runs.attempt_done(attempt, "success")

    def _run_child_job(self, attempt: TaskAttempt) -> None:
        """`run_job_task`: start a run of the other job (trigger RUN_JOB_TASK); the task ends as
        that run ends. Its `job_parameters` may hold references (sdk-py `RunJobTask`)."""
        spec = attempt.task["run_job_task"]
        job_id = int_field(spec, "job_id", required=True)
        assert job_id is not None
        job = self._jobs.get(job_id)
        if job is None:
            self._runs.attempt_done(attempt, "failure", error=f"Job {job_id} does not exist.")
            return
        try:
            raw = spec.get("job_parameters") or {}
            if not isinstance(raw, dict):
                raise ValueError("run_job_task.job_parameters must be an object.")
            values = resolve_in(raw, _references(attempt))
            assert isinstance(values, dict)
            params = job_parameter_values(
                job, values, reject_unknown=self._settings.reject_unknown_job_parameters
            )
        except (ValueError, ApiError) as exc:
            message = exc.message if isinstance(exc, ApiError) else str(exc)
            self._runs.attempt_done(attempt, "failure", error=message)
            return
        child = self._runs.new_run(
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
        self._runs.admit(child)

    def child_run_ended(self, attempt: TaskAttempt, child: JobRun) -> None:
        """The child run ended: success (or success with failures) succeeds the task, a
        cancelled child cancels it, anything else fails it with the child's message."""
        if attempt.terminal or attempt.st.life_cycle_state != RUNNING:
            return
        result = child.st.result_state
        if result in ("SUCCESS", "SUCCESS_WITH_FAILURES"):
            self._runs.attempt_done(attempt, "success")
        elif result == "CANCELED":
            end_attempt_stopped(attempt, "CANCELED", self._runs.now_ms)
            self._runs.after_attempt(attempt)
        else:
            reason = child.st.state_message or f"ended {result or child.st.life_cycle_state}"
            self._runs.attempt_done(
                attempt, "failure", error=f"Run {child.run_id} of job {child.job_id}: {reason}"
            )

    def _run_for_each(self, attempt: TaskAttempt) -> None:
        """`for_each_task`: one iteration of the nested task per input, at most `concurrency` at
        once; `for_each_task.stats.task_run_stats` counts them (sdk-py `ForEachTaskTaskRunStats`)."""
        spec = attempt.task["for_each_task"]
        try:
            inputs = parse_foreach_inputs(
                resolve_references(str(spec["inputs"]), _references(attempt))
            )
        except ValueError as exc:
            self._runs.attempt_done(attempt, "failure", error=str(exc))
            return
        nested = spec["task"]
        script = self._runs.script_for(
            attempt.parent.job, nested, f"{attempt.task_key}{ITERATION_SCRIPT}"
        )
        for index, item in enumerate(inputs):
            iteration = TaskAttempt(
                run_id=self._runs.new_run_id(),
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
            self._runs.task_runs[iteration.run_id] = iteration
        self.for_each_progress(attempt)

    def for_each_progress(self, parent: TaskAttempt) -> None:
        """An iteration of `parent` ended (or it just started): start iterations up to
        `concurrency`; once all have ended, `parent` succeeds if every one did."""
        if parent.terminal:
            return
        latest = parent.latest_iterations()
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
        latest = parent.latest_iterations()
        parent.extra["for_each_task"] = {"stats": _foreach_stats(latest)}
        if all(it.terminal for it in latest):
            if all(it.st.result_state == "SUCCESS" for it in latest):
                self._runs.attempt_done(parent, "success")
            else:
                failed = sum(1 for it in latest if it.st.result_state != "SUCCESS")
                self._runs.attempt_done(
                    parent,
                    "failure",
                    error=f"{failed} of {len(latest)} iterations of task {parent.task_key} failed.",
                )

    def _start_iteration(self, iteration: TaskAttempt, parent: TaskAttempt) -> None:
        try:
            iteration.task = _as_dict(resolve_in(iteration.task, _references(iteration)))
        except ValueError as exc:
            iteration.start_time_ms = iteration.running_since_ms = self._runs.now_ms
            iteration.st.life_cycle_state = RUNNING
            self._runs.attempt_done(iteration, "failure", error=str(exc))
            return
        self._runs.start_attempt(iteration)


def _references(attempt: TaskAttempt) -> ReferenceContext:
    """What `{{...}}` names for `attempt` now: its run, job parameters, the latest task runs."""
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
