"""What the engine needs from the outside world, as protocols: the store of platforms, jobs and runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from polysync.domain.models import ImportedJob, RunSnapshot
from polysync.domain.records import (
    Job,
    NewPlatform,
    NewRun,
    Platform,
    Run,
    RunEvent,
    RunFilter,
)


class Store(Protocol):
    """Persistence of platforms, jobs, runs and status history.

    Every method is one transaction. Writes that change a run's status add one RunEvent in the
    same transaction, and never change a terminal status again (D6). Times are aware UTC datetimes
    given by the caller (the engine's clock), never read from the database's clock.
    """

    # ------------------------------------------------------------------ platforms
    # `actor` (str(Actor)) is recorded in the audit trail with each change, in its transaction.
    async def add_platform(
        self, new: NewPlatform, now: datetime, *, actor: str | None = None
    ) -> Platform:
        """Raises UsageError if the name is taken."""
        ...

    async def update_platform(
        self, platform: Platform, now: datetime, *, actor: str | None = None
    ) -> Platform: ...

    async def get_platform(self, ref: int | str) -> Platform:
        """By id or by name; NotFoundError if absent."""
        ...

    async def list_platforms(self) -> Sequence[Platform]: ...

    async def remove_platform(
        self, platform_id: int, *, actor: str | None = None, now: datetime | None = None
    ) -> None:
        """Removes the platform with its jobs and runs; UsageError while it has active runs."""
        ...

    # ------------------------------------------------------------------ jobs
    async def upsert_job(
        self,
        platform_id: int,
        job: ImportedJob,
        now: datetime,
        *,
        actor: str | None = None,
        action: str = "job.import",
    ) -> tuple[Job, bool]:
        """Create the job, or replace the schema of the one with the same External Id on that
        platform (the caller has already merged the user's settings in). True if created."""
        ...

    async def get_job(self, ref: int | str, *, platform_id: int | None = None) -> Job:
        """By id, or by External Id or name within a platform; NotFoundError if absent, UsageError
        if a name is ambiguous."""
        ...

    async def list_jobs(self, platform_id: int | None = None) -> Sequence[Job]: ...

    async def save_job(self, job: Job, now: datetime, *, actor: str | None = None) -> Job:
        """Store user edits (name, description, parameter Direction and stored values)."""
        ...

    # ------------------------------------------------------------------ runs
    async def create_run(self, new: NewRun, now: datetime) -> Run:
        """Status Starting ("Submitting to Databricks"), due for dispatch now; one event."""
        ...

    async def record_submitted(
        self,
        run_id: int,
        databricks_run_id: str,
        run_page_url: str,
        now: datetime,
        next_poll_at: datetime,
    ) -> Run:
        """run-now answered: keep the Databricks RunId and the best URL known (D7); one event."""
        ...

    async def record_submissions(
        self, submissions: Sequence[tuple[int, str, str, datetime]], now: datetime
    ) -> Sequence[Run]:
        """Several `record_submitted` (run id, RunId, URL, next poll) in one transaction."""
        ...

    async def record_submit_attempt(self, run_id: int, message: str, retry_at: datetime) -> Run:
        """run-now could not be confirmed (transient): count it, try again at `retry_at`."""
        ...

    async def record_snapshot(
        self, run_id: int, snapshot: RunSnapshot, now: datetime, next_poll_at: datetime | None
    ) -> tuple[Run, bool]:
        """Store a poll: the per-task snapshot always; an event only when the status or message
        changed. A terminal run keeps its status. True if an event was written."""
        ...

    async def record_snapshots(
        self, polls: Sequence[tuple[int, RunSnapshot, datetime, datetime | None]]
    ) -> Sequence[tuple[Run, bool]]:
        """Several `record_snapshot` (run id, snapshot, observed at, next poll) in one
        transaction: a cycle over thousands of runs commits once."""
        ...

    async def record_failure(self, run_id: int, message: str, now: datetime) -> Run:
        """The run could not start (refused by Databricks, deleted job, ...): Failed; one event."""
        ...

    async def request_cancel(
        self, run_id: int, now: datetime, *, cancelled_by: str | None = None
    ) -> Run:
        """Mark that the user asked to cancel (the engine sends it), and who; one event."""
        ...

    async def get_run(self, run_id: int) -> Run: ...

    async def list_runs(self, where: RunFilter) -> Sequence[Run]:
        """Newest first."""
        ...

    async def run_events(self, run_id: int) -> Sequence[RunEvent]:
        """Oldest first."""
        ...

    async def job_durations_s(self, job_id: int, limit: int = 10) -> Sequence[float]:
        """Durations of the job's latest successful runs (for adaptive polling)."""
        ...

    # ------------------------------------------------------------------ engine leases
    async def claim_due_runs(
        self, owner: str, now: datetime, lease_s: float, limit: int
    ) -> Sequence[Run]:
        """Lease up to `limit` non-terminal runs that are due (`next_poll_at <= now`) and not
        leased by another live engine (lease absent, expired, or ours). PostgreSQL uses
        `FOR UPDATE SKIP LOCKED`, so two engines never claim the same run."""
        ...

    async def reschedule_runs(self, run_ids: Sequence[int], next_poll_at: datetime) -> None:
        """Set the next poll of unchanged runs in one statement (a sweep saw no change in them)."""
        ...

    async def release_runs(self, owner: str, run_ids: Sequence[int]) -> None:
        """Drop our leases (graceful shutdown): another engine may take them at once."""
        ...

    async def make_all_due(self, now: datetime) -> int:
        """Reconcile on start-up: every non-terminal run is due now. Returns how many."""
        ...
