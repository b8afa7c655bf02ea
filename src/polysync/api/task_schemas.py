"""Request and response bodies of the Task and TaskRun routes (pydantic at the edge).

The request bodies only bound sizes and types, for the OpenAPI document: they reach the services
as the Task's JSON shape, whose rules (`parse_task`, `check_task`) run once there (a
TaskDefinitionError names the field: 422). The responses are the shapes of `polysync.shapes`,
shared with `polysync tasks ... --json`. docs/tasks.md, docs/api.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from polysync.api.schemas import Description, ParameterName, ParameterValue
from polysync.domain.limits import MAX_PARAMETERS_PER_RUN
from polysync.shapes import (
    fire_time_fields,
    polysync_task_fields,
    taskrun_fields,
    taskrun_summary_fields,
)
from polysync.task_services import FireTime, TaskSummary
from polysync.tasks.dependencies import MAX_UPSTREAMS, Condition
from polysync.tasks.model import (
    DEFAULT_PRIORITY,
    MAX_SCHEDULES,
    MAX_TAGS,
    AttemptKind,
    OnOverlap,
    TaskRun,
)
from polysync.tasks.retry import Backoff, RetryStrategy
from polysync.tasks.schedule import DEFAULT_MISFIRE_CAP, DEFAULT_TIMEZONE, MisfirePolicy
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
    job: StrictInt | _Text | None = Field(
        None, description="The Job it runs, by id, External Id or name (or give `job_id`)."
    )
    job_id: StrictInt | None = Field(
        None, description="The Polysync Job it runs; cannot change after the Task is saved."
    )
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

    def to_data(self) -> dict[str, Any]:
        """The Task's JSON shape, as the services read it (`parse_task`)."""
        return self.model_dump(mode="json", exclude_unset=True)


class TaskUpdate(_In):
    """Fields left out are kept; a list or map given replaces the whole of it; `timeout_s`:
    null clears it. `job`/`job_id` may be sent only unchanged (a Task's Job is locked)."""

    name: _Text | None = None
    job: StrictInt | _Text | None = None
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

    def to_changes(self) -> dict[str, Any]:
        """The fields sent, as the services read them (`TaskServices.edit`)."""
        return self.model_dump(mode="json", exclude_unset=True)


class ScheduleOut(BaseModel):
    cron: str
    timezone: str
    starts_at: datetime | None
    ends_at: datetime | None
    paused: bool
    misfire_policy: MisfirePolicy
    misfire_cap: int


class DependencyOut(BaseModel):
    upstream: str = Field(description="The upstream Task's name.")
    condition: Condition


class RetryOut(BaseModel):
    enabled: bool
    max_attempts: int
    backoff: Backoff
    initial_delay_s: float
    max_delay_s: float
    strategy: RetryStrategy | None


class TaskJobOut(BaseModel):
    id: int
    name: str
    job_type: str
    platform_id: int


class AttemptOut(BaseModel):
    number: int
    kind: AttemptKind
    run_id: int | None = Field(
        description="The Polysync run it started or repaired (`/api/v1/runs/{run_id}`)."
    )
    started_at: datetime
    ended_at: datetime | None
    status: TaskRunStatus | None
    message: str


class TaskRunSummary(BaseModel):
    id: int
    task_id: int
    trigger: TriggerType
    scheduled_for: datetime = Field(
        description="The fire time (Schedule), the cycle key (Dependency), or when it was asked "
        "(Manual, Retry)."
    )
    status: TaskRunStatus
    priority: int
    queued_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    next_attempt_at: datetime | None = Field(description="While a retry waits its delay.")
    retry_of: int | None
    message: str
    attempts: list[AttemptOut]

    @classmethod
    def of(cls, task_run: TaskRun) -> TaskRunSummary:
        return cls(**taskrun_summary_fields(task_run))


class TaskRunEventOut(BaseModel):
    at: datetime
    status: TaskRunStatus
    message: str
    attempt: int | None


class TaskRunOut(TaskRunSummary):
    events: list[TaskRunEventOut] = Field(description="Status history, oldest first.")

    @classmethod
    def of_run(cls, task_run: TaskRun) -> TaskRunOut:
        return cls(**taskrun_fields(task_run))


class TaskOut(BaseModel):
    id: int
    name: str
    job_id: int
    parameters: dict[str, str]
    paused: bool
    enabled: bool = Field(description="`not paused`.")
    description: str
    tags: dict[str, str]
    priority: int
    concurrency_cap: int
    on_overlap: OnOverlap
    timeout_s: int | None
    retry: RetryOut
    schedules: list[ScheduleOut]
    dependencies: list[DependencyOut]
    job: TaskJobOut | None
    next_fire: datetime | None = Field(
        description="The earliest next fire of its schedules; null when paused or none is due."
    )
    last_run: TaskRunSummary | None

    @classmethod
    def of(cls, summary: TaskSummary) -> TaskOut:
        return cls(**polysync_task_fields(summary))


class FireTimeOut(BaseModel):
    at: datetime
    schedule: int = Field(description="The schedule's position in `schedules` (0-based).")


class PreviewOut(BaseModel):
    fire_times: list[FireTimeOut] = Field(
        description="The next fire times, all schedules merged, earliest first; a paused "
        "schedule or Task previews as if resumed."
    )

    @classmethod
    def of(cls, fires: list[FireTime]) -> PreviewOut:
        return cls(fire_times=[FireTimeOut(**fire_time_fields(f)) for f in fires])


class SchedulePreviewIn(_In):
    """Schedules not saved yet, to preview (the editor's Scheduling tab)."""

    schedules: Annotated[list[ScheduleIn], Field(min_length=1, max_length=MAX_SCHEDULES)]
