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
from polysync.domain.records import AuditEvent, Job, Platform, Run, RunEvent
from polysync.errors import ParameterTextError
from polysync.jobtypes.base import DiscoveredJob

MASK = "********"

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
    "(deadline_s <= 3600, max_attempts <= 100, ...), request_timeout_s <= 600, "
    "connect_timeout_s <= 120, max_connections <= 1000, tls_ca_bundle (a readable PEM file); "
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
        return cls(
            id=platform.id,
            name=platform.name,
            provider=platform.provider,
            workspace_url=platform.workspace_url,
            auth=dict(platform.auth),
            auth_method=platform.auth_method,
            cluster_id=platform.cluster_id,
            description=platform.description,
            options=dict(platform.options),
            created_at=platform.created_at,
            updated_at=platform.updated_at,
        )


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
    tags: dict[str, str]
    creator: str | None
    created_time_ms: int | None
    imported_job_id: int | None = Field(description="The Polysync job, if already imported.")

    @classmethod
    def of(cls, job: DiscoveredJob, imported: Mapping[str, int]) -> DiscoveredJobOut:
        return cls(
            external_id=job.external_id,
            name=job.name,
            kind=job.kind,
            task_count=job.task_count,
            tags=dict(job.tags),
            creator=job.creator,
            created_time_ms=job.created_time_ms,
            imported_job_id=imported.get(job.external_id),
        )


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
    stored_value: str | None = Field(description=f"{MASK!r} for a Secret that has one.")
    sent_at_run_time: bool
    reference_only: bool = Field(description="Imported for reference; never sent with a run.")
    choices: list[str] = Field(description="The values the platform allows; [] when any.")

    @classmethod
    def of(cls, parameter: Parameter) -> ParameterOut:
        stored = parameter.stored_value
        if stored is not None and parameter.data_type is DataType.SECRET:
            stored = MASK
        return cls(
            name=parameter.name,
            data_type=parameter.data_type,
            default=parameter.default,
            direction=parameter.direction,
            task_key=parameter.task_key,
            source=str(parameter.source),
            stored_value=stored,
            sent_at_run_time=parameter.is_sent,
            reference_only=parameter.reference_only,
            choices=list(parameter.choices),
        )


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
        return cls(
            id=job.id,
            platform_id=job.platform_id,
            job_type=job.job_type,
            external_id=job.external_id,
            name=job.name,
            description=job.description,
            tags=dict(job.tags),
            task_count=job.task_count,
            task_keys=list(job.task_keys),
            parameters=[ParameterOut.of(p) for p in job.parameters],
            imported_at=job.imported_at,
            synced_at=job.synced_at,
        )


class ParameterUpdate(_In):
    """Fields left out are kept; `null` clears the Direction (= Input) or the stored value."""

    name: ParameterName
    task_key: ParameterName | None = Field(
        default=None, description="Needed only when the name exists on several scopes."
    )
    direction: Direction | None = None
    stored_value: ParameterValue | None = None


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
        return cls(
            task_key=task.task_key,
            status=task.status,
            run_id=task.run_id,
            attempt_number=task.attempt_number,
            life_cycle_state=task.life_cycle_state,
            result_state=task.result_state,
            state_message=task.state_message,
            start_time_ms=task.start_time_ms,
            end_time_ms=task.end_time_ms,
            duration_ms=task.duration_ms,
            run_page_url=task.run_page_url,
            error=task.error,
        )


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
        return cls(
            id=event.id,
            at=event.at,
            status=event.status,
            message=event.message,
            life_cycle_state=event.life_cycle_state,
            result_state=event.result_state,
            source=event.source,
        )


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

    @classmethod
    def fields_of(cls, run: Run) -> dict[str, Any]:
        return {
            "id": run.id,
            "job_id": run.job_id,
            "platform_id": run.platform_id,
            "status": run.status,
            "terminal": run.is_terminal,
            "message": run.message,
            "databricks_run_id": run.run_id,
            "run_page_url": run.run_page_url,
            "created_at": run.created_at,
            "submitted_at": run.submitted_at,
            "ended_at": run.ended_at,
            "updated_at": run.updated_at,
            "cancel_requested_at": run.cancel_requested_at,
            "executed_by": run.executed_by,
            "cancelled_by": run.cancelled_by,
        }

    @classmethod
    def of(cls, run: Run) -> RunSummary:
        return cls(**cls.fields_of(run))


class RunOut(RunSummary):
    life_cycle_state: str | None
    result_state: str | None
    overrides: dict[str, str]
    parameters_sent: dict[str, str] = Field(description=f"Secret values show as {MASK!r}.")
    tasks: list[TaskOut]
    events: list[EventOut] = Field(description="Status history, oldest first.")
    last_event_id: int = Field(description="Pass as `since` to long-poll for the next change.")

    @classmethod
    def of_details(cls, run: Run, job: Job, events: Sequence[RunEvent]) -> RunOut:
        secret = {p.name for p in job.parameters if p.data_type is DataType.SECRET}

        def masked(values: Mapping[str, str]) -> dict[str, str]:
            return {k: MASK if k in secret else v for k, v in values.items()}

        return cls(
            **cls.fields_of(run),
            life_cycle_state=run.life_cycle_state,
            result_state=run.result_state,
            overrides=masked(run.overrides),
            parameters_sent=masked(run.parameters_sent),
            tasks=[TaskOut.of(t) for t in run.tasks],
            events=[EventOut.of(e) for e in events],
            last_event_id=events[-1].id if events else 0,
        )


class CancelOut(BaseModel):
    detail: str
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
