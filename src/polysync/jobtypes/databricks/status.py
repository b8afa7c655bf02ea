"""Databricks run status: decoding `jobs/runs/get` (D6) and run page URLs (D7), for the job types
that start Jobs API runs (Workflow, Job, Notebook)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from polysync.domain.limits import http_url, same_host
from polysync.domain.models import RunSnapshot, RunStatus, TaskRunState, Termination
from polysync.domain.text import shown

# D6, applied to `state` (reference §4 `RunLifeCycleState`, `RunResultState`).
_STARTING_LIFE_CYCLES = frozenset({"QUEUED", "PENDING", "BLOCKED"})
_RUNNING_LIFE_CYCLES = frozenset({"RUNNING", "TERMINATING", "WAITING_FOR_RETRY"})
_SUCCESS_RESULTS = frozenset({"SUCCESS", "SUCCESS_WITH_FAILURES", "EXCLUDED"})
_FAILED_RESULTS = frozenset(
    {"FAILED", "TIMEDOUT", "MAXIMUM_CONCURRENT_RUNS_REACHED", "UPSTREAM_FAILED"}
)
_CANCELLED_RESULTS = frozenset({"CANCELED", "UPSTREAM_CANCELED", "DISABLED"})

# D6 "when state is missing, derive from status.state + termination_details.code" (reference §4
# `RunLifecycleStateV2State`, `TerminationCodeCode`). Only TERMINATED is terminal in V2.
_STARTING_V2 = frozenset({"QUEUED", "PENDING", "BLOCKED"})
_RUNNING_V2 = frozenset({"RUNNING", "TERMINATING", "WAITING"})
_SUCCESS_CODES = frozenset({"SUCCESS", "SUCCESS_WITH_FAILURES"})
# CANCELED is the platform cancelling (e.g. max run duration exceeded): a timeout, which D6 calls
# Failed (TIMEDOUT), so only a user's cancel and DISABLED (as in the V1 row) are Cancelled.
_CANCELLED_CODES = frozenset({"USER_CANCELED", "DISABLED"})
_SKIPPED_CODES = frozenset(
    {"SKIPPED", "MAX_CONCURRENT_RUNS_EXCEEDED", "MAX_JOB_QUEUE_SIZE_EXCEEDED"}
)
_FAILED_CODES = _SKIPPED_CODES | frozenset(
    {
        "CANCELED",
        "INTERNAL_ERROR",
        "DRIVER_ERROR",
        "CLUSTER_ERROR",
        "REPOSITORY_CHECKOUT_FAILED",
        "INVALID_CLUSTER_REQUEST",
        "WORKSPACE_RUN_LIMIT_EXCEEDED",
        "FEATURE_DISABLED",
        "CLUSTER_REQUEST_LIMIT_EXCEEDED",
        "STORAGE_ACCESS_ERROR",
        "RUN_EXECUTION_ERROR",
        "UNAUTHORIZED_ERROR",
        "LIBRARY_INSTALLATION_ERROR",
        "MAX_SPARK_CONTEXTS_EXCEEDED",
        "RESOURCE_NOT_FOUND",
        "INVALID_RUN_CONFIGURATION",
        "CLOUD_FAILURE",
        "BREAKING_CHANGE",
        "CLUSTER_TERMINATED_BY_USER",
        "BUDGET_POLICY_LIMIT_EXCEEDED",
    }
)
# The enums "may grow" (§4): a TERMINATED run with a code we do not know is still decided by
# its termination type, rather than polled for ever.
_FAILED_TYPES = frozenset({"INTERNAL_ERROR", "CLIENT_ERROR", "CLOUD_FAILURE"})

_SKIPPED_RESULTS = frozenset({"UPSTREAM_FAILED", "MAXIMUM_CONCURRENT_RUNS_REACHED"})
_SKIPPED_EXPLANATION = (
    "Databricks did not start the run (for example because the job's maximum concurrent runs "
    "was reached)."
)


@dataclass(frozen=True, slots=True)
class _Decoded:
    status: RunStatus
    life_cycle_state: str | None
    result_state: str | None
    state_message: str
    termination: Termination | None
    queue_reason: str
    warning: str | None


def is_terminal(status: RunStatus) -> bool:
    """Success, Failed and Cancelled are terminal; Starting, Running and Unknown are not (D6)."""
    return status.is_terminal


def decode_run(run: Mapping[str, Any], *, workspace_url: str) -> RunSnapshot:
    """Decode a `jobs/runs/get` answer (D6). Never raises on odd input: what cannot be read is
    Unknown (not terminal, keep polling) with a warning."""
    run_id = _positive_int(run.get("run_id"))
    subject = f"Run {run_id}" if run_id is not None else "The run"
    decoded = _decode_states(run.get("state"), run.get("status"), subject)
    warnings = [decoded.warning] if decoded.warning else []
    tasks: list[TaskRunState] = []
    raw_tasks = run.get("tasks")
    for raw_task in raw_tasks if isinstance(raw_tasks, list) else []:
        if isinstance(raw_task, Mapping):
            task, warning = _decode_task(raw_task, workspace_url)
            tasks.append(task)
            if warning and warning not in warnings:
                warnings.append(warning)

    runs_get_url = trusted_run_url(run.get("run_page_url"), workspace_url)
    if runs_get_url is not None:
        run_page_url: str | None = runs_get_url
    elif run_id is not None:
        run_page_url = fallback_run_url(workspace_url, run_id, _positive_int(run.get("job_id")))
    else:
        run_page_url = None

    start_ms, end_ms = _epoch_ms(run.get("start_time")), _epoch_ms(run.get("end_time"))
    snapshot = RunSnapshot(
        status=decoded.status,
        run_id=None if run_id is None else str(run_id),
        life_cycle_state=decoded.life_cycle_state,
        result_state=decoded.result_state,
        state_message=decoded.state_message,
        termination=decoded.termination,
        queue_reason=decoded.queue_reason,
        run_page_url=run_page_url,
        start_time_ms=start_ms,
        end_time_ms=end_ms,
        duration_ms=_duration_ms(run.get("run_duration"), start_ms, end_ms),
        tasks=tuple(tasks),
        warnings=tuple(warnings),
    )
    return replace(snapshot, message=run_message(snapshot))


def _decode_task(task: Mapping[str, Any], workspace_url: str) -> tuple[TaskRunState, str | None]:
    task_key = task.get("task_key")
    key = task_key if isinstance(task_key, str) else ""
    run_id = _positive_int(task.get("run_id"))
    subject = f"Task {key!r}" if key else f"Task run {run_id}"
    decoded = _decode_states(task.get("state"), task.get("status"), subject, is_task=True)
    start_ms, end_ms = _epoch_ms(task.get("start_time")), _epoch_ms(task.get("end_time"))
    attempt = _positive_int(task.get("attempt_number")) or 0
    return (
        TaskRunState(
            task_key=key,
            status=decoded.status,
            run_id=run_id,
            attempt_number=attempt,
            life_cycle_state=decoded.life_cycle_state,
            result_state=decoded.result_state,
            state_message=decoded.state_message,
            termination=decoded.termination,
            start_time_ms=start_ms,
            end_time_ms=end_ms,
            duration_ms=_duration_ms(task.get("run_duration"), start_ms, end_ms),
            run_page_url=trusted_run_url(task.get("run_page_url"), workspace_url),
        ),
        decoded.warning,
    )


def _decode_states(
    state: object, status: object, subject: str, *, is_task: bool = False
) -> _Decoded:
    life_cycle = result = None
    state_message = queue_reason = ""
    if isinstance(state, Mapping):
        life_cycle = _text(state.get("life_cycle_state"))
        result = _text(state.get("result_state"))
        state_message = _message(state.get("state_message"))
        queue_reason = _message(state.get("queue_reason"))
    v2_state: str | None = None
    termination: Termination | None = None
    if isinstance(status, Mapping):
        v2_state = _text(status.get("state"))
        details = status.get("termination_details")
        if isinstance(details, Mapping):
            termination = Termination(
                code=_text(details.get("code")),
                type=_text(details.get("type")),
                message=_message(details.get("message")),
            )
        queue = status.get("queue_details")
        if not queue_reason and isinstance(queue, Mapping):
            queue_reason = _message(queue.get("message")) or (_text(queue.get("code")) or "")

    v1_status = _from_state(life_cycle, result, is_task) if life_cycle is not None else None
    v2_status, v2_note = _from_status(v2_state, termination)
    warning: str | None = None
    if v1_status is not None:
        decided = v1_status
    elif v2_status is not None:
        decided = v2_status
        # Beyond D6's letter (which derives from status only when state is missing): an unknown
        # state next to a status we understand is decided by the status, not polled for ever.
        if life_cycle is not None:
            warning = (
                f"{subject}: unknown Databricks state (life_cycle_state {life_cycle!r}, "
                f"result_state {result!r}); decided {v2_status} from status.state {v2_state!r}."
            )
        elif v2_note:
            warning = f"{subject}: {v2_note}"
    else:
        decided = RunStatus.UNKNOWN
        if life_cycle is None and v2_state is None:
            seen = "no state and no status"
        elif life_cycle is None:
            code = termination.code if termination else None
            seen = f"status.state {v2_state!r}, termination code {code!r}"
        else:
            seen = f"life_cycle_state {life_cycle!r}, result_state {result!r}"
        warning = (
            f"{subject}: unknown Databricks state ({seen}); Polysync treats it as not finished "
            f"and keeps polling."
        )
    return _Decoded(decided, life_cycle, result, state_message, termination, queue_reason, warning)


def _from_state(life_cycle: str, result: str | None, is_task: bool) -> RunStatus | None:
    """The D6 table; None for any other combination."""
    if life_cycle in _STARTING_LIFE_CYCLES:
        return RunStatus.STARTING
    if life_cycle in _RUNNING_LIFE_CYCLES:
        return RunStatus.RUNNING
    if life_cycle == "SKIPPED":
        # D6's row is about a whole run Databricks refused to start. A *task* is SKIPPED for
        # reasons its result_state names (§4): a condition not met (EXCLUDED) is no failure,
        # and a task skipped because the run was cancelled (UPSTREAM_CANCELED) is Cancelled.
        if is_task and result == "EXCLUDED":
            return RunStatus.SUCCESS
        if is_task and result in _CANCELLED_RESULTS:
            return RunStatus.CANCELLED
        return RunStatus.FAILED
    if life_cycle == "TERMINATED":
        if result in _SUCCESS_RESULTS:
            return RunStatus.SUCCESS
        if result in _FAILED_RESULTS:
            return RunStatus.FAILED
        if result in _CANCELLED_RESULTS:
            return RunStatus.CANCELLED
    if life_cycle == "INTERNAL_ERROR" and (result is None or result in _FAILED_RESULTS):
        return RunStatus.FAILED
    return None


def _from_status(
    v2_state: str | None, termination: Termination | None
) -> tuple[RunStatus | None, str | None]:
    """(status, a note when an unknown termination code was decided by its type)."""
    if v2_state in _STARTING_V2:
        return RunStatus.STARTING, None
    if v2_state in _RUNNING_V2:
        return RunStatus.RUNNING, None
    if v2_state != "TERMINATED" or termination is None:
        return None, None
    code = termination.code
    if code in _SUCCESS_CODES:
        return RunStatus.SUCCESS, None
    if code in _CANCELLED_CODES:
        return RunStatus.CANCELLED, None
    if code in _FAILED_CODES:
        return RunStatus.FAILED, None
    by_type = (
        RunStatus.SUCCESS
        if termination.type == "SUCCESS"
        else RunStatus.FAILED
        if termination.type in _FAILED_TYPES
        else None
    )
    if by_type is None:
        return None, None
    return by_type, (
        f"unknown termination code {code!r}; decided {by_type} from termination type "
        f"{termination.type!r}."
    )


# --- Run message ---------------------------------------------------------------------------


def run_message(snapshot: RunSnapshot) -> str:
    """The run message: state_message, termination_details, and each failed task (D6)."""
    lines: list[str] = []
    termination = snapshot.termination
    termination_message = termination.message if termination else ""
    if _skipped(snapshot.life_cycle_state, snapshot.result_state, termination):
        lines.append(
            "Skipped: " + (snapshot.state_message or termination_message or _SKIPPED_EXPLANATION)
        )
        shown = {snapshot.state_message or termination_message}
    else:
        if snapshot.state_message:
            lines.append(snapshot.state_message)
        shown = {snapshot.state_message}
    if termination is not None and (
        termination.code not in (None, "SUCCESS")
        or (termination.message and termination.message not in shown)
    ):
        text = f"Termination: {termination.code or 'unknown code'}"
        if termination.type:
            text += f" ({termination.type})"
        if termination.message and termination.message not in shown:
            text += f": {termination.message}"
        lines.append(text)
    if snapshot.status is RunStatus.STARTING and snapshot.queue_reason:
        lines.append(f"Queued: {snapshot.queue_reason}")
    if snapshot.status.is_terminal:
        failed = snapshot.failed_tasks
        if snapshot.status is RunStatus.SUCCESS and _with_failures(snapshot):
            names = ", ".join(_task_name(t) for t in failed)
            lines.append(
                f"Succeeded with failures in: {names}."
                if failed
                else "Succeeded with failures (Databricks listed no failed task)."
            )
        said = "\n".join(lines)  # a task's text the run's own message already holds is not repeated
        lines.extend(_task_line(task, said) for task in failed)
    return "\n".join(lines)


def _with_failures(snapshot: RunSnapshot) -> bool:
    code = snapshot.termination.code if snapshot.termination else None
    return "SUCCESS_WITH_FAILURES" in (snapshot.result_state, code)


def _skipped(life_cycle: str | None, result: str | None, termination: Termination | None) -> bool:
    if life_cycle == "SKIPPED" or result in _SKIPPED_RESULTS:
        return True
    return life_cycle is None and termination is not None and termination.code in _SKIPPED_CODES


def _task_name(task: TaskRunState) -> str:
    return task.task_key or f"(task run {task.run_id})"


def _task_line(task: TaskRunState, said: str = "") -> str:
    if _skipped(task.life_cycle_state, task.result_state, task.termination):
        verb = "skipped"
    elif task.result_state == "TIMEDOUT":
        verb = "timed out"
    else:
        verb = "failed"
    text = f"Task {_task_name(task)} {verb}"
    label = (
        task.result_state
        or task.life_cycle_state
        or (task.termination.code if task.termination else None)
    )
    if label:
        text += f" ({label})"
    if task.attempt_number:
        text += f" on attempt {task.attempt_number + 1}"
    detail = (task.state_message or (task.termination.message if task.termination else "")).strip()
    error = (task.error or "").strip()
    # Databricks often repeats the get-output error in the state message (or the reverse):
    # each text is said once.
    if _says(said, detail):
        detail = ""
    if error and (_says(detail, error) or _says(said, error)):
        error = ""
    elif error and _says(error, detail):
        detail = ""
    if detail:
        text += f": {detail}"
    if error:
        text += ("" if text.endswith((".", "!", "?", ":")) else ".") + f" Error: {error}"
    return text


def _says(text: str, other: str) -> bool:
    """Whether `text` already says `other` (ignoring case and runs of white space)."""
    return bool(text) and " ".join(other.split()).casefold() in " ".join(text.split()).casefold()


def with_task_errors(snapshot: RunSnapshot, errors: Mapping[int, str]) -> RunSnapshot:
    """The snapshot with `runs/get-output` errors (keyed by task run_id) merged into its tasks
    and its message (§4: the real error text is only in get-output)."""
    tasks = tuple(
        replace(task, error=errors[task.run_id])
        if task.run_id is not None and errors.get(task.run_id)
        else task
        for task in snapshot.tasks
    )
    updated = replace(snapshot, tasks=tasks)
    return replace(updated, message=run_message(updated))


def task_runs_to_fetch_errors(snapshot: RunSnapshot) -> tuple[int, ...]:
    """Task run ids whose `runs/get-output` error the run message lacks: failed last attempts
    that ran (a task an upstream failure skipped has no output)."""
    return tuple(
        task.run_id
        for task in snapshot.failed_tasks
        if task.run_id is not None
        and task.error is None
        and not _skipped(task.life_cycle_state, task.result_state, task.termination)
    )


def keep_terminal(previous: RunSnapshot | None, current: RunSnapshot) -> RunSnapshot:
    """The snapshot to record after a poll: terminal statuses never change again (D6)."""
    if previous is not None and previous.is_terminal:
        return previous
    return current


# --- D7 -----------------------------------------------------------------------------------


def fallback_run_url(workspace_url: str, run_id: int, job_id: int | None = None) -> str:
    """The run URL before Databricks gave one (D7, amended): `{workspace}/#job/{job_id}/run/{run_id}`,
    the page Databricks itself links; without a job id, the specification's
    `{workspace}/#job/{run_id}/run/1` (which puts the run id in the job slot)."""
    base = workspace_url.strip().rstrip("/")
    if job_id is not None:
        return f"{base}/#job/{job_id}/run/{run_id}"
    return f"{base}/#job/{run_id}/run/1"


def best_run_url(
    run_now_url: str | None,
    runs_get_url: str | None,
    workspace_url: str,
    run_id: int,
    job_id: int | None = None,
) -> str:
    """The best run page URL known (D7): run-now's, else runs/get's, else the fallback (with the
    Job Id when known). A URL that is not http(s) on the workspace's own host is ignored
    (`trusted_run_url`)."""
    for url in (run_now_url, runs_get_url):
        trusted = trusted_run_url(url, workspace_url)
        if trusted is not None:
            return trusted
    return fallback_run_url(workspace_url, run_id, job_id)


def trusted_run_url(url: object, workspace_url: str) -> str | None:
    """`url` when it is an http(s) URL on the workspace's own host (D7), else None: a workspace
    answering `javascript:...` or another site's address never becomes a link we show."""
    checked = http_url(url)
    if checked is None or not same_host(checked, workspace_url):
        return None
    return checked


# --- Reading odd JSON safely ------------------------------------------------------------------


def _text(value: object) -> str | None:
    """An enum-like field: None when absent or empty; a non-string shown as its repr."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    return shown(value)


def _message(value: object) -> str:
    return value if isinstance(value, str) else ""


def _positive_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _epoch_ms(value: object) -> int | None:
    # end_time is 0 while a run is running, start_time 0 for a task that never started (§4).
    return _positive_int(value)


def _duration_ms(run_duration: object, start_ms: int | None, end_ms: int | None) -> int | None:
    duration = _positive_int(run_duration)
    if duration is not None:
        return duration
    if start_ms is not None and end_ms is not None and end_ms >= start_ms:
        return end_ms - start_ms
    return None
