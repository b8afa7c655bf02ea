"""The composition root: the only module that chooses implementations and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

import httpx
from pydantic import ValidationError

from polysync.clock import Clock, SystemClock
from polysync.config import Settings
from polysync.databricks.auth import check_secret_references
from polysync.databricks.client import ConnectivityReport, DatabricksClient
from polysync.databricks.policy import (
    ConnectionPolicy,
    host_allowed,
    is_loopback,
    parse_host_patterns,
    secret_references,
)
from polysync.databricks.ratelimit import RateLimiterRegistry
from polysync.databricks.settings import WorkspaceSettings
from polysync.domain.access import Actor, ApiKey
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
    DataType,
    Direction,
    ImportedJob,
    JobTypeName,
    Parameter,
    ParameterDiff,
    RunStatus,
    cancel_noop_message,
)
from polysync.domain.parameters import (
    Keep,
    ParameterEdit,
    apply_edits,
    check_secret_choice,
    checked_parameter,
    sync_job,
)
from polysync.domain.records import (
    PLATFORM_ATTRIBUTES,
    EngineHeartbeat,
    EngineState,
    Job,
    NewPlatform,
    NewSecretVault,
    Platform,
    Run,
    RunEvent,
    RunFilter,
    SecretVault,
    utc,
)
from polysync.engine.engine import Engine, EngineSettings
from polysync.engine.polling import PollPolicy
from polysync.engine.ports import Store
from polysync.errors import (
    ConfigError,
    ConflictError,
    Hint,
    NotFoundError,
    PolysyncError,
    SecretReferenceError,
    StoreUnavailableError,
    UsageError,
)
from polysync.jobtypes.base import DiscoveredJob, JobType, JobTypeRegistry
from polysync.jobtypes.registry import default_registry
from polysync.lookup import find_api_key, find_job, find_platform
from polysync.profiles import ContentionProfiles, ProfileStore
from polysync.secrets import VAULT_NAME, SecretReference, SecretScope
from polysync.store import open_store, upgrade
from polysync.store.auth_fields import is_secret_field
from polysync.task_services import TaskServices
from polysync.vaults.keyvault import PROBE_SECRET, describe_auth
from polysync.vaults.ports import VaultStore
from polysync.vaults.resolver import VaultSecrets
from polysync.vaults.settings import KeyVaultSettings, settings_of

if TYPE_CHECKING:
    from polysync.api.ports import ApiKeyStore

log = logging.getLogger(__name__)
TransportFactory = Callable[[Platform], httpx.AsyncBaseTransport | None]
_LIVE_STATES = frozenset({EngineState.STARTING, EngineState.RUNNING, EngineState.BACKING_OFF})


def workspace_settings(platform: Platform, *, new: bool = False) -> WorkspaceSettings:
    """The client settings of a platform record (auth holds references only); `new`: of a
    platform being added (nothing stored to fix yet)."""
    try:
        client_options = {
            key: value for key, value in platform.options.items() if key != PLATFORM_ATTRIBUTES
        }
        _check_attributes(platform.options.get(PLATFORM_ATTRIBUTES))
        return WorkspaceSettings.model_validate(
            {"url": platform.workspace_url, "auth": dict(platform.auth), **client_options}
        )
    except ValidationError as exc:
        if new:
            raise UsageError(
                f"The settings of platform {platform.name!r} are not valid: "
                f"{_first_error(exc)}. Correct that value and add the platform again."
            ) from exc
        raise UsageError(
            f"Platform {platform.name!r} is not usable: {_first_error(exc)}.",
            hint=Hint("edit_platform", "Correct the platform's settings.", platform.name),
        ) from exc


def connection_policy(settings: Settings, vaults: VaultSecrets | None = None) -> ConnectionPolicy:
    """The policy the settings describe: host allow-list, plain HTTP, secret scope (with the
    Secret Vaults that read `vault://` references, when given)."""
    return ConnectionPolicy(
        workspace_hosts=parse_host_patterns(settings.workspace_hosts),
        allow_insecure_http=settings.allow_insecure_http,
        secret_scope=SecretScope(
            env_prefix=settings.secret_env_prefix, secrets_dir=settings.secrets_dir, vaults=vaults
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

    def checked_settings(self, platform: Platform, *, new: bool = False) -> WorkspaceSettings:
        """The platform's client settings, refused (UsageError / ConfigError) when they are not
        valid or break this process's connection policy (host allow-list, http, secret scope);
        `new`: of a platform being added."""
        settings = workspace_settings(platform, new=new)
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
class VaultTestReport:
    """Test connectivity of a Secret Vault: signed in and allowed to read (never a value)."""

    vault: SecretVault
    ok: bool
    signed_in_as: str
    message: str
    secret: str | None = None  # the secret read, when one was named
    version: str | None = None  # its version as read


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
        vaults: VaultSecrets | None = None,
    ) -> None:
        self.store = store
        self.connections = connections
        self.engine = engine
        self.clock = clock
        self.settings = settings
        self.tasks = TaskServices(store, clock, wake=engine.wake)
        """Tasks and TaskRuns (issue 12): see polysync.task_services."""
        self.vault_store = cast(VaultStore, store)
        self.vaults = vaults or VaultSecrets(
            self.vault_store.get_vault, clock, connections.policy.secret_scope
        )
        # Contention profiles (D14): the SQL store implements their store protocol too.
        self.profiles = ContentionProfiles(cast(ProfileStore, store), clock)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        api_clock: Clock | None = None,
        transport_factory: TransportFactory | None = None,
        engine_settings: EngineSettings | None = None,
        vault_clock: Clock | None = None,
    ) -> Services:
        """`clock` schedules the engine; `api_clock` paces API calls and retries (real time by
        default - only a benchmark against a fast emulator sets both to emulated time);
        `vault_clock` ages the Secret Vaults' cache (`api_clock` by default)."""
        clock = clock or SystemClock()
        store = await open_store(settings.resolved_database_url())
        # `vault://` references: read through the registered vaults, cached on the API clock.
        vaults = VaultSecrets(
            store.get_vault,
            vault_clock or api_clock or SystemClock(),
            connection_policy(settings).secret_scope,
        )
        connections = Connections(
            api_clock or SystemClock(),
            transport_factory=transport_factory,
            policy=connection_policy(settings, vaults),
        )
        policy = PollPolicy(
            min_interval_s=settings.poll_min_s,
            max_interval_s=max(settings.poll_min_s, settings.poll_max_s),
            sweep_interval_s=settings.sweep_interval_s,
            # The shortest poll bounds the cancel confirmation too.
            cancel_poll_s=settings.poll_min_s,
        )
        engine = Engine(
            store,
            connections,
            clock,
            engine_settings
            or EngineSettings(
                policy=policy,
                lease_s=settings.lease_s,
                profile_recheck_s=settings.profile_recheck_s,
            ),
        )
        return cls(store, connections, engine, clock, settings, vaults)

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
            await self.vaults.aclose()
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
        checked = self.connections.checked_settings(probe, new=True)
        await self._check_vaults_named(secret_references(checked))
        platform = await self.store.add_platform(
            replace(new, workspace_url=checked.url), self.now(), actor=_who(actor)
        )
        try:
            await check_secret_references(checked, self.connections.policy.secret_scope)
        except SecretReferenceError as exc:
            # Saved all the same: the variable or file may be provided later (a deployment
            # sets it); until then nothing can start, and Execute Now says so.
            log.warning(
                "platform %r saved, but its credentials cannot be read yet: %s",
                platform.name,
                exc.message,
            )
        return platform

    async def update_platform(self, platform: Platform, *, actor: Actor | None = None) -> Platform:
        """Save an edited platform, checked as `add_platform` checks a new one (text fields only
        where they changed: a record saved before a limit existed stays editable)."""
        stored = await self.store.get_platform(platform.id)
        _check_platform_fields(platform, stored)
        checked = self.connections.checked_settings(platform)
        await self._check_vaults_named(secret_references(checked))
        edited = replace(platform, workspace_url=checked.url)
        return await self.store.update_platform(
            edited, self.now(), actor=_who(actor), idle_only=_identity_change(stored, edited)
        )

    async def remove_platform(self, ref: int | str, *, actor: Actor | None = None) -> Platform:
        """Remove a platform with its jobs and runs (ConflictError while it has active runs)."""
        platform = await self.get_platform(ref)
        await self.store.remove_platform(platform.id, actor=_who(actor), now=self.now())
        return platform

    async def test_platform(self, ref: str) -> ConnectivityReport:
        platform = await self.get_platform(ref)
        return await self.connections.client(platform).test_connectivity()

    async def discover(self, ref: str) -> tuple[Platform, Sequence[DiscoveredJob]]:
        """Get Pipelines: every job type registered for the platform's provider discovers its
        jobs, concurrently; the lists joined in registration order."""
        platform = await self.get_platform(ref)
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
        platform = await self.get_platform(ref)

        def canonical(text: str) -> str:
            return self.connections.for_external_id(platform, text).validate_external_id(text)

        unique = None if external_ids is None else unique_ids(external_ids, canonical=canonical)
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

    # ------------------------------------------------------------------ secret vaults (D15)
    async def add_vault(self, new: NewSecretVault, *, actor: Actor | None = None) -> SecretVault:
        """Register a Secret Vault: its name (VAULT_NAME, the `vault://NAME/` of references),
        description, URL (https, a Key Vault host, loopback or POLYSYNC_WORKSPACE_HOSTS),
        auth and options checked here, once, for every adapter (UsageError / ConfigError);
        ConflictError when the name is taken. Its client secret reference is not read now."""
        settings = self.check_vault(new)
        return await self.vault_store.add_vault(
            replace(new, vault_url=settings.url), self.now(), actor=_who(actor)
        )

    def check_vault(self, new: NewSecretVault) -> KeyVaultSettings:
        """The one validation path of a Secret Vault (see `add_vault`); its settings."""
        check_name(new.name, field="The vault name")
        if VAULT_NAME.fullmatch(new.name) is None:
            raise UsageError(
                f"The vault name {new.name[:200]!r} cannot be used in `vault://NAME/SECRET` "
                "references: use 1-63 letters, digits and dashes, not starting or ending with "
                "a dash (e.g. `prod-kv`)."
            )
        check_description(new.description)
        try:
            settings = settings_of(new.vault_url, dict(new.auth), dict(new.options))
        except ValidationError as exc:
            raise UsageError(
                f"The settings of vault {new.name!r} are not valid: {_first_error(exc)}. "
                "Correct that value and add the vault again."
            ) from None
        hosts = self.connections.policy.workspace_hosts
        host = settings.host
        if not (
            settings.is_key_vault_host
            or is_loopback(host)
            or (hosts is not None and host_allowed(host, hosts))
        ):
            raise ConfigError(
                f"The host {host} of vault {new.name!r} is not an Azure Key Vault host "
                "(*.vault.azure.net and the sovereign clouds' vault domains) nor loopback: "
                "Polysync sends a Key Vault token only there. An administrator of the server "
                "can allow other hosts with POLYSYNC_WORKSPACE_HOSTS."
            )
        return settings

    async def list_vaults(self) -> Sequence[SecretVault]:
        return await self.vault_store.list_vaults()

    async def get_vault(self, ref: int | str) -> SecretVault:
        """By id or name (NotFoundError otherwise)."""
        if isinstance(ref, str) and ref.strip().isdigit():
            try:
                return await self.vault_store.get_vault(int(ref.strip()))
            except NotFoundError:
                pass
        return await self.vault_store.get_vault(ref)

    async def remove_vault(self, ref: int | str, *, actor: Actor | None = None) -> SecretVault:
        """Remove a Secret Vault (ConflictError while a platform's credentials name it)."""
        vault = await self.get_vault(ref)
        await self.vault_store.remove_vault(vault.id, actor=_who(actor), now=self.now())
        self.vaults.forget(vault.name)
        return vault

    async def test_vault(self, ref: int | str, secret: str | None = None) -> VaultTestReport:
        """Test connectivity: sign in and read `secret` (its value is never shown), or without
        one read a secret that should not exist, where Key Vault's 404 proves the sign-in and
        the permission to read. The report says what failed, never a value."""
        vault = await self.get_vault(ref)
        if secret is not None:
            SecretReference.parse(f"vault://{vault.name}/{secret}")  # a usable name, or refused
        try:
            settings = settings_of(vault.vault_url, dict(vault.auth), dict(vault.options))
        except ValidationError as exc:
            return VaultTestReport(vault, False, "?", f"not usable: {_first_error(exc)}")
        who = describe_auth(settings)
        name = secret or PROBE_SECRET
        try:
            read = await self.vaults.read(
                vault, name, None, what=f"Secret Vault {vault.name!r}, secret {name!r}"
            )
        except SecretReferenceError as exc:
            if secret is None and "has no such secret" in exc.message:
                return VaultTestReport(
                    vault,
                    True,
                    who,
                    "Signed in and allowed to read secrets (Key Vault answered "
                    f"that {PROBE_SECRET!r} does not exist, as expected).",
                )
            return VaultTestReport(vault, False, who, exc.message)
        if secret is None:
            return VaultTestReport(vault, True, who, "Signed in and allowed to read secrets.")
        return VaultTestReport(
            vault,
            True,
            who,
            f"Signed in and read secret {secret!r} (version {read.version}; value not shown).",
            secret,
            read.version,
        )

    # ------------------------------------------------------------------ jobs
    async def get_job(self, ref: str, platform: str | None = None) -> Job:
        """By Polysync id, External Id, name, or name ignoring case and spaces, within
        `platform` when given (`polysync.lookup.find_job`)."""
        return await find_job(self.store, ref, platform)

    async def get_platform(self, ref: int | str) -> Platform:
        """By id, name, or name ignoring case and spaces (`polysync.lookup.find_platform`)."""
        return await find_platform(self.store, ref)

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

    async def save_job(
        self, job: Job, *, actor: Actor | None = None, may_choose_secrets: bool = True
    ) -> Job:
        """Save a user's edits of a job: name, description, and each parameter's Data Type,
        Direction and stored value, each within its limit (polysync.domain.limits) and through
        the one parameter rule (`checked_parameter`: a value fits its Data Type and is kept as
        typed; a Secret's is a secret reference within this server's scope). UsageError
        otherwise; AccessDeniedError when `may_choose_secrets` is false (below admin on the API
        and web UI) and a Secret's reference would change. Returns the job as stored.

        Only what the user changed is checked: a name or a description imported from Databricks
        with characters the limits refuse (a hostile workspace's) does not block editing the
        parameters."""
        stored = await self.store.get_job(job.id)
        if job.name != stored.name:
            check_name(job.name, field="The job name", max_chars=MAX_JOB_NAME_CHARS)
        if job.description != stored.description:
            check_description(job.description)
        before = {p.key: p for p in stored.parameters}
        if set(before) != {p.key for p in job.parameters}:
            raise UsageError(
                f"The parameters of job {stored.id} changed since they were read (someone synced "
                "them?). Read the job again and make the change again."
            )
        checked: list[Parameter] = []
        for parameter in job.parameters:
            value = parameter.stored_value
            if value is not None and value != before[parameter.key].stored_value:
                if parameter.reference_only:
                    raise UsageError(
                        f"Parameter {parameter.name!r} is imported for reference only "
                        f"({parameter.source}) and never sent: it takes no stored value."
                    )
                check_parameter_value(parameter.name, value)
            checked.append(checked_parameter(before[parameter.key], parameter))
        check_secret_choice(stored.parameters, checked, may_choose_secrets=may_choose_secrets)
        changed = {
            p.name: p.stored_value
            for p in checked
            if p.is_job_level and p != before[p.key]  # a narrower scope since: still editable
        }
        await self._check_secret_references(checked, changed)
        return await self.store.save_job(
            replace(job, parameters=tuple(checked)), self.now(), actor=_who(actor)
        )

    async def set_parameter(
        self,
        job: Job,
        name: str,
        *,
        task_key: str | Keep | None = Keep.KEEP,
        data_type: DataType | Keep = Keep.KEEP,
        direction: Direction | Keep | None = Keep.KEEP,
        stored_value: str | Keep | None = Keep.KEEP,
        actor: Actor | None = None,
        may_choose_secrets: bool = True,
    ) -> Job:
        """Change one parameter (`polysync jobs set-param`, a PATCH of one parameter): the
        fields not given are kept; None clears a Direction (= Input) or a stored value. Found by
        name (and `task_key` when the name is on several scopes; UsageError / UnknownParameterError
        otherwise), then saved through `save_job`."""
        edit = ParameterEdit(name, task_key, data_type, direction, stored_value)
        return await self.save_job(
            replace(job, parameters=apply_edits(job, [edit])),
            actor=actor,
            may_choose_secrets=may_choose_secrets,
        )

    async def _check_secret_references(
        self, parameters: Sequence[Parameter], values: Mapping[str, str | None]
    ) -> None:
        """Each Secret value given (a stored value, a run's override) parses as a reference
        within this server's secret scope, a `vault://` one naming a registered vault
        (SecretReferenceError); it is read only at run-now."""
        scope = self.connections.policy.secret_scope
        secret = {p.name for p in parameters if p.is_job_level and p.data_type is DataType.SECRET}
        for name, value in values.items():
            if name in secret and value is not None:
                try:
                    SecretReference.parse(value, scope)
                    await self._check_vaults_named([value])
                except SecretReferenceError as exc:
                    raise SecretReferenceError(
                        f"Secret parameter {name!r}: {exc.message}"
                    ) from None

    async def _check_vaults_named(self, references: Sequence[str]) -> None:
        """SecretReferenceError when a `vault://` reference names no registered vault."""
        for text in references:
            reference = SecretReference.parse(text)
            if reference.scheme != "vault":
                continue
            name = reference.vault_parts[0]
            try:
                await self.vault_store.get_vault(name)
            except NotFoundError:
                raise SecretReferenceError(
                    f"secret reference {reference}: no Secret Vault named {name!r} is "
                    "registered: add it first with `polysync vaults add` (or POST "
                    "/api/v1/vaults)"
                ) from None

    # ------------------------------------------------------------------ runs
    async def execute(
        self,
        job: Job,
        overrides: Mapping[str, str],
        *,
        actor: Actor | None = None,
        may_choose_secrets: bool = True,
    ) -> Run:
        """Execute Now: validate everything that can be checked here - the values (D2-D4), the
        platform's settings and that its secret references resolve - then commit the run and
        return it, Starting. An engine starts it (`run_forever` in `polysync serve` or
        `polysync engine`; a command with none running calls `dispatch`). Raises UsageError or
        ConfigError (SecretReferenceError) before anything is recorded, so a refused command
        leaves no run behind for an engine to start later (issue 8). The overrides are checked
        against the limits first (at most MAX_PARAMETERS_PER_RUN, each value at most
        MAX_PARAMETER_VALUE_CHARS). A Secret parameter's override is a secret reference within
        this server's scope, read only when run-now is sent; giving one needs
        `may_choose_secrets` (AccessDeniedError). The run records `actor` as executed_by."""
        await self._check_execute(job, overrides, may_choose_secrets=may_choose_secrets)
        return await self.engine.submit(job, overrides, executed_by=_who(actor))

    async def _check_execute(
        self, job: Job, overrides: Mapping[str, str], *, may_choose_secrets: bool
    ) -> None:
        """What `execute` checks before it records anything (see there)."""
        check_parameter_values(overrides)
        check_secret_choice(
            job.parameters, job.parameters, overrides, may_choose_secrets=may_choose_secrets
        )
        await self._check_secret_references(job.parameters, overrides)
        platform = await self.store.get_platform(job.platform_id)
        await check_secret_references(
            workspace_settings(platform), self.connections.policy.secret_scope
        )

    async def execute_once(
        self,
        job: Job,
        overrides: Mapping[str, str],
        request_key: str,
        *,
        actor: Actor | None = None,
        may_choose_secrets: bool = True,
    ) -> tuple[Run, bool]:
        """`execute`, at most once per `request_key` (an `Idempotency-Key` header) of this
        actor: (run, replayed). The same key with the same job and overrides answers the run it
        made (replayed); with another job or other overrides it is refused (ConflictError), so a
        client retrying after a lost answer never starts a second run."""
        key = "request-" + hashlib.sha256(f"{_who(actor)}\n{request_key}".encode()).hexdigest()
        for _ in range(2):
            existing = await self.store.find_run_by_key(key)
            if existing is not None:
                if existing.job_id != job.id or dict(existing.overrides) != dict(overrides):
                    raise ConflictError(
                        f"Idempotency-Key {request_key[:80]!r} was already used for run "
                        f"{existing.id} with another job or other parameters: send a new key "
                        "for a new run."
                    )
                return existing, True
            await self._check_execute(job, overrides, may_choose_secrets=may_choose_secrets)
            try:
                run = await self.engine.submit(job, overrides, executed_by=_who(actor), key=key)
            except ConflictError:
                continue  # the same key committed by a concurrent request: answer with its run
            return run, False
        raise ConflictError(f"Idempotency-Key {request_key[:80]!r} is being used concurrently.")

    async def cancel(self, run_id: int, *, actor: Actor | None = None) -> Run:
        """Record the request to cancel (D10), with `actor` as cancelled_by, and return: an
        engine sends runs/cancel and polls for the final status. ConflictError (D10's no-op
        message) when the run has already ended, also when it ended while being asked."""
        run = await self.store.get_run(run_id)
        if run.is_terminal:
            raise ConflictError(cancel_noop_message(run.id, run.status))
        try:
            return await self.engine.request_cancel(run, cancelled_by=_who(actor))
        except UsageError:
            latest = await self.store.get_run(run_id)
            if latest.is_terminal:  # it ended between the read and the request
                raise ConflictError(cancel_noop_message(latest.id, latest.status)) from None
            raise

    def supports_repair(self, job_type: str) -> bool:
        """Whether runs of the Job Type `job_type` can be repaired (D13; the registry says)."""
        return self.connections.registry.supports_repair(job_type)

    async def repair_run(self, run_id: int, *, actor: Actor | None = None) -> Run:
        """Repair a Failed or Cancelled run by hand (D13): its failed and skipped tasks rerun in
        the same Databricks run. Recorded as intent (Running, "Repair #N requested (tasks:
        ...)"), with `actor` as who asked; an engine sends it once and follows the run to its
        new end. ConflictError (409 / exit 2) for any other run, or a Job Type whose runs cannot
        be repaired; NotFoundError for an unknown run; DatabricksError when the run's repair
        history cannot be read."""
        run = await self.store.get_run(run_id)
        return await self.engine.request_repair(run, requested_by=_who(actor))

    async def dispatch(self, run_id: int) -> Run:
        """Work on this one run now, in this process, if it is due and no live engine holds it:
        start it, send its cancel, or poll it (`Engine.drive`). For commands with no engine
        running; never a cycle over other runs. Returns the run as stored afterwards."""
        await self.engine.drive(run_id)
        return await self.store.get_run(run_id)

    async def poll_lags_s(self) -> list[float]:
        """How late each overdue poll is now (seconds): runs due in the store (nobody holds
        them, or their engine stopped renewing its lease) and the runs this process's engine
        holds in memory. StoreUnavailableError when the database cannot be reached."""
        return [*await self.store.poll_lags_s(utc(self.clock.now())), *self.engine.poll_lags_s()]

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

    # ------------------------------------------------------------------ API keys
    # polysync.api is imported on use: a CLI command that needs no key loads no FastAPI.
    def _key_store(self) -> ApiKeyStore:
        from polysync.api.ports import ApiKeyStore

        if not isinstance(self.store, ApiKeyStore):
            raise ConfigError("API keys need a store that keeps them (SqlStore).")
        return self.store

    async def create_api_key(self, name: str, role: str) -> tuple[ApiKey, str]:
        """A new key (docs/security.md): its record and the key itself, shown this once.
        UsageError for a bad name or role."""
        from polysync.api.keys import create_api_key

        return await create_api_key(self._key_store(), name, role, now=self.now())

    async def list_api_keys(self) -> Sequence[ApiKey]:
        return await self._key_store().list_api_keys()

    async def revoke_api_key(self, ref: str) -> ApiKey:
        """Revoke the key `ref` names (id, prefix or name; `find_api_key`): it stops working at
        once. NotFoundError / UsageError (ambiguous) naming `ref`."""
        from polysync.api.keys import PREFIX_CHARS, revoke_api_key

        store = self._key_store()
        key = find_api_key(await store.list_api_keys(), ref, prefix_chars=PREFIX_CHARS)
        return await revoke_api_key(store, key.id, now=self.now())

    async def run_details(self, run_id: int) -> tuple[Run, Job, Sequence[RunEvent]]:
        run = await self.store.get_run(run_id)
        return run, await self.store.get_job(run.job_id), await self.store.run_events(run_id)


def _who(actor: Actor | None) -> str | None:
    return None if actor is None else str(actor)


def _identity_change(stored: Platform, edited: Platform) -> str | None:
    """What of the workspace or the identity signing in to it changes ("its workspace URL",
    "its sign-in identity"), or None. Both decide which workspace's runs the engine polls, so
    neither may change under active runs (ConflictError). A new secret reference for the same
    identity (a rotated token) is no such change."""
    changes = []
    # Both as WorkspaceSettings normalised them (scheme://host[:port]); hosts are case-blind.
    if stored.workspace_url.rstrip("/").lower() != edited.workspace_url.rstrip("/").lower():
        changes.append("its workspace URL")
    if _identity(stored) != _identity(edited):
        changes.append("its sign-in identity (auth method, tenant or client id)")
    return " and ".join(changes) or None


def _identity(platform: Platform) -> dict[str, Any]:
    """The non-secret auth fields, defaults filled in (a form that sends a default explicitly
    changes nothing); as stored when the record no longer validates."""
    try:
        auth: Mapping[str, Any] = workspace_settings(platform).auth.model_dump(mode="json")
    except UsageError:
        auth = platform.auth
    return {key: value for key, value in auth.items() if not is_secret_field(str(key))}


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
