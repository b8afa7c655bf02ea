"""A TaskRun's attempt chain: start an attempt, end it, retry it, time it out, repair it.

The engine calls these as Runs start and end; each returns the new TaskRun (records are frozen)
and never touches the store. Rules (docs/tasks.md "TaskRuns", "Retries"):

- The first attempt moves a Queued TaskRun to Running.
- An attempt that ends Failed is retried while the retry policy allows: the TaskRun stays
  Running with `next_attempt_at` set (it keeps its concurrency slot), and `retries_due` lists it
  once that time passes. Otherwise the TaskRun ends with the attempt's outcome.
- A timed-out attempt ends Failed with "timed out after N s", then the same rule applies.
- A repair by hand reopens a Failed or Cancelled TaskRun as Running with a `repair` attempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from polysync.errors import TaskRunTransitionError
from polysync.tasks.model import (
    Attempt,
    AttemptKind,
    TaskRun,
    TaskRunEvent,
    advance,
    timeout_message,
)
from polysync.tasks.retry import RetryDecision, RetryPolicy, RetryStrategy, retry_decision
from polysync.tasks.states import TaskRunStatus

_ATTEMPT_OUTCOMES = frozenset(
    {TaskRunStatus.SUCCEEDED, TaskRunStatus.FAILED, TaskRunStatus.CANCELLED}
)


def active_attempt(task_run: TaskRun) -> Attempt | None:
    """The attempt running now, if one is (the last one, not ended)."""
    if task_run.attempts and task_run.attempts[-1].ended_at is None:
        return task_run.attempts[-1]
    return None


def start_attempt(
    task_run: TaskRun,
    at: datetime,
    *,
    kind: AttemptKind | None = None,
    run_id: int | None = None,
) -> TaskRun:
    """`task_run` with its next attempt started at `at`: the first one (Queued -> Running) or a
    retry whose delay has passed. `run_id`: our Run, when already created (`attach_run` sets
    it later otherwise). TaskRunTransitionError when an attempt is already running, the retry is
    not due yet, or the TaskRun is neither Queued nor waiting for a retry."""
    if active_attempt(task_run) is not None:
        raise TaskRunTransitionError(
            f"Attempt {len(task_run.attempts)} of this TaskRun is still running; end it first."
        )
    number = len(task_run.attempts) + 1
    if kind is None:
        # A retry repairs or restarts as its policy said when the attempt ended.
        kind = task_run.next_attempt_kind or AttemptKind.START
    attempt = Attempt(number, kind, at, run_id=run_id)
    if task_run.status is TaskRunStatus.QUEUED:
        if kind is not AttemptKind.START:
            raise TaskRunTransitionError("The first attempt of a TaskRun starts a new run.")
        return advance(
            replace(task_run, attempts=(attempt,)), TaskRunStatus.RUNNING, at, "attempt 1 started"
        )
    if task_run.status is not TaskRunStatus.RUNNING or task_run.next_attempt_at is None:
        raise TaskRunTransitionError(
            f"The TaskRun is {task_run.status} and waits for no retry: no attempt can start."
        )
    if at < task_run.next_attempt_at:
        raise TaskRunTransitionError(
            f"The retry of this TaskRun is due at {task_run.next_attempt_at.isoformat()}, not "
            f"{at.isoformat()}."
        )
    return _note(
        replace(
            task_run,
            attempts=(*task_run.attempts, attempt),
            next_attempt_at=None,
            next_attempt_kind=None,
        ),
        at,
        f"attempt {number} started ({kind})",
    )


def attach_run(task_run: TaskRun, run_id: int) -> TaskRun:
    """`task_run` with our Run's id recorded on its running attempt (once the Run exists)."""
    attempt = active_attempt(task_run)
    if attempt is None:
        raise TaskRunTransitionError("No attempt of this TaskRun is running to attach a run to.")
    return replace(task_run, attempts=(*task_run.attempts[:-1], replace(attempt, run_id=run_id)))


def end_attempt(
    task_run: TaskRun,
    outcome: TaskRunStatus,
    at: datetime,
    *,
    retry: RetryPolicy,
    job_type: str,
    message: str = "",
) -> tuple[TaskRun, RetryDecision]:
    """`task_run` after its running attempt ended `outcome` (Succeeded, Failed or Cancelled) at
    `at`, and the retry decision: when a retry follows, the TaskRun stays Running with
    `next_attempt_at` = `at` + the policy's delay; else it ends `outcome` with `message`.
    TaskRunTransitionError when no attempt is running; ValueError for another outcome."""
    if outcome not in _ATTEMPT_OUTCOMES:
        raise ValueError(f"an attempt ends Succeeded, Failed or Cancelled, not {outcome}")
    attempt = active_attempt(task_run)
    if attempt is None:
        raise TaskRunTransitionError("No attempt of this TaskRun is running; nothing can end.")
    ended = replace(attempt, ended_at=at, status=outcome, message=message)
    recorded = replace(task_run, attempts=(*task_run.attempts[:-1], ended))
    decision = retry_decision(retry, job_type, attempt.number, outcome)
    if decision.retry:
        due = at + timedelta(seconds=decision.delay_s)
        how = "repairing the run" if decision.strategy is RetryStrategy.REPAIR else "a new run"
        text = (
            f"attempt {attempt.number} {outcome}{': ' + message if message else ''}; attempt "
            f"{decision.attempt} ({how}) in {decision.delay_s:g} s"
        )
        kind = (
            AttemptKind.REPAIR if decision.strategy is RetryStrategy.REPAIR else AttemptKind.START
        )
        waiting = replace(recorded, next_attempt_at=due, next_attempt_kind=kind)
        return _note(waiting, at, text), decision
    return advance(
        recorded, outcome, at, message or f"attempt {attempt.number} {outcome}"
    ), decision


def time_out_attempt(
    task_run: TaskRun, timeout_s: int, at: datetime, *, retry: RetryPolicy, job_type: str
) -> tuple[TaskRun, RetryDecision]:
    """`end_attempt` for an attempt the execution timeout ended (its run is being cancelled):
    Failed with "timed out after N s"; the retry policy then applies."""
    return end_attempt(
        task_run,
        TaskRunStatus.FAILED,
        at,
        retry=retry,
        job_type=job_type,
        message=timeout_message(timeout_s),
    )


def repair(task_run: TaskRun, at: datetime, *, run_id: int | None = None) -> TaskRun:
    """`task_run` reopened by a repair by hand (CLI, API, web "Repair run"): Failed or Cancelled
    -> Running, with a `repair` attempt on the same Run (D6 as amended). TaskRunTransitionError
    for any other status, or a TaskRun that never started a run (cancelled while Queued)."""
    previous_run = task_run.attempts[-1].run_id if task_run.attempts else None
    if previous_run is None and run_id is None:
        raise TaskRunTransitionError(
            f"This {task_run.status} TaskRun never started a run, so there is nothing to repair. "
            "Run the Task once instead."
        )
    reopened = advance(task_run, TaskRunStatus.RUNNING, at, "reopened by a repair", repair=True)
    attempt = Attempt(
        len(task_run.attempts) + 1, AttemptKind.REPAIR, at, run_id=run_id or previous_run
    )
    return replace(reopened, attempts=(*task_run.attempts, attempt))


def retries_due(task_runs: Iterable[TaskRun], now: datetime) -> list[TaskRun]:
    """Running TaskRuns whose next attempt may start at `now`, the longest-waiting first."""
    due = [
        run
        for run in task_runs
        if run.status is TaskRunStatus.RUNNING
        and run.next_attempt_at is not None
        and run.next_attempt_at <= now
        and active_attempt(run) is None
    ]
    return sorted(due, key=lambda run: (run.next_attempt_at or now, -run.priority))


def _note(task_run: TaskRun, at: datetime, message: str) -> TaskRun:
    """A history entry without a status change (the TaskRun stays Running between attempts)."""
    event = TaskRunEvent(at, task_run.status, message, len(task_run.attempts) or None)
    return replace(task_run, history=(*task_run.history, event), message=message)
