"""What task runs and job runs read as they end, and a run's roll-up from its task runs (§4).

Pure functions over the records: run_if verdicts, result states, messages and terminations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from polysync.emulator.records import (
    INTERNAL_ERROR,
    SKIPPED,
    TERMINATED,
    WORKLOAD_FAILED,
    JobRun,
    TaskAttempt,
    Termination,
)

FAILED_RESULTS = frozenset({"FAILED", "TIMEDOUT", "UPSTREAM_FAILED"})
CANCELED_RESULTS = frozenset({"CANCELED", "UPSTREAM_CANCELED"})


def run_if_verdict(run_if: str, results: list[str]) -> str | None:
    """None if the task runs; otherwise the result_state it is skipped with."""
    if not results:
        return None
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


def dependency_result(dependency: Mapping[str, Any], upstream: TaskAttempt) -> str:
    """The upstream's result as its dependant sees it: a `depends_on[].outcome` on a condition
    task that came out the other way makes the edge "EXCLUDED" (the branch not taken)."""
    result = upstream.st.result_state or ""
    wanted = dependency.get("outcome")
    if wanted is not None and result == "SUCCESS":
        outcome = upstream.extra.get("condition_task", {}).get("outcome")
        if outcome is not None and outcome != str(wanted).lower():
            return "EXCLUDED"
    return result


def end_attempt(attempt: TaskAttempt, outcome: str, error: str | None, now_ms: int) -> None:
    """End a RUNNING task attempt at `now_ms` with `outcome` (`success`, `failure`, `timeout`,
    `internal_error`): its states, termination and output; `error` overrides the script's."""
    st = attempt.st
    script = attempt.script
    attempt.end_time_ms = now_ms
    if outcome == "success":
        st.life_cycle_state, st.result_state, st.state_message = TERMINATED, "SUCCESS", ""
        st.termination = Termination("SUCCESS", "SUCCESS")
        attempt.output_result = script.output
    elif outcome == "failure":
        st.life_cycle_state, st.result_state = TERMINATED, "FAILED"
        st.state_message = WORKLOAD_FAILED
        st.termination = Termination("RUN_EXECUTION_ERROR", "CLIENT_ERROR", WORKLOAD_FAILED)
        attempt.output_error = error or script.error or f"Exception: task {attempt.task_key} failed"
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


def skip_task(attempt: TaskAttempt, result: str) -> None:
    """Skip a task that will not run, with `result` (UPSTREAM_FAILED, EXCLUDED, ...) as its result."""
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


def end_attempt_stopped(attempt: TaskAttempt, result: str, now_ms: int) -> None:
    """End a started task attempt that was cancelled (`CANCELED`) or timed out with its job run."""
    if attempt.terminal:
        return
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
    attempt.end_time_ms = now_ms


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a job run ends, rolled up from its latest task runs when the last one ends."""

    result_state: str
    life_cycle_state: str  # after TERMINATING: TERMINATED, or INTERNAL_ERROR for a failed run
    state_message: str
    termination: Termination
    canceled: bool  # cancelled or timed out: the run takes `cancel_s` to terminate
    user_cancelled_or_timedout: bool


def run_outcome(run: JobRun) -> RunOutcome:
    """The roll-up: timed out, cancelled, failed (or SUCCESS_WITH_FAILURES when every leaf task
    succeeded), else SUCCESS; the message names the first task that failed."""
    latest = list(run.latest_attempts().values())
    failed = [a for a in latest if a.st.result_state in ("FAILED", "TIMEDOUT")]
    failed.sort(key=lambda a: (a.end_time_ms, a.run_id))
    canceled = run.cancel_requested or any(a.st.result_state == "CANCELED" for a in latest)
    final_life, termination_code, termination_type = TERMINATED, "SUCCESS", "SUCCESS"
    by_user = False
    if run.timed_out:
        timeout_s = run.settings.get("timeout_seconds", 0)
        result, message, by_user = "TIMEDOUT", f"Run timed out after {timeout_s} seconds.", True
        termination_code, termination_type = "CANCELED", "CLIENT_ERROR"
    elif canceled:
        result, message, by_user = "CANCELED", "Run cancelled.", True
        termination_code, termination_type = "USER_CANCELED", "SUCCESS"
    elif failed:
        depended_on = {d["task_key"] for a in latest for d in a.task.get("depends_on", [])}
        leaves = [a for a in latest if a.task_key not in depended_on]
        if leaves and all(a.st.result_state == "SUCCESS" for a in leaves):
            result, message = "SUCCESS_WITH_FAILURES", ""
            termination_code = "SUCCESS_WITH_FAILURES"
        else:
            first = failed[0]
            message = (
                f"Task {first.task_key} failed with message: {first.st.state_message.rstrip('.')}."
            )
            if any(a.st.result_state == "UPSTREAM_FAILED" for a in latest):
                message += " This caused all downstream tasks to get skipped."
            termination_code, termination_type = "RUN_EXECUTION_ERROR", "CLIENT_ERROR"
            if first.st.result_state == "TIMEDOUT":
                result = "TIMEDOUT"
            else:
                # A failed multi-task run reports INTERNAL_ERROR in the deprecated
                # life_cycle_state though its tasks are TERMINATED (reference §4).
                result = "FAILED"
                final_life = INTERNAL_ERROR
    else:
        result, message = "SUCCESS", ""
    return RunOutcome(
        result_state=result,
        life_cycle_state=final_life,
        state_message=message,
        termination=Termination(termination_code, termination_type, message),
        canceled=canceled,
        user_cancelled_or_timedout=by_user,
    )
