"""What Polysync keeps: platforms, jobs, runs and their status history (frozen records)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from polysync.domain.models import ImportedJob, JobTypeName, Parameter, RunStatus, TaskRunState

PLATFORM_ATTRIBUTES = "attributes"
"""The options key holding a platform's attributes: text values job types read (a notebook's
compute, the Default Notebook Path, ...), as opposed to the client settings beside them."""


def platform_attributes(options: Mapping[str, Any]) -> dict[str, str]:
    """The attributes in a platform's options, values as text (absent or malformed: none)."""
    raw = options.get(PLATFORM_ATTRIBUTES)
    if not isinstance(raw, Mapping):
        return {}
    return {str(key): str(value) for key, value in raw.items() if value is not None}


def utc(epoch_s: float) -> datetime:
    """An aware UTC datetime from the clock's epoch seconds."""
    return datetime.fromtimestamp(epoch_s, UTC)


@dataclass(frozen=True, slots=True)
class NewPlatform:
    """A platform to register. `auth` holds the method, its non-secret fields and secret
    *references* (`env:NAME`, `file:PATH`) - never a secret value."""

    name: str
    workspace_url: str
    auth: Mapping[str, Any]
    cluster_id: str | None = None
    description: str = ""
    # Optional client settings: api_versions, rate_limits, retry, tls_ca_bundle, ...
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Platform:
    id: int
    name: str
    provider: str  # "azure-databricks"
    workspace_url: str
    auth: Mapping[str, Any]
    cluster_id: str | None
    description: str
    options: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime

    @property
    def auth_method(self) -> str:
        return str(self.auth.get("method", "?"))

    @property
    def attributes(self) -> dict[str, str]:
        """Attributes job types read (`PLATFORM_ATTRIBUTES` in options)."""
        return platform_attributes(self.options)


@dataclass(frozen=True, slots=True)
class Job:
    """An imported job of any Job Type: the schema Polysync keeps, with the user's settings in it."""

    id: int
    platform_id: int
    job_type: JobTypeName
    external_id: str
    name: str
    description: str
    tags: Mapping[str, str]
    task_count: int
    task_keys: tuple[str, ...]
    parameters: tuple[Parameter, ...]
    imported_at: datetime
    synced_at: datetime

    def as_imported(self) -> ImportedJob:
        return ImportedJob(
            external_id=self.external_id,
            name=self.name,
            kind=self.job_type,
            task_count=self.task_count,
            description=self.description,
            tags=dict(self.tags),
            task_keys=self.task_keys,
            parameters=self.parameters,
        )


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to start: committed (with its idempotency token) before run-now is sent (D8)."""

    job_id: int
    platform_id: int
    key: str  # our run's identity (uuid4 hex); the idempotency token derives from it
    idempotency_token: str
    overrides: Mapping[str, str]
    parameters_sent: Mapping[str, str]
    executed_by: str | None = None  # who asked for it (str(Actor)), for the audit trail


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of a Job, as Polysync knows it."""

    id: int
    job_id: int
    platform_id: int
    key: str
    idempotency_token: str
    overrides: Mapping[str, str]
    parameters_sent: Mapping[str, str]
    run_id: str | None  # the platform's RunId (opaque text), once the start answered
    status: RunStatus
    message: str
    run_page_url: str | None
    life_cycle_state: str | None
    result_state: str | None
    tasks: tuple[TaskRunState, ...]
    created_at: datetime
    submitted_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime
    cancel_requested_at: datetime | None
    next_poll_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    submit_attempts: int
    lease_token: str | None = None
    """Fencing token of the current lease: new at every claim."""
    poll_failures: int = 0
    """Consecutive failed polls (the next poll backs off with them); 0 after a good one."""
    executed_by: str | None = None  # who executed it (str(Actor)); None before migration 0004
    cancelled_by: str | None = None  # who asked to cancel it
    # Contention profiles (D14): when it first waited, the profile holding it back now, and
    # when it was admitted (its start counted against every profile of its platform).
    queued_at: datetime | None = None
    waiting_profile_id: int | None = None
    admitted_at: datetime | None = None
    repair: RunRepair | None = None
    """The latest repair asked of this run (D13), None if never repaired."""

    @property
    def repair_pending(self) -> bool:
        """A repair was asked of this (reopened) run and no engine has sent it yet (D13); never
        for a terminal run (a cancel before the send withdraws it)."""
        return self.repair is not None and self.repair.pending and not self.is_terminal

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def submitted(self) -> bool:
        return self.run_id is not None

    @property
    def lease(self) -> Lease | None:
        """The lease this record was read under, if any (what fenced writes carry)."""
        if self.lease_owner is None or self.lease_token is None:
            return None
        return Lease(self.lease_owner, self.lease_token)


@dataclass(frozen=True, slots=True)
class RunRepair:
    """The latest repair asked of a run (D13): recorded as intent, sent once by the engine.

    `latest_repair_id` (the run's latest repair before this one, None if none) is recorded with
    the request, before anything is sent: a resend after a crash carries the same one, which
    Databricks refuses as stale once this repair landed, so the run is repaired once."""

    number: int
    """Its number in the run's history: "Repair #1" is the first repair of the run."""
    task_keys: tuple[str, ...]
    """The tasks it reruns (failed, skipped by a failure, cancelled), as planned."""
    latest_repair_id: str | None
    requested_at: datetime
    requested_by: str | None = None  # str(Actor)
    repair_id: str | None = None
    """Databricks' repair id, once the engine has sent it (or found it had landed)."""
    sent_at: datetime | None = None

    @property
    def pending(self) -> bool:
        return self.repair_id is None

    def describe(self) -> str:
        """What the history says of the request: "Repair #2 requested (tasks: a, b)"; past
        DESCRIBED_TASKS task keys, how many more (a workflow may have 1,000 tasks)."""
        shown_keys = self.task_keys[:DESCRIBED_TASKS]
        tasks = ", ".join(shown_keys) or "none"
        more = len(self.task_keys) - len(shown_keys)
        if more:
            tasks += f" and {more} more"
        return f"Repair #{self.number} requested (tasks: {tasks})"


DESCRIBED_TASKS = 20
"""The task keys a repair's history entry names; the rest are counted."""


@dataclass(frozen=True, slots=True)
class Lease:
    """Who may write a run now: the engine that claimed it, with the claim's fencing token.

    A store write given a Lease is dropped unless the run still carries both: an engine whose
    lease expired and was taken over can never write back a stale copy (issue 8, section 3).
    """

    owner: str
    token: str


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One recorded transition of a run (status history)."""

    id: int
    run_id: int  # ours
    at: datetime
    status: RunStatus
    message: str
    life_cycle_state: str | None
    result_state: str | None
    source: str  # "submit", "poll", "cancel", "engine"


@dataclass(frozen=True, slots=True)
class RunFilter:
    job_id: int | None = None
    platform_id: int | None = None
    statuses: tuple[RunStatus, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    active_only: bool = False
    limit: int = 100


class EngineState(StrEnum):
    """What an engine is doing, as its heartbeat says."""

    STARTING = "starting"  # reconciling; no cycle yet
    RUNNING = "running"  # cycling normally
    BACKING_OFF = "backing-off"  # its last cycle failed (e.g. the database); retrying
    STOPPED = "stopped"  # stopped gracefully; its leases are released
    CRASHED = "crashed"  # its task ended on an error (a supervisor restarts it)


@dataclass(frozen=True, slots=True)
class EngineHeartbeat:
    """One engine's heartbeat, kept in the database so any process can see every engine."""

    owner: str  # its lease owner name
    host: str
    pid: int
    state: EngineState
    started_at: datetime
    heartbeat_at: datetime  # when it last recorded this (engine clock)
    last_cycle_at: datetime | None  # when its last successful cycle ended
    cycles: int  # successful cycles since it started
    failures: int  # consecutive failed cycles (0 when the last one succeeded)
    last_error: str | None  # the last cycle failure, one line (never a secret)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One change to a platform or a job, and who made it (the audit trail)."""

    id: int
    at: datetime
    actor: str  # str(Actor): "api:ci-bot (psk_ab12cd34)", "web:...", "cli:alice"
    action: str  # "platform.create", "platform.update", "platform.delete", "job.import", ...
    subject_type: str  # "platform" or "job"
    subject_id: int | None
    subject: str  # what it was called then, e.g. "platform 'prod'"
    detail: str  # what changed (field names, never secret values)


KEY_VAULT_PROVIDER = "azure-key-vault"
"""The one Secret Vault provider: Azure Key Vault (D15)."""


@dataclass(frozen=True, slots=True)
class NewSecretVault:
    """A Secret Vault to register (D15): where `vault://NAME/...` references are read. `auth`
    holds the method, its non-secret fields and a client secret's *reference* (`env:`/`file:`);
    `options`: verify_challenge_resource, tls_ca_bundle, cache_ttl_s."""

    name: str
    vault_url: str
    auth: Mapping[str, Any]
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SecretVault:
    """A registered Secret Vault: an Azure Key Vault and how Polysync signs in to it."""

    id: int
    name: str
    provider: str  # KEY_VAULT_PROVIDER
    vault_url: str
    auth: Mapping[str, Any]
    description: str
    options: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime

    @property
    def auth_method(self) -> str:
        return str(self.auth.get("method", "?"))
