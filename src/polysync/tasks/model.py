"""Task and TaskRun records, their checks, and the dispatch rules (priority, concurrency cap).

A **Task** is a configured instance of a Job: pinned parameter values (literal, or mapped from an
upstream Task's run, `mapping`), schedules, upstream dependencies, a retry policy, an execution
timeout, a priority and a concurrency cap. A **TaskRun** is one attempt chain of a Task; each
attempt starts (or repairs) one Polysync Run, and so one Databricks run. docs/tasks.md.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from polysync.domain.limits import (
    MAX_NAME_CHARS,
    MAX_PARAMETERS_PER_RUN,
    check_description,
    check_name,
    check_parameter_value,
    check_text,
)
from polysync.domain.models import DataType, Parameter
from polysync.domain.parameters import resolve_run_parameters
from polysync.domain.text import shown
from polysync.errors import TaskDefinitionError, UsageError
from polysync.tasks.dependencies import Dependency, check_dependencies
from polysync.tasks.mapping import check_mapping
from polysync.tasks.retry import RetryPolicy, strategy_for
from polysync.tasks.schedule import Schedule
from polysync.tasks.states import TaskRunStatus, TriggerType, check_transition

MIN_PRIORITY = 0
MAX_PRIORITY = 100
DEFAULT_PRIORITY = 50
"""Priority orders dispatch among queued TaskRuns: higher first (0..100, default 50)."""
MAX_CONCURRENCY_CAP = 100
"""The most TaskRuns of one Task that may run at once."""
MAX_TIMEOUT_S = 30 * 86_400
"""The longest execution timeout: 30 days."""
MAX_SCHEDULES = 20
"""Schedules one Task may have."""
MAX_TAGS = 50
MAX_TAG_CHARS = 255
# A Task's name appears inside `{{upstream.<task>.<field>}}`: no dots or braces in it.
_NAME_REFUSED = re.compile(r"[.{}]")


class OnOverlap(StrEnum):
    """What a schedule or dependency trigger does when the Task's concurrency cap is reached."""

    QUEUE = "queue"
    """Queue the TaskRun; it starts when a running one ends (the default)."""
    SKIP = "skip"
    """Record the TaskRun as Skipped ("the previous run is still active")."""


class AttemptKind(StrEnum):
    START = "start"
    """A new Run of the Job (the first attempt, or a Restart retry)."""
    REPAIR = "repair"
    """A repair of the previous attempt's Databricks run (`jobs/runs/repair`)."""


@dataclass(frozen=True, slots=True)
class Task:
    """A Task as saved. Build it, then `check_task` it before saving.

    - `name`: unique; no `.`, `{` or `}` (it appears in mapping references). `job_id`: the
      Polysync Job it runs, locked after the first save.
    - `parameters`: {parameter name: value}; a value may hold `{{upstream.<task>.<field>}}`
      references to its upstream Tasks' runs (`mapping`). Unset parameters take the Job's
      stored value or default (D3).
    - `paused`: a paused Task is not triggered by its schedules or dependencies (times passed
      meanwhile are not misfires); Run once still works. `enabled` is `not paused`.
    - `priority`: 0..100, higher dispatches first. `concurrency_cap`: 1..100 running TaskRuns;
      `on_overlap` says what a trigger does beyond it. `timeout_s`: None, or 1..MAX_TIMEOUT_S
      seconds per attempt, after which the run is cancelled and the attempt Failed.
    """

    name: str
    job_id: int
    parameters: Mapping[str, str] = field(default_factory=dict, hash=False)
    paused: bool = False
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)
    priority: int = DEFAULT_PRIORITY
    concurrency_cap: int = 1
    on_overlap: OnOverlap = OnOverlap.QUEUE
    timeout_s: int | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    schedules: tuple[Schedule, ...] = ()
    dependencies: tuple[Dependency, ...] = ()
    id: int | None = None
    """None until saved."""

    @property
    def enabled(self) -> bool:
        return not self.paused

    @property
    def upstreams(self) -> tuple[str, ...]:
        return tuple(edge.upstream for edge in self.dependencies)


def check_task(
    task: Task,
    *,
    job_type: str,
    job_parameters: Sequence[Parameter] | None = None,
    task_names: Iterable[str] = (),
    upstream_parameters: Mapping[str, Iterable[str]] | None = None,
    secret_parameters: Mapping[str, Iterable[str]] | None = None,
    previous: Task | None = None,
) -> Task:
    """`task` unchanged when it can be saved, else TaskDefinitionError naming the field, what is
    wrong and the fix.

    `job_type`: the Job's Job Type (the retry strategy must suit it). `job_parameters`: the
    Job's parameters; a Task's value obeys the rules of a run's override (D2, D3: job-level,
    not Output, not internal, and a literal value fits its Data Type; a mapped value is typed
    when it is rendered, and a Secret parameter cannot be mapped). None skips those checks.
    `task_names`: every other Task's name (upstreams must exist, the name must be free).
    `upstream_parameters`/`secret_parameters`: {upstream: its Job's parameter names / Secret
    parameter names}, for mappings (`mapping.check_mapping`). `previous`: the saved Task when
    editing (its Job cannot change). Loops across Tasks are `dependencies.check_acyclic`'s.
    """
    others = set(task_names)
    name = _check_task_name(task.name)
    renamed = previous is None or previous.name != name
    if renamed and name in others:
        raise TaskDefinitionError(
            f"A Task named {name!r} already exists. Choose another name.", field="name"
        )
    if previous is not None and previous.job_id != task.job_id:
        raise TaskDefinitionError(
            f"Task {name!r} runs Job {previous.job_id}; a Task's Job cannot change after it is "
            "saved. Create a new Task for the other Job.",
            field="job_id",
        )
    if isinstance(task.job_id, bool) or not isinstance(task.job_id, int) or task.job_id < 1:
        raise TaskDefinitionError(
            f"The Task's Job id {shown(task.job_id)} is not a Job id.", field="job_id"
        )
    with _field("description"):
        check_description(task.description, field="The Task's description")
    with _field("tags"):
        _check_tags(task.tags)
    _check_int(task.priority, "priority", MIN_PRIORITY, MAX_PRIORITY, "higher dispatches first")
    _check_int(task.concurrency_cap, "concurrency_cap", 1, MAX_CONCURRENCY_CAP, "running at once")
    if not isinstance(task.on_overlap, OnOverlap):
        raise TaskDefinitionError(
            f"The Task's on-overlap setting {shown(task.on_overlap)} is not queue or skip.",
            field="on_overlap",
        )
    if task.timeout_s is not None:
        _check_int(task.timeout_s, "timeout_s", 1, MAX_TIMEOUT_S, "seconds per attempt")
    strategy_for(task.retry, job_type)
    if len(task.schedules) > MAX_SCHEDULES:
        raise TaskDefinitionError(
            f"The Task has {len(task.schedules)} schedules; the limit is {MAX_SCHEDULES}.",
            field="schedules",
        )
    _check_distinct_schedules(task.schedules)
    check_dependencies(name, task.dependencies, others)
    _check_parameters(task, job_parameters, upstream_parameters, secret_parameters)
    return task


def _check_distinct_schedules(schedules: tuple[Schedule, ...]) -> None:
    """TaskDefinitionError naming `schedules[i]` when schedule i repeats an earlier one's
    expression, time zone and dates (its fires would be the same: recorded once, a doubt)."""
    seen: dict[tuple[object, ...], int] = {}
    for index, schedule in enumerate(schedules):
        key = (schedule.cron, schedule.timezone, schedule.starts_at, schedule.ends_at)
        if key in seen:
            raise TaskDefinitionError(
                f"Schedule {index} repeats schedule {seen[key]} ({schedule.cron!r} in "
                f"{schedule.timezone}): a fire time is recorded once per Task, so remove one.",
                field=f"schedules[{index}]",
            )
        seen[key] = index


# --- TaskRuns -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskRunEvent:
    """One recorded status change of a TaskRun (its status history)."""

    at: datetime
    status: TaskRunStatus
    message: str = ""
    attempt: int | None = None
    """The attempt it concerns, when one does."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a TaskRun: the Polysync Run it started or repaired."""

    number: int
    """1-based."""
    kind: AttemptKind
    started_at: datetime
    run_id: int | None = None
    """Our Run's id (`Run.id`); its `run_id` field is the Databricks RunId."""
    ended_at: datetime | None = None
    status: TaskRunStatus | None = None
    """How the attempt ended: Succeeded, Failed or Cancelled; None while it runs."""
    message: str = ""


@dataclass(frozen=True, slots=True)
class TaskRun:
    """One attempt chain of a Task.

    `scheduled_for`: the fire time (Schedule), the cycle key (Dependency, see
    `DownstreamDecision.cycle_key`), or the request time (Manual, Retry); unique per Task.
    `priority` is the Task's when queued. `next_attempt_at`: when the next attempt may start,
    while a retry waits its delay.
    """

    task_id: int
    trigger: TriggerType
    scheduled_for: datetime
    queued_at: datetime
    status: TaskRunStatus = TaskRunStatus.QUEUED
    priority: int = DEFAULT_PRIORITY
    started_at: datetime | None = None
    ended_at: datetime | None = None
    attempts: tuple[Attempt, ...] = ()
    history: tuple[TaskRunEvent, ...] = ()
    message: str = ""
    next_attempt_at: datetime | None = None
    retry_of: int | None = None
    """The TaskRun this one retries (trigger Retry)."""
    id: int | None = None
    next_attempt_kind: AttemptKind | None = None
    """While a retry waits: whether it repairs the run or starts a new one (the retry policy's
    strategy when the attempt ended)."""


def new_task_run(
    task: Task,
    trigger: TriggerType,
    scheduled_for: datetime,
    at: datetime,
    *,
    status: TaskRunStatus = TaskRunStatus.QUEUED,
    message: str = "",
    retry_of: int | None = None,
) -> TaskRun:
    """A TaskRun of a saved Task, created Queued (or Skipped), with its first history event."""
    if task.id is None:
        raise ValueError("the Task must be saved (have an id) before it runs")
    if status not in (TaskRunStatus.QUEUED, TaskRunStatus.SKIPPED):
        raise ValueError(f"a TaskRun starts Queued or Skipped, not {status}")
    if (trigger is TriggerType.RETRY) != (retry_of is not None):
        raise ValueError("retry_of is given exactly when the trigger is Retry")
    ended = at if status is TaskRunStatus.SKIPPED else None
    return TaskRun(
        task_id=task.id,
        trigger=trigger,
        scheduled_for=scheduled_for,
        queued_at=at,
        status=status,
        priority=task.priority,
        ended_at=ended,
        history=(TaskRunEvent(at, status, message),),
        message=message,
        retry_of=retry_of,
    )


def advance(
    task_run: TaskRun,
    status: TaskRunStatus,
    at: datetime,
    message: str = "",
    *,
    repair: bool = False,
) -> TaskRun:
    """`task_run` moved to `status` at `at`, with the change in its history; the start and end
    times follow, and a running attempt ends with a terminal status. TaskRunTransitionError
    when the change is not allowed (`states`). `repair` reopens a Failed or Cancelled TaskRun as
    Running (D6 as amended): its end time clears and the history keeps the earlier outcome."""
    check_transition(task_run.status, status, repair=repair)
    started_at = task_run.started_at
    if status is TaskRunStatus.RUNNING and started_at is None:
        started_at = at
    ended_at = at if status.is_terminal else None
    event_message = message or ("reopened by a repair" if repair else "")
    attempts = task_run.attempts
    if status.is_terminal and attempts and attempts[-1].ended_at is None:
        # The TaskRun cannot end while its attempt runs on: the attempt ends with it.
        closed = replace(attempts[-1], ended_at=at, status=status, message=event_message)
        attempts = (*attempts[:-1], closed)
    return replace(
        task_run,
        attempts=attempts,
        status=status,
        started_at=started_at,
        ended_at=ended_at,
        message=event_message or task_run.message,
        next_attempt_at=None if status.is_terminal else task_run.next_attempt_at,
        next_attempt_kind=None if status.is_terminal else task_run.next_attempt_kind,
        history=(
            *task_run.history,
            TaskRunEvent(at, status, event_message, len(task_run.attempts) or None),
        ),
    )


def timeout_message(timeout_s: int) -> str:
    """The message of an attempt the execution timeout ended (issue 12)."""
    return f"timed out after {timeout_s} s"


def timed_out(attempt: Attempt, timeout_s: int | None, now: datetime) -> bool:
    """Whether a running attempt has passed the Task's execution timeout at `now`."""
    if timeout_s is None or attempt.ended_at is not None:
        return False
    return (now - attempt.started_at).total_seconds() >= timeout_s


# --- Dispatch -------------------------------------------------------------------------------


def dispatch_order(queued: Iterable[TaskRun]) -> list[TaskRun]:
    """Queued TaskRuns in the order they should start: higher priority first, then the
    earlier scheduled-for, the earlier queued, the lower id (a total, stable order)."""
    return sorted(
        (run for run in queued if run.status is TaskRunStatus.QUEUED),
        key=lambda run: (
            -run.priority,
            run.scheduled_for,
            run.queued_at,
            run.id if run.id is not None else math.inf,
        ),
    )


def pick_to_start(
    queued: Iterable[TaskRun],
    running_per_task: Mapping[int, int],
    caps: Mapping[int, int],
    slots: int,
    now: datetime,
) -> list[TaskRun]:
    """Which queued TaskRuns to start now, in `dispatch_order`: at most `slots` of them (the
    engine's free capacity), none of a Task already at its cap (`caps` = {task id: cap};
    `running_per_task` counts Running TaskRuns), none whose retry delay has not passed. A
    TaskRun skipped for its Task's cap does not block lower-priority TaskRuns of other Tasks."""
    if slots <= 0:
        return []
    running = dict(running_per_task)
    chosen: list[TaskRun] = []
    for run in dispatch_order(queued):
        if run.next_attempt_at is not None and run.next_attempt_at > now:
            continue
        if running.get(run.task_id, 0) >= caps.get(run.task_id, 1):
            continue
        chosen.append(run)
        running[run.task_id] = running.get(run.task_id, 0) + 1
        if len(chosen) == slots:
            break
    return chosen


def overlap_status(task: Task, active: int) -> TaskRunStatus:
    """The status a new triggered TaskRun starts in when `active` TaskRuns of its Task are
    Queued or Running: Queued while under the cap or when on-overlap is queue, else Skipped.
    (Run once by a user always queues.)"""
    if active < task.concurrency_cap or task.on_overlap is OnOverlap.QUEUE:
        return TaskRunStatus.QUEUED
    return TaskRunStatus.SKIPPED


# --- Checks ---------------------------------------------------------------------------------


def _check_task_name(name: object) -> str:
    if not isinstance(name, str):
        raise TaskDefinitionError(f"The Task's name must be text, not {type(name).__name__}.")
    try:
        check_name(name, field="The Task's name", max_chars=MAX_NAME_CHARS)
    except UsageError as exc:
        raise TaskDefinitionError(exc.message, field="name") from None
    if name != name.strip():
        raise TaskDefinitionError(
            f"The Task's name {shown(name)} starts or ends with spaces. Remove them.", field="name"
        )
    refused = _NAME_REFUSED.search(name)
    if refused is not None:
        raise TaskDefinitionError(
            f"The Task's name {shown(name)} contains {refused.group()!r}, which would break "
            "{{upstream.<task>.<field>}} references. Use letters, digits, spaces, '-' or '_'.",
            field="name",
        )
    return name


def _check_tags(tags: Mapping[str, str]) -> None:
    if len(tags) > MAX_TAGS:
        raise TaskDefinitionError(
            f"The Task has {len(tags)} tags; the limit is {MAX_TAGS}.", field="tags"
        )
    for key, value in tags.items():
        check_text(key, field="A tag name", max_chars=MAX_TAG_CHARS, required=True)
        check_text(value, field=f"Tag {shown(key)}", max_chars=MAX_TAG_CHARS)


def _check_int(value: object, name: str, low: int, high: int, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TaskDefinitionError(
            f"The Task's {name} {shown(value)} must be a whole number from {low} to {high} "
            f"({meaning}).",
            field=name,
        )


def _check_parameters(
    task: Task,
    job_parameters: Sequence[Parameter] | None,
    upstream_parameters: Mapping[str, Iterable[str]] | None,
    secret_parameters: Mapping[str, Iterable[str]] | None,
) -> None:
    if len(task.parameters) > MAX_PARAMETERS_PER_RUN:
        raise TaskDefinitionError(
            f"The Task sets {len(task.parameters)} parameters; the limit is "
            f"{MAX_PARAMETERS_PER_RUN}.",
            field="parameters",
        )
    uppers = _frozen(upstream_parameters)
    secrets = _frozen(secret_parameters)
    upstreams: Sequence[str] = task.upstreams
    for name, value in task.parameters.items():
        where = f"parameters.{name}"
        if not isinstance(value, str):
            raise TaskDefinitionError(
                f"The value of parameter {shown(name)} must be text, not {type(value).__name__}.",
                field=where,
            )
        with _field(where):
            check_parameter_value(name, value)
        mapped = bool(
            check_mapping(
                value,
                parameter=name,
                upstreams=upstreams,
                upstream_parameters=uppers,
                secret_parameters=secrets,
            )
        )
        if job_parameters is not None:
            _check_as_override(name, value, mapped, job_parameters)


def _check_as_override(
    name: str, value: str, mapped: bool, job_parameters: Sequence[Parameter]
) -> None:
    """A Task's value is a run's override: the same rules, once, in `resolve_run_parameters`."""
    where = f"parameters.{name}"
    if mapped:
        if any(p.name == name and p.data_type is DataType.SECRET for p in job_parameters):
            raise TaskDefinitionError(
                f"Parameter {shown(name)} is a Secret: its value is a secret reference, which "
                "cannot come from an upstream run. Give the reference itself.",
                field=where,
            )
        # Its Data Type is checked once the value is rendered; here only its name's rules.
        job_parameters = [
            replace(p, data_type=DataType.STRING) if p.name == name else p for p in job_parameters
        ]
    with _field(where):
        resolve_run_parameters(job_parameters, {name: value})


@contextlib.contextmanager
def _field(name: str) -> Iterator[None]:
    """A text-limit UsageError from the shared checks, as a TaskDefinitionError naming `name`."""
    try:
        yield
    except TaskDefinitionError:
        raise
    except UsageError as exc:
        raise TaskDefinitionError(exc.message, field=name) from None


def _frozen(names: Mapping[str, Iterable[str]] | None) -> dict[str, frozenset[str]] | None:
    return None if names is None else {key: frozenset(values) for key, values in names.items()}
