"""Domain records every job type shares: parameters, imported jobs, run statuses and snapshots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class DataType(StrEnum):
    """The Data Type of a Polysync parameter."""

    STRING = "String"
    SECRET = "Secret"  # noqa: S105 - the name of a Data Type, not a password
    INT = "Int"
    FLOAT = "Float"
    BOOL = "Bool"
    JSON = "JSON"
    JSON_ARRAY = "JsonArray"


class Direction(StrEnum):
    """Which way a parameter flows; a parameter whose Direction is unset (None) behaves as Input."""

    INPUT = "Input"
    OUTPUT = "Output"
    INPUT_OUTPUT = "Input&Output"


JobTypeName = str
"""A Job Type's name as users see it ("Databricks Workflow", "Databricks Pipeline", ...): the key
of the job-type registry (polysync.jobtypes.base.JobTypeRegistry); opaque to the domain."""

DEFAULT_PARAMETER_SOURCE = "parameters"
"""Where a parameter definition was read, as its job type names it (e.g. Databricks'
`notebook_task.base_parameters`, a notebook widget); opaque to the domain."""


@dataclass(frozen=True, slots=True)
class ParameterScope:
    """Where a parameter lives: the job level (task_key None) or one task."""

    task_key: str | None = None

    @property
    def is_job_level(self) -> bool:
        return self.task_key is None

    def __str__(self) -> str:
        return "job level" if self.task_key is None else f"task {self.task_key!r}"


@dataclass(frozen=True, slots=True)
class Parameter:
    """One parameter of a Polysync Job, as imported from its platform plus what the user set on it."""

    name: str
    data_type: DataType = DataType.STRING
    default: str | None = None
    direction: Direction | None = None
    task_key: str | None = None
    source: str = DEFAULT_PARAMETER_SOURCE
    stored_value: str | None = None
    reference_only: bool = False
    """Imported for reference only, never sent (e.g. a pipeline's `spec.configuration` key, D11)."""
    choices: tuple[str, ...] = ()
    """The values the platform allows (a notebook dropdown widget's), empty when any value goes."""

    @property
    def key(self) -> tuple[str, str | None]:
        """Identity within a Job: the same name may exist at job level and on several tasks."""
        return (self.name, self.task_key)

    @property
    def scope(self) -> ParameterScope:
        return ParameterScope(self.task_key)

    @property
    def is_job_level(self) -> bool:
        return self.task_key is None

    @property
    def is_internal(self) -> bool:
        """Names starting with `_` are internal and never sent (D3)."""
        return self.name.startswith("_")

    @property
    def effective_direction(self) -> Direction:
        return self.direction or Direction.INPUT

    @property
    def is_sent(self) -> bool:
        """Whether a run sends this parameter (D3): job level, not internal, not Output."""
        return (
            self.is_job_level
            and not self.is_internal
            and not self.reference_only
            and self.effective_direction is not Direction.OUTPUT
        )


@dataclass(frozen=True, slots=True)
class ImportedJob:
    """What a job type's import reads of one job on its platform: identity, Job Type and
    parameter schema. `task_count` and `task_keys` describe its units (0 / () when it has none)."""

    external_id: str
    name: str
    kind: JobTypeName
    task_count: int
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)
    task_keys: tuple[str, ...] = ()
    parameters: tuple[Parameter, ...] = ()


JobSchema = ImportedJob


@dataclass(frozen=True, slots=True)
class ParameterChange:
    """A parameter present before and after Sync Parameters whose definition changed (D9)."""

    old: Parameter
    new: Parameter
    fields: tuple[str, ...]
    """Which of "default", "data_type", "scope" changed, in that order."""

    @property
    def name(self) -> str:
        return self.new.name


@dataclass(frozen=True, slots=True)
class ParameterDiff:
    """What Sync Parameters changed in a Job's schema (D9)."""

    added: tuple[Parameter, ...] = ()
    removed: tuple[Parameter, ...] = ()
    changed: tuple[ParameterChange, ...] = ()
    kind_changed: tuple[JobTypeName, JobTypeName] | None = None
    """(old, new) when the Job Type changes (e.g. a Databricks job's task count crossed 1, D9)."""
    unfit_stored_values: tuple[Parameter, ...] = ()
    """Kept parameters whose stored value no longer fits their Data Type: a run would refuse it."""

    @property
    def is_empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.changed
            or self.kind_changed
            or self.unfit_stored_values
        )


class RunStatus(StrEnum):
    """A Polysync run status, decoded by each job type from its platform's answer (D6, D11)."""

    STARTING = "Starting"
    QUEUED = "Queued"  # held back by a contention profile before its start (D14)
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    UNKNOWN = "Unknown"

    @property
    def is_terminal(self) -> bool:
        """Success, Failed and Cancelled never change again, except by a repair (D6 as amended
        by D13); Unknown keeps polling (D6)."""
        return self in _TERMINAL

    @property
    def is_repairable(self) -> bool:
        """Failed and Cancelled runs may be repaired (D13): a repair reopens them as Running."""
        return self in _REPAIRABLE

    def may_follow(self, previous: RunStatus, *, repair: bool = False) -> bool:
        """Whether the status history may go from `previous` to this status (D6, D13).

        History only moves forward: Starting/Unknown -> Running -> terminal; a terminal status
        is followed by nothing else. So a stale answer (e.g. Starting, seen before a Running that
        is already recorded) can never be written back. Unknown ranks with Starting: a run seen
        Running stays Running while Databricks reports a state Polysync does not know.

        `repair`: the change is a repair of the run (D13), which reopens a Failed or Cancelled
        run as Running and nothing else; from there the history moves forward again.
        """
        if repair:
            return previous.is_repairable and self is RunStatus.RUNNING
        if previous.is_terminal:
            return self is previous
        return _RANK[self] >= _RANK[previous]


_TERMINAL = frozenset({RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED})
_REPAIRABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELLED})
_RANK = {
    RunStatus.STARTING: 0,
    RunStatus.QUEUED: 0,
    RunStatus.UNKNOWN: 0,
    RunStatus.RUNNING: 1,
    RunStatus.SUCCESS: 2,
    RunStatus.FAILED: 2,
    RunStatus.CANCELLED: 2,
}


@dataclass(frozen=True, slots=True)
class Termination:
    """`status.termination_details` of a run or task run (reference §4 `RunStatus`)."""

    code: str | None = None
    type: str | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class TaskRunState:
    """One attempt of one task of a run, as the last poll saw it."""

    task_key: str
    status: RunStatus
    run_id: int | None = None
    attempt_number: int = 0
    life_cycle_state: str | None = None
    result_state: str | None = None
    state_message: str = ""
    termination: Termination | None = None
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    duration_ms: int | None = None
    run_page_url: str | None = None
    error: str | None = None
    """The task's `runs/get-output` error, merged in by the caller (`with_task_errors`)."""


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """One poll of a run, decoded by its job type: our status, the run message and the per-unit
    (task) states. `life_cycle_state`/`result_state` hold the platform's own state words."""

    status: RunStatus
    message: str = ""
    run_id: str | None = None
    life_cycle_state: str | None = None
    result_state: str | None = None
    state_message: str = ""
    termination: Termination | None = None
    queue_reason: str = ""
    run_page_url: str | None = None
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    duration_ms: int | None = None
    tasks: tuple[TaskRunState, ...] = ()
    """Every task attempt in Databricks' order (a retried task appears once per attempt, §4)."""
    warnings: tuple[str, ...] = ()
    """E.g. an unknown state value; the engine logs each distinct warning once."""

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def latest_attempts(self) -> tuple[TaskRunState, ...]:
        """The last attempt of each task, in first-seen order: the last attempt decides (§4)."""
        latest: dict[str | int, TaskRunState] = {}
        for index, task in enumerate(self.tasks):
            # A task without a task_key cannot be grouped with its retries: keep it on its own.
            group: str | int = task.task_key or index
            current = latest.get(group)
            if current is None or task.attempt_number >= current.attempt_number:
                latest[group] = task
        return tuple(latest.values())

    @property
    def failed_tasks(self) -> tuple[TaskRunState, ...]:
        """Tasks whose last attempt failed, including those an upstream failure skipped."""
        return tuple(t for t in self.latest_attempts() if t.status is RunStatus.FAILED)


def cancel_noop_message(run_id: str | int, status: RunStatus) -> str:
    """What cancelling a run that already ended says (D10: a no-op, whatever the job type)."""
    if not status.is_terminal:
        raise ValueError(f"run {run_id} is {status}, not terminal: it can be cancelled")
    return f"Run {run_id} is already {status}; nothing to cancel."
