"""The composition root: the only module that chooses implementations and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx
from pydantic import ValidationError

from polysync.clock import Clock, SystemClock
from polysync.config import Settings
from polysync.databricks.auth import check_secret_references
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
from polysync.domain.models import (
    ImportedJob,
    JobTypeName,
    Parameter,
    ParameterDiff,
    RunStatus,
)
from polysync.domain.parameters import sync_job, user_value
from polysync.domain.records import (
    PLATFORM_ATTRIBUTES,
    EngineHeartbeat,
    EngineState,
    Job,
    NewPlatform,
    Platform,
    Run,
    RunEvent,
    RunFilter,
    utc,
)
from polysync.engine.engine import Engine, EngineSettings
from polysync.engine.polling import PollPolicy
from polysync.engine.ports import Store
from polysync.errors import NotFoundError, PolysyncError, StoreUnavailableError, UsageError
from polysync.jobtypes.base import DiscoveredJob, JobType, JobTypeRegistry
from polysync.jobtypes.registry import default_registry
from polysync.secrets import SecretScope
from polysync.store import open_store, upgrade

log = logging.getLogger(__name__)
TransportFactory = Callable[[Platform], httpx.AsyncBaseTransport | None]
_LIVE_STATES = frozenset({EngineState.STARTING, EngineState.RUNNING, EngineState.BACKING_OFF})


def workspace_settings(platform: Platform) -> WorkspaceSettings:
    """The client settings of a platform record (auth holds references only)."""
    try:
        client_options = {
            key: value for key, value in platform.options.items() if key != PLATFORM_ATTRIBUTES
        }
        _check_attributes(platform.options.get(PLATFORM_ATTRIBUTES))
        return WorkspaceSettings.model_validate(
            {"url": platform.workspace_url, "auth": dict(platform.auth), **client_options}
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


MAX_ATTRIBUTES = 50


def _check_attributes(raw: object) -> None:
    """A platform's attributes: at most MAX_ATTRIBUTES, names and values single-line text
    within the field limit (UsageError naming the attribute otherwise)."""
    if raw is None:
        return
    if not isinstance(raw, Mapping):
        raise UsageError(
            f"The platform's {PLATFORM_ATTRIBUTES!r} must be a map of names to text values."
        )
    if len(raw) > MAX_ATTRIBUTES:
        raise UsageError(f"A platform has at most {MAX_ATTRIBUTES} attributes; got {len(raw)}.")
    for key, value in raw.items():
        check_name(str(key), field="An attribute name")
        if not isinstance(value, str | int | float | bool):
            raise UsageError(f"Attribute {str(key)!r} must be text, a number or true/false.")
        check_optional_text(str(value), field=f"Attribute {str(key)!r}", max_chars=MAX_FIELD_CHARS)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


class Connections:
    """One Databricks client per platform (one connection pool and one rate limiter each),
    shared by every caller; it also picks the job type of a job from the registry (the engine's
    `JobTypes`)."""

    def __init__(
        self,
        clock: Clock,
        *,
        transport_factory: TransportFactory | None = None,
        policy: ConnectionPolicy | None = None,
        registry: JobTypeRegistry | None = None,
    ) -> None:
        self._clock = clock
        self.registry = registry or default_registry()
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

    def job_type(self, platform: Platform, name: JobTypeName) -> JobType:
        """The job type `name` on `platform` (UsageError for a name not registered)."""
        return self.registry.create(name, platform, self.client(platform))

    def for_job(self, platform: Platform, job: Job) -> JobType:
        return self.job_type(platform, job.job_type)

    def for_platform(self, platform: Platform) -> JobType:
        """The platform's first job type: the one whose `active_runs` the engine sweeps."""
        return self.registry.primary(platform, self.client(platform))

    def discoverers(self, platform: Platform) -> list[JobType]:
        """Every job type that discovers on the platform's provider (Get Pipelines asks each)."""
        return self.registry.discoverers(platform, self.client(platform))

    def for_external_id(self, platform: Platform, external_id: str) -> JobType:
        """The first discovering job type whose External Id rules accept `external_id` (a Job
        Id, a notebook path, a pipeline id...). When none does: the first type's error, with
        each other type's reason after it."""
        refusals: list[tuple[JobType, PolysyncError]] = []
        for job_type in self.discoverers(platform):
            try:
                job_type.validate_external_id(external_id)
            except PolysyncError as exc:
                refusals.append((job_type, exc))
            else:
                return job_type
        if not refusals:
            raise UsageError(f"No Job Type is registered for provider {platform.provider!r}.")
        first = refusals[0][1]
        if len(refusals) == 1:
            raise first
        others = " ".join(f"As a {t.name}: {exc.message}" for t, exc in refusals[1:])
        raise type(first)(f"{first.message} {others}")

    async def aclose(self) -> None:
        for client in [*self._retired, *(c for _, c in self._clients.values())]:
            await client.aclose()
        self._clients.clear()
        self._retired.clear()


@dataclass(frozen=True, slots=True)
class EngineView:
    """One engine as its heartbeat shows it now (`polysync status`)."""

    heartbeat: EngineHeartbeat
    alive: bool  # a live state, and a heartbeat fresher than `Services.engine_stale_after_s`
    heartbeat_age_s: float
    last_cycle_age_s: float | None  # None: no cycle completed yet
    stalled: bool  # alive, but no successful cycle for EngineSettings.stall_after_s


@dataclass(frozen=True, slots=True)
class SystemStatus:
    """Engines, runs and poll lag as the database shows them (`polysync status`)."""

    engines: Sequence[EngineView]
    runs_by_status: Mapping[RunStatus, int]
    max_poll_lag_s: float  # the most overdue poll of an active run (0 when none is due)
    problems: Sequence[str]  # each what is wrong and what to do; empty when healthy

    @property
    def active_runs(self) -> int:
        return sum(n for status, n in self.runs_by_status.items() if not status.is_terminal)


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

    @classmethod
    async def open_when_reachable(
        cls, settings: Settings, stop: asyncio.Event, *, max_wait_s: float = 30.0
    ) -> Services | None:
        """`open`, retried while the database cannot be reached (StoreUnavailableError, logged
        with the next try's delay, which doubles from 1 s to `max_wait_s`), so a service started
        before its database - or during an outage - waits instead of exiting. None if `stop` is
        set first. Other errors (bad settings, a refused schema) are raised at once."""
        delay_s = 1.0
        while not stop.is_set():
            try:
                return await cls.open(settings)
            except StoreUnavailableError as exc:
                log.warning("%s; retrying in %.0f s", exc, delay_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay_s)
            delay_s = min(delay_s * 2, max_wait_s)
        return None

    async def aclose(self) -> None:
        try:
            await self.engine.release()  # the runs this process claimed go back to other engines
        except StoreUnavailableError as exc:
            log.warning("leases not released (%s); they expire on their own", exc)
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
        """Remove a platform with its jobs and runs (ConflictError while it has active runs)."""
        platform = await self.store.get_platform(ref)
        await self.store.remove_platform(platform.id, actor=_who(actor), now=self.now())
        return platform

    async def test_platform(self, ref: str) -> ConnectivityReport:
        platform = await self.store.get_platform(ref)
        return await self.connections.client(platform).test_connectivity()

    async def discover(self, ref: str) -> tuple[Platform, Sequence[DiscoveredJob]]:
        """Get Pipelines: every job type registered for the platform's provider discovers its
        jobs, concurrently; the lists joined in registration order."""
        platform = await self.store.get_platform(ref)
        return platform, [job for _, job in await self._discover(platform)]

    async def _discover(self, platform: Platform) -> list[tuple[JobType, DiscoveredJob]]:
        discoverers = self.connections.discoverers(platform)
        found = await asyncio.gather(*(job_type.discover() for job_type in discoverers))
        return [
            (job_type, job)
            for job_type, jobs in zip(discoverers, found, strict=True)
            for job in jobs
        ]

    async def import_jobs(
        self, ref: str, external_ids: Sequence[str] | None, *, actor: Actor | None = None
    ) -> tuple[Platform, list[ImportResult]]:
        """Import the given jobs, or every discovered one; re-importing keeps the user's settings.

        The ids are de-duplicated (first one kept) and at most MAX_IMPORT_IDS distinct ones are
        accepted (UsageError): one `jobs/get` per distinct job, however the request repeats it.
        """
        unique = None if external_ids is None else unique_ids(external_ids)
        platform = await self.store.get_platform(ref)
        # Each id goes to the job type that discovered it, or whose External Id rules accept it.
        by_type: dict[JobTypeName, tuple[JobType, list[str]]] = {}
        failed: dict[str, PolysyncError] = {}
        if unique is None:
            found = await self._discover(platform)
            ids = [job.external_id for _, job in found]
            for discoverer, entry in found:
                by_type.setdefault(discoverer.name, (discoverer, []))[1].append(entry.external_id)
        else:
            ids = unique
            for external_id in unique:
                try:
                    job_type = self.connections.for_external_id(platform, external_id)
                except PolysyncError as exc:
                    failed[external_id] = exc
                    continue
                by_type.setdefault(job_type.name, (job_type, []))[1].append(external_id)
        outcomes: dict[str, ImportedJob | PolysyncError] = dict(failed)
        for job_type, type_ids in by_type.values():
            imported = await job_type.import_jobs(type_ids)
            outcomes.update(zip(type_ids, imported, strict=True))
        results: list[ImportResult] = []
        for external_id in ids:
            outcome = outcomes[external_id]
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
        values), each within its limit (polysync.domain.limits); UsageError otherwise. A changed
        stored value must fit its Data Type and is kept as a run sends it (`user_value`: trimmed
        unless String or Secret), whichever adapter it came from.

        Only what the user changed is checked: a name or a description imported from Databricks
        with characters the limits refuse (a hostile workspace's) does not block editing the
        parameters."""
        stored = await self.store.get_job(job.id)
        if job.name != stored.name:
            check_name(job.name, field="The job name", max_chars=MAX_JOB_NAME_CHARS)
        if job.description != stored.description:
            check_description(job.description)
        before = {p.key: p.stored_value for p in stored.parameters}
        parameters: list[Parameter] = []
        for parameter in job.parameters:
            value = parameter.stored_value
            if value is not None and value != before.get(parameter.key):
                check_parameter_value(parameter.name, value)
                if parameter.reference_only:
                    raise UsageError(
                        f"Parameter {parameter.name!r} is imported for reference only "
                        f"({parameter.source}) and never sent: it takes no stored value."
                    )
                # One rule for every adapter: stored as a run would send it (D2 amended).
                value = user_value(parameter.data_type, value, name=parameter.name)
            parameters.append(replace(parameter, stored_value=value))
        edited = replace(job, parameters=tuple(parameters))
        return await self.store.save_job(edited, self.now(), actor=_who(actor))

    # ------------------------------------------------------------------ runs
    async def execute(
        self, job: Job, overrides: Mapping[str, str], *, actor: Actor | None = None
    ) -> Run:
        """Execute Now: validate everything that can be checked here - the values (D2-D4), the
        platform's settings and that its secret references resolve - then commit the run and
        return it, Starting. An engine starts it (`run_forever` in `polysync serve` or
        `polysync engine`; a command with none running calls `dispatch`). Raises UsageError or
        ConfigError (SecretReferenceError) before anything is recorded, so a refused command
        leaves no run behind for an engine to start later (issue 8). The overrides are checked
        against the limits first (at most MAX_PARAMETERS_PER_RUN, each value at most
        MAX_PARAMETER_VALUE_CHARS). The run records `actor` as executed_by."""
        check_parameter_values(overrides)
        platform = await self.store.get_platform(job.platform_id)
        check_secret_references(workspace_settings(platform))
        return await self.engine.submit(job, overrides, executed_by=_who(actor))

    async def cancel(self, run_id: int, *, actor: Actor | None = None) -> Run:
        """Record the request to cancel (D10), with `actor` as cancelled_by, and return: an
        engine sends runs/cancel and polls for the final status. UsageError when the run has
        already ended."""
        return await self.engine.request_cancel(
            await self.store.get_run(run_id), cancelled_by=_who(actor)
        )

    async def dispatch(self, run_id: int) -> Run:
        """Work on this one run now, in this process, if it is due and no live engine holds it:
        start it, send its cancel, or poll it (`Engine.drive`). For commands with no engine
        running; never a cycle over other runs. Returns the run as stored afterwards."""
        await self.engine.drive(run_id)
        return await self.store.get_run(run_id)

    async def engines(self) -> Sequence[EngineHeartbeat]:
        """Every engine's last heartbeat, freshest first (from the database)."""
        return await self.store.list_engines()

    async def engine_running(self) -> bool:
        """Whether an engine other than this process's own is alive: its heartbeat is fresh
        (within ENGINE_STALE_AFTER_S of now) and it was not stopped."""
        now_s = self.clock.now()
        for beat in await self.store.list_engines():
            if beat.owner == self.engine.owner:
                continue
            age_s = now_s - beat.heartbeat_at.timestamp()
            if beat.state in _LIVE_STATES and age_s <= self.engine_stale_after_s:
                return True
        return False

    async def status(self) -> SystemStatus:
        """What `polysync status` shows: every engine's heartbeat, the runs by status and the
        poll lag, with the problems they reveal (no engine while runs are active, a stalled or
        failing engine, polls overdue)."""
        now_s = self.clock.now()
        stall_after_s = self.engine.settings.stall_after_s
        views: list[EngineView] = []
        for beat in await self.store.list_engines():
            age_s = max(0.0, now_s - beat.heartbeat_at.timestamp())
            cycle_age_s = (
                max(0.0, now_s - beat.last_cycle_at.timestamp()) if beat.last_cycle_at else None
            )
            alive = beat.state in _LIVE_STATES and age_s <= self.engine_stale_after_s
            since_s = (
                cycle_age_s if cycle_age_s is not None else now_s - beat.started_at.timestamp()
            )
            views.append(
                EngineView(beat, alive, age_s, cycle_age_s, alive and since_s > stall_after_s)
            )
        by_status = await self.store.count_runs_by_status()
        lag_s = max(await self.store.poll_lags_s(utc(now_s)), default=0.0)
        problems: list[str] = []
        live = [view for view in views if view.alive]
        active = sum(n for status, n in by_status.items() if not status.is_terminal)
        if not live and active:
            problems.append(
                f"No engine is running: {active} active run(s) are not being tracked. Start "
                "one with `polysync engine` (or `polysync serve`)."
            )
        for view in live:
            beat = view.heartbeat
            if view.stalled:
                problems.append(
                    f"Engine {beat.owner} has not completed a cycle for "
                    f"{view.last_cycle_age_s or 0:.0f} s"
                    + (f" (last error: {beat.last_error})." if beat.last_error else ".")
                )
            elif beat.state is EngineState.BACKING_OFF:
                problems.append(
                    f"Engine {beat.owner} cannot work ({beat.failures} failed cycle(s) in a row: "
                    f"{beat.last_error}); it retries on its own."
                )
        if live and lag_s > stall_after_s:
            problems.append(f"The most overdue poll of an active run is {lag_s:.0f} s late.")
        return SystemStatus(views, by_status, lag_s, problems)

    @property
    def engine_stale_after_s(self) -> float:
        """A heartbeat older than this says its engine is gone (three missed beats, >= 15 s)."""
        return max(15.0, 3 * self.engine.settings.heartbeat_s)

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
