"""The job-type interface: what the engine needs from any platform's job type, and nothing more."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from polysync.domain.models import ImportedJob, JobKind, ParameterDiff, RunSnapshot


@dataclass(frozen=True, slots=True)
class DiscoveredJob:
    """One entry of a platform's "Get Pipelines": enough to choose what to import."""

    external_id: str
    name: str
    kind: JobKind
    task_count: int
    """Tasks in the job (a lower bound when `tasks_truncated`)."""
    tags: Mapping[str, str]
    creator: str | None
    created_time_ms: int | None
    tasks_truncated: bool = False
    """The list cut the tasks (2.2, `has_more`) and jobs/get could not count them: "100+"."""


@dataclass(frozen=True, slots=True)
class StartedRun:
    """What a start returned: the platform's RunId and the best run URL known so far (D7)."""

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
    """One kind of job on one platform (a Databricks workspace for Databricks Workflow)."""

    name: str

    async def discover(self) -> Sequence[DiscoveredJob]:
        """Every job on the platform with its classification (Get Pipelines)."""
        ...

    async def import_job(self, external_id: str) -> ImportedJob:
        """The job's schema as the platform has it now."""
        ...

    async def sync_parameters(self, job: ImportedJob) -> tuple[ImportedJob, ParameterDiff]:
        """Re-read the job and reconcile the stored schema, keeping the user's settings."""
        ...

    async def start(
        self, job: ImportedJob, overrides: Mapping[str, str], *, idempotency_token: str
    ) -> StartedRun:
        """Validate everything, then start one run; the same token never starts a second one."""
        ...

    async def poll(self, run_id: str) -> RunSnapshot:
        """The run's decoded status now."""
        ...

    async def cancel(self, run_id: str) -> CancelOutcome:
        """Ask the platform to cancel; asynchronous - keep polling for the final status."""
        ...

    def run_url(self, run_id: str, *, reported_url: str | None = None) -> str:
        """The best link to the run's page known now."""
        ...

    async def active_runs(self) -> Mapping[str, RunSnapshot]:
        """The state of every active run on the platform in one pass (by RunId), with its task
        states: how the engine watches all its runs of a platform at once. A run that ended is
        absent (learn its end with `poll`)."""
        ...
