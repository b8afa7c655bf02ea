"""Request and response bodies of the Task routes, and the requests turned into Task records.

The bodies only bound sizes and types; every rule of a Task is `check_task`'s, run once by the
services when it is saved (a TaskDefinitionError names the field: 422). docs/tasks.md, docs/api.md.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from polysync.api.schemas import Description, ParameterName, ParameterValue
from polysync.domain.limits import MAX_PARAMETERS_PER_RUN
from polysync.errors import ScheduleError, TaskDefinitionError
from polysync.tasks.dependencies import MAX_UPSTREAMS, Condition, Dependency
from polysync.tasks.model import (
    DEFAULT_PRIORITY,
    MAX_SCHEDULES,
    MAX_TAGS,
    AttemptKind,
    OnOverlap,
    Task,
)
from polysync.tasks.retry import Backoff, RetryPolicy, RetryStrategy
from polysync.tasks.schedule import (
    DEFAULT_MISFIRE_CAP,
    DEFAULT_TIMEZONE,
    MAX_PREVIEW,
    MisfirePolicy,
    Schedule,
)
from polysync.tasks.states import TaskRunStatus, TriggerType

# Generous bounds: the domain's own checks say what is wrong (a name of 201 characters, a cron
# of 300); these only stop a request from making the server hold megabytes of one field.
_Text = Annotated[str, Field(max_length=1_000)]
_TagText = Annotated[str, Field(max_length=1_000)]
_Seconds = Annotated[float, Field(allow_inf_nan=False)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class ScheduleIn(_In):
    cron: _Text = Field(
        description="Five fields `minute hour day-of-month month day-of-week`, or @hourly, "
        "@daily, @weekly, @monthly, @yearly; Quartz expressions are refused with their "
        "five-field form."
    )
    timezone: _Text = Field(DEFAULT_TIMEZONE, description="An IANA name, e.g. Europe/London.")
    starts_at: datetime | None = Field(None, description="Inclusive; with a time zone.")
    ends_at: datetime | None = Field(None, description="Inclusive; with a time zone.")
    paused: StrictBool = False
    misfire_policy: MisfirePolicy = MisfirePolicy.RUN_LATEST
    misfire_cap: StrictInt = Field(DEFAULT_MISFIRE_CAP, description="run-all: at most this many.")

    def to_schedule(self, position: int) -> Schedule:
        """The Schedule; ScheduleError naming `schedules[position].<field>`."""
        try:
            return Schedule(
                cron=self.cron,
                timezone=self.timezone,
                starts_at=self.starts_at,
                ends_at=self.ends_at,
                paused=self.paused,
                misfire_policy=self.misfire_policy,
                misfire_cap=self.misfire_cap,
            )
        except ScheduleError as exc:
            where = f"schedules[{position}]" + (f".{exc.field}" if exc.field else "")
            raise ScheduleError(exc.message, field=where) from None


class DependencyIn(_In):
    upstream: _Text = Field(description="The upstream Task's name.")
    condition: Condition = Condition.ON_SUCCESS


class RetryIn(_In):
    enabled: StrictBool = False
    max_attempts: StrictInt = Field(3, description="Attempts in all, the first included.")
    backoff: Backoff = Backoff.EXPONENTIAL
    initial_delay_s: _Seconds = 60.0
    max_delay_s: _Seconds = 3600.0
    strategy: RetryStrategy | None = Field(
        None, description="Repair or Restart; null: Repair for Databricks Workflow, else Restart."
    )

    def to_policy(self) -> RetryPolicy:
        return RetryPolicy(
            enabled=self.enabled,
            max_attempts=self.max_attempts,
            backoff=self.backoff,
            initial_delay_s=self.initial_delay_s,
            max_delay_s=self.max_delay_s,
            strategy=self.strategy,
        )


_Parameters = Annotated[
    dict[ParameterName, ParameterValue],
    Field(
        max_length=MAX_PARAMETERS_PER_RUN,
        description="Values by parameter name; a value may map an upstream run's fact: "
        "`{{upstream.<task>.<field>}}` (run_id, run_page_url, status, start_time, end_time, "
        "scheduled_for, parameters.<name>).",
    ),
]
_Tags = Annotated[dict[_TagText, _TagText], Field(max_length=MAX_TAGS * 2)]
_Schedules = Annotated[list[ScheduleIn], Field(max_length=MAX_SCHEDULES * 5)]
_Dependencies = Annotated[list[DependencyIn], Field(max_length=MAX_UPSTREAMS * 5)]


class TaskIn(_In):
    name: _Text
    job_id: StrictInt = Field(description="The Polysync Job it runs; cannot change later.")
    parameters: _Parameters = Field(default_factory=dict)
    paused: StrictBool = False
    description: Description = ""
    tags: _Tags = Field(default_factory=dict)
    priority: StrictInt = Field(DEFAULT_PRIORITY, description="0..100, higher dispatches first.")
    concurrency_cap: StrictInt = Field(1, description="TaskRuns running at once, 1..100.")
    on_overlap: OnOverlap = Field(OnOverlap.QUEUE, description="At the cap: queue or skip.")
    timeout_s: StrictInt | None = Field(None, description="Per attempt; null: none.")
    retry: RetryIn = Field(default_factory=RetryIn)
    schedules: _Schedules = Field(default_factory=list)
    dependencies: _Dependencies = Field(default_factory=list)

    def to_task(self) -> Task:
        """The Task to save (not yet checked: the services run `check_task`)."""
        return Task(
            name=self.name,
            job_id=self.job_id,
            parameters=dict(self.parameters),
            paused=self.paused,
            description=self.description,
            tags=dict(self.tags),
            priority=self.priority,
            concurrency_cap=self.concurrency_cap,
            on_overlap=self.on_overlap,
            timeout_s=self.timeout_s,
            retry=_policy(self.retry),
            schedules=tuple(s.to_schedule(i) for i, s in enumerate(self.schedules)),
            dependencies=tuple(Dependency(d.upstream, d.condition) for d in self.dependencies),
        )


class TaskUpdate(_In):
    """Fields left out are kept; a list or map given replaces the whole of it; `timeout_s`:
    null clears it. `job_id` may be sent only unchanged (a Task's Job is locked)."""

    name: _Text | None = None
    job_id: StrictInt | None = None
    parameters: _Parameters | None = None
    paused: StrictBool | None = None
    description: Description | None = None
    tags: _Tags | None = None
    priority: StrictInt | None = None
    concurrency_cap: StrictInt | None = None
    on_overlap: OnOverlap | None = None
    timeout_s: StrictInt | None = None
    retry: RetryIn | None = None
    schedules: _Schedules | None = None
    dependencies: _Dependencies | None = None

    def apply(self, task: Task) -> Task:
        """`task` with the fields this update sets."""
        changes: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "timeout_s":
                changes[name] = value
            elif value is None:
                raise TaskDefinitionError(
                    f"{name} cannot be null: leave it out to keep it.", field=name
                )
            elif name == "retry":
                changes[name] = _policy(value)
            elif name == "schedules":
                changes[name] = tuple(s.to_schedule(i) for i, s in enumerate(value))
            elif name == "dependencies":
                changes[name] = tuple(Dependency(d.upstream, d.condition) for d in value)
            elif name in ("parameters", "tags"):
                changes[name] = dict(value)
            else:
                changes[name] = value
        return replace(task, **changes)


def _policy(retry: RetryIn) -> RetryPolicy:
    return retry.to_policy()


class ScheduleOut(BaseModel):
    cron: str
    timezone: str
    starts_at: datetime | None
    ends_at: datetime | None
    paused: bool
    misfire_policy: MisfirePolicy
    misfire_cap: int
    next_fire_at: datetime | None = Field(description="Null when paused or ended.")


class DependencyOut(BaseModel):
    upstream: str
    upstream_task_id: int | None
    condition: Condition


class RetryOut(BaseModel):
    enabled: bool
    max_attempts: int
    backoff: Backoff
    initial_delay_s: float
    max_delay_s: float
    strategy: RetryStrategy | None


class TaskRunSummary(BaseModel):
    id: int
    task_id: int
    trigger: TriggerType
    scheduled_for: datetime = Field(
        description="The fire time (Schedule), the cycle key (Dependency), or when it was asked "
        "(Manual, Retry)."
    )
    status: TaskRunStatus
    terminal: bool
    priority: int
    queued_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    next_attempt_at: datetime | None = Field(description="While a retry waits its delay.")
    retry_of: int | None
    message: str
    attempt_count: int
    run_id: int | None = Field(
        description="The Polysync run of the latest attempt (`/api/v1/runs/{run_id}`)."
    )


class AttemptOut(BaseModel):
    number: int
    kind: AttemptKind
    run_id: int | None = Field(description="The Polysync run it started or repaired.")
    started_at: datetime
    ended_at: datetime | None
    status: TaskRunStatus | None
    message: str


class TaskRunEventOut(BaseModel):
    at: datetime
    status: TaskRunStatus
    message: str
    attempt: int | None


class TaskRunOut(TaskRunSummary):
    attempts: list[AttemptOut]
    events: list[TaskRunEventOut] = Field(description="Status history, oldest first.")


class TaskOut(BaseModel):
    id: int
    name: str
    job_id: int
    parameters: dict[str, str] = Field(
        description="A Secret parameter's value shows as its reference (`env:NAME`), or masked."
    )
    paused: bool
    enabled: bool
    description: str
    tags: dict[str, str]
    priority: int
    concurrency_cap: int
    on_overlap: OnOverlap
    timeout_s: int | None
    retry: RetryOut
    schedules: list[ScheduleOut]
    dependencies: list[DependencyOut]
    next_fire_at: datetime | None = Field(description="The earliest next fire of its schedules.")
    last_run: TaskRunSummary | None


class PreviewScheduleOut(BaseModel):
    position: int
    cron: str
    timezone: str
    paused: bool = Field(description="A paused schedule previews as if resumed.")
    fire_times: list[datetime]


class PreviewOut(BaseModel):
    task_id: int | None
    fire_times: list[datetime] = Field(
        description="The Task's next fire times, all schedules merged (a time two schedules "
        "share counts once: one TaskRun), earliest first."
    )
    schedules: list[PreviewScheduleOut]


class SchedulePreviewIn(_In):
    """An unsaved schedule to preview (the editor's Scheduling tab)."""

    schedules: Annotated[list[ScheduleIn], Field(min_length=1, max_length=MAX_SCHEDULES)]
    count: StrictInt = Field(10, ge=1, le=MAX_PREVIEW)
