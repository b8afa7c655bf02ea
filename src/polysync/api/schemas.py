"""Request and response bodies (pydantic at the edge), and their conversion from domain records.

Secrets never leave: a platform's auth holds only its method, non-secret fields and secret
*references* (the store refuses anything else); a Secret-typed parameter's stored value and the
value a run sent for it are masked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from polysync.domain.limits import (
    MAX_DESCRIPTION_CHARS,
    MAX_EXTERNAL_ID_CHARS,
    MAX_FIELD_CHARS,
    MAX_JOB_NAME_CHARS,
    MAX_NAME_CHARS,
    MAX_PARAMETER_NAME_CHARS,
    MAX_PARAMETER_VALUE_CHARS,
    MAX_PARAMETERS_PER_RUN,
    MAX_URL_CHARS,
    check_parameter_text,
    multi_line,
    single_line,
)
from polysync.domain.models import (
    DataType,
    Direction,
    JobTypeName,
    Parameter,
    ParameterChange,
    ParameterDiff,
    RunStatus,
    TaskRunState,
)
from polysync.domain.parameters import MASK
from polysync.domain.records import AuditEvent, Job, Platform, Run, RunEvent
from polysync.errors import ParameterTextError
from polysync.jobtypes.base import DiscoveredJob
from polysync.shapes import (
    discovered_fields,
    event_fields,
    job_fields,
    parameter_fields,
    platform_fields,
    run_fields,
    run_summary_fields,
    task_fields,
)

_NAME_PATTERN = r"^[^\x00-\x1f\x7f]*$"  # no control characters (documented in the schema)


# Every text field of a request: capped, and refusing control characters (C0, DEL, C1) and lone
# surrogates, through the shared rules of polysync.domain.limits (docs/security.md "Limits").
Name = Annotated[
    str,
    Field(min_length=1, max_length=MAX_NAME_CHARS, pattern=_NAME_PATTERN),
    BeforeValidator(single_line),
]
JobName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_JOB_NAME_CHARS, pattern=_NAME_PATTERN),
    BeforeValidator(single_line),
]
Description = Annotated[str, Field(max_length=MAX_DESCRIPTION_CHARS), BeforeValidator(multi_line)]
Url = Annotated[str, Field(min_length=1, max_length=MAX_URL_CHARS), BeforeValidator(single_line)]
ShortText = Annotated[str, Field(max_length=MAX_FIELD_CHARS), BeforeValidator(single_line)]


def _sendable(what: str) -> Callable[[object], object]:
    """A before-validator with the run's own wording (`check_parameter_text`, D2): a parameter
    name or value that no request to Databricks could carry is refused, naming the character."""

    def check(value: object) -> object:
        if isinstance(value, str):
            try:
                check_parameter_text(value, what=what)
            except ParameterTextError as exc:
                raise ValueError(exc.message) from exc
        return value

    return check


# A parameter name or task key refers to one of the Job's (imported from Databricks, so it may
# hold any text): bounded and sendable here; an unknown one is refused by name when resolved.
ParameterName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_PARAMETER_NAME_CHARS),
    BeforeValidator(_sendable("name")),
]
ParameterValue = Annotated[
    str, Field(max_length=MAX_PARAMETER_VALUE_CHARS), BeforeValidator(_sendable("value"))
]
ExternalIdText = Annotated[
    str, Field(min_length=1, max_length=MAX_EXTERNAL_ID_CHARS), BeforeValidator(single_line)
]
AuthKey = Annotated[str, Field(min_length=1, max_length=100), BeforeValidator(single_line)]
AuthValue = Annotated[str, Field(max_length=MAX_URL_CHARS), BeforeValidator(single_line)]
OptionKey = Annotated[str, Field(min_length=1, max_length=100), BeforeValidator(single_line)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


# ---------------------------------------------------------------------- platforms
AUTH_DESCRIPTION = "`method` plus its fields; secret fields hold `env:NAME` or `file:PATH`."
OPTIONS_DESCRIPTION = (
    "Client settings, each bounded: api_versions, rate_limits (<= 10,000/s), retry "
    "(deadline_s <= 3600, max_attempts <= 100, ...), 1 <= request_timeout_s <= 600, "
    "0.5 <= connect_timeout_s <= 120, max_connections <= 1000, tls_ca_bundle (a readable PEM file); "
    "and `attributes`, a map of text values job types read (default_notebook_path, "
    "spark_version, node_type_id, num_workers, instance_pool_id, serverless: docs/job-types.md)."
)


class PlatformIn(_In):
    name: Name
    workspace_url: Url
    auth: dict[AuthKey, AuthValue | bool | None] = Field(
        max_length=20, description=AUTH_DESCRIPTION
    )
    cluster_id: ShortText | None = None
    description: Description = ""
    options: dict[OptionKey, Any] = Field(
        default_factory=dict, max_length=20, description=OPTIONS_DESCRIPTION
    )


class PlatformUpdate(_In):
    name: Name | None = None
    workspace_url: Url | None = None
    auth: dict[AuthKey, AuthValue | bool | None] | None = Field(
        default=None, max_length=20, description=AUTH_DESCRIPTION
    )
    cluster_id: ShortText | None = None
    description: Description | None = None
    options: dict[OptionKey, Any] | None = Field(
        default=None, max_length=20, description=OPTIONS_DESCRIPTION
    )


class PlatformOut(BaseModel):
    id: int
    name: str
    provider: str
    workspace_url: str
    auth: dict[str, Any] = Field(description="Method, non-secret fields and secret references.")
    auth_method: str
    cluster_id: str | None
    description: str
    options: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, platform: Platform) -> PlatformOut:
        return cls(**platform_fields(platform))


class ConnectivityOut(BaseModel):
    ok: bool
    workspace_url: str
    auth_method: str
    principal: str | None
    workspace_id: str | None
    api_version: str
    jobs_visible: bool


class DiscoveredJobOut(BaseModel):
    external_id: str
    name: str
    kind: JobTypeName = Field(description='The Job Type, e.g. "Databricks Workflow".')
    task_count: int
    tasks_truncated: bool = Field(
        description="task_count is a lower bound: the list cut the tasks and jobs/get failed."
    )
    tags: dict[str, str]
    creator: str | None
    created_time_ms: int | None
    imported_job_id: int | None = Field(description="The Polysync job, if already imported.")

    @classmethod
    def of(cls, job: DiscoveredJob, imported: Mapping[str, int]) -> DiscoveredJobOut:
        return cls(**discovered_fields(job, imported.get(job.external_id)))


class ImportIn(_In):
    external_ids: list[ExternalIdText] | None = Field(
        default=None,
        max_length=10_000,
        description="The jobs to import; omit with all=true. Repeats count once; at most 1,000 "
        "distinct ids per request.",
    )
    all: bool = Field(default=False, description="Import every job Get Pipelines lists.")


class ImportOutcome(BaseModel):
    external_id: str
    job_id: int | None
    created: bool
    error: str | None


class ImportOut(BaseModel):
    imported: int
    failed: int
    results: list[ImportOutcome]


# ---------------------------------------------------------------------- jobs
class ParameterOut(BaseModel):
    name: str
    data_type: DataType
    default: str | None
    direction: Direction | None
    task_key: str | None
    source: str
    stored_value: str | None = Field(
        description=f"A Secret's shows as its reference (`env:NAME`, `file:PATH`), or {MASK!r}."
    )
    sent_at_run_time: bool
    reference_only: bool = Field(description="Imported for reference; never sent with a run.")
    choices: list[str] = Field(description="The values the platform allows; [] when any.")

    @classmethod
    def of(cls, parameter: Parameter) -> ParameterOut:
        return cls(**parameter_fields(parameter))


class JobOut(BaseModel):
    id: int
    platform_id: int
    job_type: JobTypeName = Field(description='The Job Type, e.g. "Databricks Pipeline".')
    external_id: str
    name: str
    description: str
    tags: dict[str, str]
    task_count: int
    task_keys: list[str]
    parameters: list[ParameterOut]
    imported_at: datetime
    synced_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(**job_fields(job))


class ParameterUpdate(_In):
    """Fields left out are kept; `null` clears the Direction (= Input) or the stored value."""

    name: ParameterName
    task_key: ParameterName | None = Field(
        default=None, description="Needed only when the name exists on several scopes."
    )
    data_type: DataType | None = Field(
        default=None,
        description="Left out or null: kept. Secret: the stored value (and a run's value) must "
        "be a secret reference (`env:NAME`, `file:PATH`); Sync Parameters keeps a Data Type set.",
    )
    direction: Direction | None = None
    stored_value: ParameterValue | None = Field(
        default=None,
        description="Kept as typed (trimmed unless String); a Secret's is a secret reference, "
        "which only an admin may set.",
    )


class JobUpdate(_In):
    name: JobName | None = None
    description: Description | None = None
    parameters: list[ParameterUpdate] | None = Field(
        default=None, max_length=MAX_PARAMETERS_PER_RUN
    )


class ParameterChangeOut(BaseModel):
    name: str
    task_key: str | None
    fields: list[str]
    old: ParameterOut
    new: ParameterOut

    @classmethod
    def of(cls, change: ParameterChange) -> ParameterChangeOut:
        return cls(
            name=change.name,
            task_key=change.new.task_key,
            fields=list(change.fields),
            old=ParameterOut.of(change.old),
            new=ParameterOut.of(change.new),
        )


class KindChangeOut(BaseModel):
    old: JobTypeName
    new: JobTypeName


class SyncOut(BaseModel):
    job: JobOut
    added: list[ParameterOut]
    removed: list[ParameterOut]
    changed: list[ParameterChangeOut]
    kind_changed: KindChangeOut | None
    unfit_stored_values: list[ParameterOut]

    @classmethod
    def of(cls, job: Job, diff: ParameterDiff) -> SyncOut:
        kind = diff.kind_changed
        return cls(
            job=JobOut.of(job),
            added=[ParameterOut.of(p) for p in diff.added],
            removed=[ParameterOut.of(p) for p in diff.removed],
            changed=[ParameterChangeOut.of(c) for c in diff.changed],
            kind_changed=KindChangeOut(old=kind[0], new=kind[1]) if kind else None,
            unfit_stored_values=[ParameterOut.of(p) for p in diff.unfit_stored_values],
        )


class ExecuteIn(_In):
    parameters: dict[ParameterName, ParameterValue] = Field(
        default_factory=dict,
        max_length=MAX_PARAMETERS_PER_RUN,
        description="Overrides by parameter name (values as text, at most 10,000 characters).",
    )


# ---------------------------------------------------------------------- runs
class TaskOut(BaseModel):
    task_key: str
    status: RunStatus
    run_id: int | None
    attempt_number: int
    life_cycle_state: str | None
    result_state: str | None
    state_message: str
    start_time_ms: int | None
    end_time_ms: int | None
    duration_ms: int | None
    run_page_url: str | None
    error: str | None

    @classmethod
    def of(cls, task: TaskRunState) -> TaskOut:
        return cls(**task_fields(task))


class EventOut(BaseModel):
    id: int
    at: datetime
    status: RunStatus
    message: str
    life_cycle_state: str | None
    result_state: str | None
    source: str

    @classmethod
    def of(cls, event: RunEvent) -> EventOut:
        return cls(**event_fields(event))


class RepairOut(BaseModel):
    """The latest repair of a run (D13): `jobs/runs/repair` rerunning its failed tasks in place."""

    number: int = Field(description='Its number in the run\'s history: "Repair #1" first.')
    task_keys: list[str] = Field(description="The tasks it reruns: failed, skipped, cancelled.")
    latest_repair_id: str | None = Field(
        description="The run's latest repair before this one (sent as `latest_repair_id`)."
    )
    requested_at: datetime
    requested_by: str | None = Field(description="Who asked for it.")
    repair_id: str | None = Field(description="Databricks' repair id, once sent.")
    sent_at: datetime | None
    pending: bool = Field(description="Recorded, not yet sent by an engine.")


class RunSummary(BaseModel):
    id: int
    job_id: int
    platform_id: int
    status: RunStatus
    terminal: bool
    message: str
    databricks_run_id: str | None = Field(
        description="The RunId on the platform, opaque text: a Databricks run id, or "
        '"{pipeline_id}:{update_id}" for a Databricks Pipeline update.'
    )
    run_page_url: str | None
    created_at: datetime
    submitted_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime
    cancel_requested_at: datetime | None
    executed_by: str | None = Field(description="Who executed it: `api:NAME (psk_...)`, ...")
    cancelled_by: str | None = Field(description="Who asked to cancel it, if anyone.")
    repair: RepairOut | None = Field(
        default=None, description="The latest repair asked of the run (D13), if any."
    )

    @classmethod
    def fields_of(cls, run: Run) -> dict[str, Any]:
        return run_summary_fields(run)

    @classmethod
    def of(cls, run: Run) -> RunSummary:
        return cls(**cls.fields_of(run))


class RunOut(RunSummary):
    life_cycle_state: str | None
    result_state: str | None
    overrides: dict[str, str]
    parameters_sent: dict[str, str] = Field(
        description=f"A Secret's value shows as its reference (`env:NAME`), or {MASK!r}."
    )
    tasks: list[TaskOut]
    events: list[EventOut] = Field(description="Status history, oldest first.")
    last_event_id: int = Field(description="Pass as `since` to long-poll for the next change.")

    @classmethod
    def of_details(cls, run: Run, job: Job, events: Sequence[RunEvent]) -> RunOut:
        return cls(**run_fields(run, job, events))


class CancelOut(BaseModel):
    detail: str
    run: RunSummary


class RepairRunOut(BaseModel):
    detail: str = Field(description='E.g. "Repair #1 requested (tasks: build, score); ...".')
    run: RunSummary


class EngineHealthOut(BaseModel):
    """The engine running in this process (`polysync serve`), as its heartbeat says."""

    owner: str
    state: str
    last_cycle_at: datetime | None
    last_cycle_age_s: float | None
    cycles: int
    failures: int = Field(description="Consecutive failed cycles (0 when the last succeeded).")
    last_error: str | None
    restarts: int


class HealthOut(BaseModel):
    status: str
    database: str
    engine: EngineHealthOut | None = Field(
        None, description="This process's engine; null when it runs none (an API-only process)."
    )
    poll_lag_s: float = Field(0.0, description="How late the most overdue poll of a run is.")


class AuditEventOut(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="`api:NAME (psk_...)`, `web:NAME (psk_...)` or `cli:USER`.")
    action: str = Field(description="platform.create/update/delete, job.import/sync/update.")
    subject_type: str
    subject_id: int | None
    subject: str
    detail: str

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        return cls(
            id=event.id,
            at=event.at,
            actor=event.actor,
            action=event.action,
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            subject=event.subject,
            detail=event.detail,
        )
