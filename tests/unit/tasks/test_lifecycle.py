"""A TaskRun's attempt chain: retries on the policy's delays, timeouts, repairs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from polysync.errors import TaskRunTransitionError
from polysync.tasks.lifecycle import (
    active_attempt,
    attach_run,
    end_attempt,
    repair,
    retries_due,
    start_attempt,
    time_out_attempt,
)
from polysync.tasks.model import AttemptKind, Task, TaskRun, advance, new_task_run
from polysync.tasks.retry import Backoff, RetryPolicy, RetryStrategy
from polysync.tasks.states import TaskRunStatus, TriggerType

S = TaskRunStatus
T0 = datetime(2026, 5, 1, tzinfo=UTC)
WORKFLOW = "Databricks Workflow"
RETRY = RetryPolicy(
    enabled=True, max_attempts=3, backoff=Backoff.EXPONENTIAL, initial_delay_s=30, max_delay_s=600
)


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def queued_run() -> TaskRun:
    task = Task(name="ingest", job_id=3, retry=RETRY, id=9)
    return new_task_run(task, TriggerType.SCHEDULE, T0, T0)


def test_failures_retry_on_the_policys_delays_then_fail() -> None:
    run = start_attempt(queued_run(), later(1), run_id=100)
    assert (run.status, active_attempt(run)) == (S.RUNNING, run.attempts[0])
    run, decision = end_attempt(run, S.FAILED, later(60), retry=RETRY, job_type=WORKFLOW)
    assert (decision.retry, decision.strategy) == (True, RetryStrategy.REPAIR)
    assert (run.status, run.next_attempt_at) == (S.RUNNING, later(90))
    assert run.history[-1].message == "attempt 1 Failed; attempt 2 (repairing the run) in 30 s"
    with pytest.raises(TaskRunTransitionError, match="is due at"):
        start_attempt(run, later(89), kind=AttemptKind.REPAIR)
    assert retries_due([run], later(89)) == []
    assert retries_due([run], later(90)) == [run]
    run = start_attempt(run, later(90), kind=AttemptKind.REPAIR, run_id=100)
    assert (run.next_attempt_at, run.attempts[1].kind) == (None, AttemptKind.REPAIR)
    run, _ = end_attempt(run, S.FAILED, later(200), retry=RETRY, job_type=WORKFLOW, message="x")
    assert run.next_attempt_at == later(260)  # 2 x 30 s
    run = start_attempt(run, later(260), kind=AttemptKind.REPAIR)
    run, decision = end_attempt(run, S.FAILED, later(300), retry=RETRY, job_type=WORKFLOW)
    assert (decision.retry, run.status, run.ended_at) == (False, S.FAILED, later(300))
    assert decision.reason == "all 3 attempts of the retry policy were made"
    assert [a.number for a in run.attempts] == [1, 2, 3]
    assert [a.status for a in run.attempts] == [S.FAILED] * 3


def test_success_and_cancel_end_the_task_run() -> None:
    run = start_attempt(queued_run(), later(1))
    run = attach_run(run, 7)
    assert run.attempts[0].run_id == 7
    done, decision = end_attempt(run, S.SUCCEEDED, later(9), retry=RETRY, job_type=WORKFLOW)
    assert (done.status, decision.retry, done.message) == (
        S.SUCCEEDED,
        False,
        "attempt 1 Succeeded",
    )
    cancelled, _ = end_attempt(run, S.CANCELLED, later(9), retry=RETRY, job_type=WORKFLOW)
    assert cancelled.status is S.CANCELLED


def test_a_timeout_fails_the_attempt_and_retries_it() -> None:
    run = start_attempt(queued_run(), later(0))
    run, decision = time_out_attempt(
        run, 600, later(600), retry=RETRY, job_type="Databricks Pipeline"
    )
    assert (decision.retry, decision.strategy) == (True, RetryStrategy.RESTART)
    assert run.attempts[0].message == "timed out after 600 s"
    assert run.history[-1].message == (
        "attempt 1 Failed: timed out after 600 s; attempt 2 (a new run) in 30 s"
    )
    no_retry = replace(RETRY, enabled=False)
    failed, _ = time_out_attempt(
        start_attempt(queued_run(), later(0)), 60, later(60), retry=no_retry, job_type=WORKFLOW
    )
    assert (failed.status, failed.message) == (S.FAILED, "timed out after 60 s")


def test_ending_a_task_run_ends_its_running_attempt() -> None:
    run = start_attempt(queued_run(), later(0))
    cancelled = advance(run, S.CANCELLED, later(4), "cancelled by cli:alice")
    assert (cancelled.attempts[0].status, cancelled.attempts[0].ended_at) == (S.CANCELLED, later(4))
    assert active_attempt(cancelled) is None


def test_cancel_while_waiting_for_a_retry() -> None:
    run = start_attempt(queued_run(), later(0))
    run, _ = end_attempt(run, S.FAILED, later(5), retry=RETRY, job_type=WORKFLOW)
    cancelled = advance(run, S.CANCELLED, later(10), "cancelled by cli:alice")
    assert (cancelled.status, cancelled.next_attempt_at) == (S.CANCELLED, None)


def test_a_repair_by_hand_reopens_a_failed_task_run() -> None:
    run = start_attempt(queued_run(), later(0), run_id=55)
    run, _ = end_attempt(
        run, S.FAILED, later(5), retry=replace(RETRY, enabled=False), job_type=WORKFLOW
    )
    reopened = repair(run, later(100))
    assert (reopened.status, reopened.ended_at) == (S.RUNNING, None)
    assert (reopened.attempts[-1].kind, reopened.attempts[-1].run_id) == (AttemptKind.REPAIR, 55)
    done, _ = end_attempt(reopened, S.SUCCEEDED, later(200), retry=RETRY, job_type=WORKFLOW)
    assert [e.status for e in done.history] == [
        S.QUEUED,
        S.RUNNING,
        S.FAILED,
        S.RUNNING,
        S.SUCCEEDED,
    ]
    with pytest.raises(TaskRunTransitionError, match="cannot be repaired"):
        repair(done, later(300), run_id=55)
    never_ran = advance(queued_run(), S.CANCELLED, later(1))
    with pytest.raises(TaskRunTransitionError, match="never started a run, so there is nothing"):
        repair(never_ran, later(2))


def test_attempt_misuse_is_refused() -> None:
    run = start_attempt(queued_run(), later(0))
    with pytest.raises(TaskRunTransitionError, match="still running"):
        start_attempt(run, later(1))
    done, _ = end_attempt(run, S.SUCCEEDED, later(2), retry=RETRY, job_type=WORKFLOW)
    with pytest.raises(TaskRunTransitionError, match="waits for no retry"):
        start_attempt(done, later(3))
    with pytest.raises(TaskRunTransitionError, match="first attempt of a TaskRun starts a new run"):
        start_attempt(queued_run(), later(0), kind=AttemptKind.REPAIR)
    with pytest.raises(ValueError, match="not Skipped"):
        end_attempt(run, S.SKIPPED, later(1), retry=RETRY, job_type=WORKFLOW)
    with pytest.raises(TaskRunTransitionError, match="nothing can end"):
        end_attempt(queued_run(), S.FAILED, later(1), retry=RETRY, job_type=WORKFLOW)
    with pytest.raises(TaskRunTransitionError, match="to attach a run to"):
        attach_run(queued_run(), 1)
