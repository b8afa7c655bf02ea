"""The composition root: the only module that chooses implementations and wires them together."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx
from pydantic import ValidationError

from polysync.clock import Clock, SystemClock
from polysync.config import Settings
from polysync.databricks.client import ConnectivityReport, DatabricksClient
from polysync.databricks.policy import ConnectionPolicy, parse_host_patterns
from polysync.databricks.ratelimit import RateLimiterRegistry
from polysync.databricks.settings import WorkspaceSettings
from polysync.domain.access import Actor
from polysync.domain.limits import (
    MAX_FIELD_CHARS,
    MAX_JOB_NAME_CHARS,
    check_description,
    check_name,
    check_optional_text,
    check_parameter_value,
    check_parameter_values,
    unique_ids,
)
from polysync.domain.models import ImportedJob, JobKind, ParameterDiff
from polysync.domain.parameters import sync_job
from polysync.domain.records import Job, NewPlatform, Platform, Run, RunEvent, RunFilter, utc
from polysync.engine.engine import Engine, EngineSettings
from polysync.engine.polling import PollPolicy
from polysync.engine.ports import Store
from polysync.errors import NotFoundError, PolysyncError, UsageError
from polysync.jobtypes.base import DiscoveredJob, JobType
from polysync.jobtypes.databricks_job import DatabricksJobJobType
from polysync.jobtypes.databricks_workflow import DatabricksWorkflowJobType
from polysync.secrets import SecretScope
from polysync.store import open_store, upgrade

TransportFactory = Callable[[Platform], httpx.AsyncBaseTransport | None]

JOB_TYPES: dict[JobKind, type[DatabricksWorkflowJobType]] = {
    JobKind.WORKFLOW: DatabricksWorkflowJobType,
    JobKind.JOB: DatabricksJobJobType,
}


def workspace_settings(platform: Platform) -> WorkspaceSettings:
    """The client settings of a platform record (auth holds references only)."""
    try:
        return WorkspaceSettings.model_validate(
            {"url": platform.workspace_url, "auth": dict(platform.auth), **platform.options}
        )
    except ValidationError as exc:
        raise UsageError(
            f"Platform {platform.name!r} is not usable: {_first_error(exc)}. "
            f"Fix it with `polysync platform add {platform.name} ...` (after removing it)."
        ) from exc


def connection_policy(settings: Settings) -> ConnectionPolicy:
    """The policy the settings describe: host allow-list, plain HTTP, secret scope."""
    return ConnectionPolicy(
        workspace_hosts=parse_host_patterns(settings.workspace_hosts),
        allow_insecure_http=settings.allow_insecure_http,
        secret_scope=SecretScope(
            env_prefix=settings.secret_env_prefix, secrets_dir=settings.secrets_dir
        ),
    )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


class Connections:
    """One Databricks client per platform (one connection pool and one rate limiter each),
    shared by every caller; it also picks the job type of a job (the engine's `JobTypes`)."""

    def __init__(
        self,
        clock: Clock,
        *,
        transport_factory: TransportFactory | None = None,
        policy: ConnectionPolicy | None = None,
    ) -> None:
        self._clock = clock
        self.policy = policy or ConnectionPolicy()
        self._limiters = RateLimiterRegistry(clock)
        self._transport_factory = transport_factory
        self._clients: dict[int, tuple[Any, DatabricksClient]] = {}
        self._retired: list[DatabricksClient] = []  # replaced after an edit; closed at the end

    def client(self, platform: Platform) -> DatabricksClient:
        fingerprint = (platform.workspace_url, dict(platform.auth), dict(platform.options))
        cached = self._clients.get(platform.id)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        if cached is not None:
            self._retired.append(cached[1])
        settings = self.checked_settings(platform)
        transport = self._transport_factory(platform) if self._transport_factory else None
        client = DatabricksClient(
            settings,
            transport=transport,
            clock=self._clock,
            rate_limiters=self._limiters,
            secret_scope=self.policy.secret_scope,
        )
        self._clients[platform.id] = (fingerprint, client)
        return client

    def checked_settings(self, platform: Platform) -> WorkspaceSettings:
        """The platform's client settings, refused (UsageError / ConfigError) when they are not
        valid or break this process's connection policy (host allow-list, http, secret scope)."""
        settings = workspace_settings(platform)
        self.policy.check(settings, platform=f"Platform {platform.name!r}")
        return settings

    def clients(self) -> list[DatabricksClient]:
        """Every client made so far, replaced ones too (their metrics still count)."""
        return [*self._retired, *(c for _, c in self._clients.values())]

    def for_job(self, platform: Platform, job: Job) -> JobType:
        return JOB_TYPES[job.job_type](self.client(platform))

    def for_platform(self, platform: Platform) -> DatabricksWorkflowJobType:
        return DatabricksWorkflowJobType(self.client(platform))

    async def aclose(self) -> None:
        for client in [*self._retired, *(c for _, c in self._clients.values())]:
            await client.aclose()
        self._clients.clear()
        self._retired.clear()


@dataclass(frozen=True, slots=True)
class ImportResult:
    external_id: str
    job: Job | None
    created: bool
    error: PolysyncError | None


class Services:
    """Everything the CLI, the API and the demo do, over one store, one engine, one clock."""

    def __init__(
        self,
        store: Store,
        connections: Connections,
        engine: Engine,
        clock: Clock,
        settings: Settings,
    ) -> None:
        self.store = store
        self.connections = connections
        self.engine = engine
        self.clock = clock
        self.settings = settings

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        api_clock: Clock | None = None,
        transport_factory: TransportFactory | None = None,
        engine_settings: EngineSettings | None = None,
    ) -> Services:
        """`clock` schedules the engine; `api_clock` paces API calls and retries (real time by
        default - only a benchmark against a fast emulator sets both to emulated time)."""
        clock = clock or SystemClock()
        store = await open_store(settings.resolved_database_url())
        connections = Connections(
            api_clock or SystemClock(),
            transport_factory=transport_factory,
            policy=connection_policy(settings),
        )
        policy = PollPolicy(
            min_interval_s=settings.poll_min_s,
            max_interval_s=max(settings.poll_min_s, settings.poll_max_s),
            sweep_interval_s=settings.sweep_interval_s,
            # The shortest poll bounds every poll: the first one and the cancel confirmation too.
            first_poll_s=settings.poll_min_s,
            cancel_poll_s=settings.poll_min_s,
        )
        engine = Engine(
            store,
            connections,
            clock,
            engine_settings or EngineSettings(policy=policy, lease_s=settings.lease_s),
        )
        return cls(store, connections, engine, clock, settings)

    async def aclose(self) -> None:
        try:
            await self.engine.release()  # the runs this process claimed go back to other engines
        finally:
            await self.connections.aclose()
            await self.store.aclose()  # type: ignore[attr-defined]

    def now(self) -> Any:
        return utc(self.clock.now())

    # ------------------------------------------------------------------ platforms
    # Every change takes the `actor` who asked for it (an API key, a web user, the CLI's OS user):
    # the store records it in the audit trail in the same transaction (docs/security.md).
    async def add_platform(self, new: NewPlatform, *, actor: Actor | None = None) -> Platform:
        """Register a platform: its fields within the limits (polysync.domain.limits), its
        settings valid and within the connection policy; UsageError / ConfigError otherwise."""
        _check_platform_fields(new)
        probe = Platform(
            id=0,
            name=new.name,
            provider="azure-databricks",
            workspace_url=new.workspace_url,
            auth=new.auth,
            cluster_id=new.cluster_id,
            description=new.description,
            options=new.options,
            created_at=self.now(),
            updated_at=self.now(),
        )
        # Refuses a bad URL, a secret value, a host or reference outside the policy, ... first.
        checked = self.connections.checked_settings(probe)
        return await self.store.add_platform(
            replace(new, workspace_url=checked.url), self.now(), actor=_who(actor)
        )

    async def update_platform(self, platform: Platform, *, actor: Actor | None = None) -> Platform:
        """Save an edited platform, checked as `add_platform` checks a new one (text fields only
        where they changed: a record saved before a limit existed stays editable)."""
        stored = await self.store.get_platform(platform.id)
        _check_platform_fields(platform, stored)
        checked = self.connections.checked_settings(platform)
        return await self.store.update_platform(
            replace(platform, workspace_url=checked.url), self.now(), actor=_who(actor)
        )

    async def remove_platform(self, ref: int | str, *, actor: Actor | None = None) -> Platform:
        """Remove a platform with its jobs and runs (UsageError while it has active runs)."""
        platform = await self.store.get_platform(ref)
        await self.store.remove_platform(platform.id, actor=_who(actor), now=self.now())
        return platform

    async def test_platform(self, ref: str) -> ConnectivityReport:
        platform = await self.store.get_platform(ref)
        return await self.connections.client(platform).test_connectivity()

    async def discover(self, ref: str) -> tuple[Platform, Sequence[DiscoveredJob]]:
        platform = await self.store.get_platform(ref)
        return platform, await self.connections.for_platform(platform).discover()

    async def import_jobs(
        self, ref: str, external_ids: Sequence[str] | None, *, actor: Actor | None = None
    ) -> tuple[Platform, list[ImportResult]]:
        """Import the given jobs, or every discovered one; re-importing keeps the user's settings.

        The ids are de-duplicated (first one kept) and at most MAX_IMPORT_IDS distinct ones are
        accepted (UsageError): one `jobs/get` per distinct job, however the request repeats it.
        """
        unique = None if external_ids is None else unique_ids(external_ids)
        platform = await self.store.get_platform(ref)
        job_type = self.connections.for_platform(platform)
        ids = [job.external_id for job in await job_type.discover()] if unique is None else unique
        results: list[ImportResult] = []
        for external_id, outcome in zip(ids, await job_type.import_jobs(ids), strict=True):
            if isinstance(outcome, PolysyncError):
                results.append(ImportResult(external_id, None, False, outcome))
                continue
            merged = await self._merge_existing(platform.id, outcome)
            job, created = await self.store.upsert_job(
                platform.id, merged, self.now(), actor=_who(actor)
            )
            results.append(ImportResult(external_id, job, created, None))
        return platform, results

    async def _merge_existing(self, platform_id: int, imported: ImportedJob) -> ImportedJob:
        try:
            existing = await self.store.get_job(imported.external_id, platform_id=platform_id)
        except PolysyncError:
            return imported
        merged, _ = sync_job(existing.as_imported(), imported)
        return merged

    # ------------------------------------------------------------------ jobs
    async def get_job(self, ref: str, platform: str | None = None) -> Job:
        """By Polysync id; else by External Id or name (within `platform` when given)."""
        platform_id = (await self.store.get_platform(platform)).id if platform else None
        if ref.isdigit() and platform is None:
            with contextlib.suppress(NotFoundError):  # not a Polysync id: External Ids are digits
                return await self.store.get_job(int(ref))
        return await self.store.get_job(ref, platform_id=platform_id)

    async def sync_parameters(
        self, job: Job, *, actor: Actor | None = None
    ) -> tuple[Job, ParameterDiff]:
        platform = await self.store.get_platform(job.platform_id)
        merged, diff = await self.connections.for_job(platform, job).sync_parameters(
            job.as_imported()
        )
        saved, _ = await self.store.upsert_job(
            platform.id, merged, self.now(), actor=_who(actor), action="job.sync"
        )
        return saved, diff

    async def save_job(self, job: Job, *, actor: Actor | None = None) -> Job:
        """Save a user's edits of a job (name, description, parameter Directions and stored
        values), each within its limit (polysync.domain.limits); UsageError otherwise.

        Only what the user changed is checked: a name or a description imported from Databricks
        with characters the limits refuse (a hostile workspace's) does not block editing the
        parameters."""
        stored = await self.store.get_job(job.id)
        if job.name != stored.name:
            check_name(job.name, field="The job name", max_chars=MAX_JOB_NAME_CHARS)
        if job.description != stored.description:
            check_description(job.description)
        before = {p.key: p.stored_value for p in stored.parameters}
        for parameter in job.parameters:
            value = parameter.stored_value
            if value is not None and value != before.get(parameter.key):
                check_parameter_value(parameter.name, value)
        return await self.store.save_job(job, self.now(), actor=_who(actor))

    # ------------------------------------------------------------------ runs
    async def execute(
        self, job: Job, overrides: Mapping[str, str], *, actor: Actor | None = None
    ) -> Run:
        """Execute Now: commit the run, then start it at once (the engine re-attaches if needed).

        The overrides are checked against the limits first (at most MAX_PARAMETERS_PER_RUN,
        each value at most MAX_PARAMETER_VALUE_CHARS, no control characters but tab and line
        breaks): UsageError before anything is recorded. The run records `actor` as executed_by.
        """
        check_parameter_values(overrides)
        run = await self.engine.submit(job, overrides, executed_by=_who(actor))
        await self.engine.step()
        return await self.store.get_run(run.id)

    async def cancel(self, run_id: int, *, actor: Actor | None = None) -> Run:
        """Ask for a run to be cancelled (D10), recording `actor` as cancelled_by."""
        run = await self.engine.request_cancel(
            await self.store.get_run(run_id), cancelled_by=_who(actor)
        )
        await self.engine.step()
        return await self.store.get_run(run.id)

    async def list_runs(self, where: RunFilter) -> Sequence[Run]:
        return await self.store.list_runs(where)

    async def run_details(self, run_id: int) -> tuple[Run, Job, Sequence[RunEvent]]:
        run = await self.store.get_run(run_id)
        return run, await self.store.get_job(run.job_id), await self.store.run_events(run_id)


def _who(actor: Actor | None) -> str | None:
    return None if actor is None else str(actor)


def _check_platform_fields(new: NewPlatform | Platform, stored: Platform | None = None) -> None:
    """The limits of a platform's text fields; with `stored`, only of the fields that changed."""
    if stored is None or new.name != stored.name:
        check_name(new.name, field="The platform name")
    if stored is None or new.description != stored.description:
        check_description(new.description)
    if stored is None or new.cluster_id != stored.cluster_id:
        check_optional_text(new.cluster_id, field="The Cluster Id", max_chars=MAX_FIELD_CHARS)


async def upgrade_database(settings: Settings) -> str | None:
    """Apply every pending schema migration to the configured database; its revision after."""
    return await upgrade(settings.resolved_database_url())
