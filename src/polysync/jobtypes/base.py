"""The job-type interface and registry: what the engine and services need from any job type.

A job type is one module (or package) behind `JobType`; `JobTypeRegistry` maps Job Type names to
the factories that build them for a platform. Nothing outside `polysync.jobtypes` names a
concrete job type: services ask the registry (`polysync.jobtypes.registry`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar, runtime_checkable

from polysync.domain.models import ImportedJob, JobTypeName, ParameterDiff, RunSnapshot
from polysync.domain.records import Platform
from polysync.errors import PolysyncError, RepairNotSupportedError, UsageError

T = TypeVar("T")

MAX_IDEMPOTENCY_TOKEN = 64  # Databricks' limit (reference §3); every job type stays within it
# Import fans out one read per job; the platform's rate limiter, not this, sets the pace.
IMPORT_CONCURRENCY = 32


def idempotency_token(run_key: str) -> str:
    """A stable token (≤ 64 chars) for one of our runs, so a retried start finds the same run (D8)."""
    digest = hashlib.sha256(run_key.encode()).hexdigest()[:40]
    return f"polysync-{digest}"


@dataclass(frozen=True, slots=True)
class DiscoveredJob:
    """One entry of a platform's "Get Pipelines": enough to choose what to import."""

    external_id: str
    name: str
    kind: JobTypeName
    task_count: int
    """Tasks in the job (a lower bound when `tasks_truncated`)."""
    tags: Mapping[str, str]
    creator: str | None
    created_time_ms: int | None
    tasks_truncated: bool = False
    """The list cut the tasks (2.2, `has_more`) and jobs/get could not count them: "100+"."""


@dataclass(frozen=True, slots=True)
class StartRequest:
    """What a start would send, built and validated before any API call: the parameter values
    as sent (strings, recorded with the run) and the request body (without the token)."""

    parameters_sent: Mapping[str, str]
    body: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StartedRun:
    """What a start returned: the platform's RunId (opaque text) and the best run URL so far."""

    run_id: str
    run_page_url: str
    parameters_sent: Mapping[str, str]
    idempotency_token: str


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """A cancel request's outcome: sent to the platform, or a no-op because the run had ended."""

    requested: bool
    message: str
    snapshot: RunSnapshot


class JobType(Protocol):
    """One kind of job on one platform. RunIds are opaque strings (e.g. "{pipeline}:{update}")."""

    name: JobTypeName

    async def discover(self) -> Sequence[DiscoveredJob]:
        """Every job of this type (or family of types) on the platform (Get Pipelines)."""
        ...

    def validate_external_id(self, external_id: str) -> str:
        """The External Id in canonical form; InvalidExternalIdError before any API call."""
        ...

    async def import_job(self, external_id: str) -> ImportedJob:
        """The job's schema as the platform has it now."""
        ...

    async def import_jobs(self, external_ids: Iterable[str]) -> list[ImportedJob | PolysyncError]:
        """Import many jobs concurrently; each entry is the job or the error for that id."""
        ...

    async def sync_parameters(self, job: ImportedJob) -> tuple[ImportedJob, ParameterDiff]:
        """Re-read the job and reconcile the stored schema, keeping the user's settings (D9)."""
        ...

    def build_start_request(self, job: ImportedJob, overrides: Mapping[str, str]) -> StartRequest:
        """Validate the External Id, every value and the platform's attributes; what to send.
        UsageError (or ConfigError) before any API call."""
        ...

    async def start(
        self, job: ImportedJob, overrides: Mapping[str, str], *, idempotency_token: str
    ) -> StartedRun:
        """Validate everything, then start one run; the same token never starts a second one."""
        ...

    async def poll(self, run_id: str) -> RunSnapshot:
        """The run's decoded status now, with its message and per-unit (task) detail."""
        ...

    async def cancel(self, run_id: str) -> CancelOutcome:
        """Ask the platform to cancel; asynchronous - keep polling for the final status."""
        ...

    def run_url(self, run_id: str, *, reported_url: str | None = None) -> str:
        """The best link to the run's page known now."""
        ...

    sweep_group: str
    """Job types whose runs one sweep covers share a group (every Jobs API run is in runs/list):
    the engine sweeps each group of a platform once per grid point, through any of its types."""

    def sweep_pays(self, listed_last: int | None, ours: int) -> bool:
        """Whether one `sweep` costs no more calls than a `poll` of each of `ours` runs, given
        how many runs the group's last sweep listed (None: never swept)."""
        ...

    async def sweep(self, run_ids: Collection[str]) -> Mapping[str, RunSnapshot]:
        """The state of our runs `run_ids` (by RunId) in as few calls as the type allows, with
        their task states; the answer may list other runs too. A run absent from it (ended, or
        not shown) is polled with `poll` by the engine to learn its end."""
        ...


@dataclass(frozen=True, slots=True)
class RepairPlan:
    """What a repair of an ended run will do, read from the platform before it is asked for
    (D13): the repair's number, the run's latest repair before it, and the tasks it reruns.

    `latest_repair_id` is what makes the repair happen once: it is recorded with the request and
    sent as `latest_repair_id`; once a repair after it exists, Databricks refuses another one as
    stale, and `RepairableJobType.repair` adopts the one that landed instead of sending again."""

    run_id: str
    """The platform's RunId of the run to repair."""
    number: int
    """This repair's number in the run's history: 1 for the first repair ("Repair #1")."""
    latest_repair_id: str | None
    """The run's latest repair before this one (`repair_history`), None if never repaired."""
    task_keys: tuple[str, ...]
    """The tasks it reruns: the failed ones and those they skipped, in the run's order."""


@dataclass(frozen=True, slots=True)
class RepairOutcome:
    """What `RepairableJobType.repair` did: the repair's id, and whether this call sent it
    (False: a repair after the plan's `latest_repair_id` had landed already, e.g. sent before a
    crash, and was adopted instead of sending a second one)."""

    repair_id: str
    sent: bool


@runtime_checkable
class RepairableJobType(JobType, Protocol):
    """A job type whose ended runs can be repaired in place (D13): the capability is declared by
    implementing these two methods, and by registering with `repairs=True` (so that callers
    holding only a Job Type name, such as a Task's retry strategy, can ask the registry).
    Databricks Workflow and Databricks Job have it (`jobs/runs/repair`); Notebook and Pipeline
    do not (`repair_capability` refuses them with `RepairNotSupportedError`)."""

    async def plan_repair(self, run_id: str) -> RepairPlan:
        """Read the ended run (`runs/get?include_history=true`): its latest repair and the
        tasks to rerun. UsageError when the platform says it is still in progress, or it has no
        failed task to rerun; DatabricksNotFoundError when it no longer exists."""
        ...

    async def repair(
        self, plan: RepairPlan, job: ImportedJob, parameters_sent: Mapping[str, str]
    ) -> RepairOutcome:
        """Rerun the plan's tasks in the same run with the run's own `parameters_sent` (Secret
        references are read for this request only), at most once per plan: a repair after
        `plan.latest_repair_id` already in `repair_history` is adopted, not sent again."""
        ...


def repair_capability(job_type: JobType) -> RepairableJobType:
    """`job_type` as a repairable job type; RepairNotSupportedError (a UsageError) when its
    runs cannot be repaired, naming the Job Type and what to do instead."""
    if isinstance(job_type, RepairableJobType):
        return job_type
    raise RepairNotSupportedError(
        f"A {job_type.name} run cannot be repaired: only job runs that rerun their failed "
        "tasks in place can (Databricks Workflow, Databricks Job). Start a new run instead."
    )


JobTypeFactory = Callable[[Platform, Any], JobType]
"""Builds a job type for a platform from the platform and its provider's client."""


@dataclass(frozen=True, slots=True)
class _Registration:
    name: JobTypeName
    provider: str
    factory: JobTypeFactory
    discovered_by: JobTypeName | None
    repairs: bool = False


class JobTypeRegistry:
    """Job Type names -> implementations, by provider. A type may be discovered by another (a
    family one listing finds, such as Databricks Job by Databricks Workflow's jobs/list, D5)."""

    def __init__(self) -> None:
        self._by_name: dict[JobTypeName, _Registration] = {}

    def register(
        self,
        name: JobTypeName,
        provider: str,
        factory: JobTypeFactory,
        *,
        discovered_by: JobTypeName | None = None,
        repairs: bool = False,
    ) -> None:
        """`repairs`: its runs can be repaired (it implements `RepairableJobType`, D13)."""
        if name in self._by_name:
            raise ValueError(f"Job Type {name!r} is already registered")
        if discovered_by is not None and discovered_by not in self._by_name:
            raise ValueError(f"Job Type {discovered_by!r} must be registered before {name!r}")
        self._by_name[name] = _Registration(name, provider, factory, discovered_by, repairs)

    @property
    def names(self) -> tuple[JobTypeName, ...]:
        return tuple(self._by_name)

    def supports_repair(self, name: JobTypeName) -> bool:
        """Whether runs of the Job Type `name` can be repaired (D13); False for unknown names."""
        registration = self._by_name.get(name)
        return registration is not None and registration.repairs

    @property
    def repairable(self) -> tuple[JobTypeName, ...]:
        """The Job Types whose runs can be repaired, in registration order (D13)."""
        return tuple(r.name for r in self._by_name.values() if r.repairs)

    def create(self, name: JobTypeName, platform: Platform, client: Any) -> JobType:
        """The job type `name` for `platform`; UsageError for a name nobody registered."""
        registration = self._by_name.get(name)
        if registration is None:
            known = ", ".join(self._by_name) or "none"
            raise UsageError(
                f"Job Type {name!r} is not known to this Polysync (known: {known}). Upgrade "
                f"Polysync, or remove the job."
            )
        return registration.factory(platform, client)

    def discoverers(self, platform: Platform, client: Any) -> list[JobType]:
        """Every job type registered for the platform's provider that discovers on its own, in
        registration order."""
        return [
            registration.factory(platform, client)
            for registration in self._by_name.values()
            if registration.provider == platform.provider and registration.discovered_by is None
        ]


async def bounded_gather(calls: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    """Every call's result in order, at most IMPORT_CONCURRENCY at a time. Each call is started
    only once it may run, so cancelling the whole (a client that went away) leaves no call
    created and never awaited."""
    semaphore = asyncio.Semaphore(IMPORT_CONCURRENCY)

    async def bounded(call: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await call()

    return list(await asyncio.gather(*(bounded(call) for call in calls)))


async def import_each(
    import_job: Callable[[str], Awaitable[ImportedJob]], external_ids: Iterable[str]
) -> list[ImportedJob | PolysyncError]:
    """`import_job` for each id concurrently (bounded); each entry the job or that id's error."""

    async def one(external_id: str) -> ImportedJob | PolysyncError:
        try:
            return await import_job(external_id)
        except PolysyncError as exc:
            return exc

    return await bounded_gather(partial(one, external_id) for external_id in external_ids)
