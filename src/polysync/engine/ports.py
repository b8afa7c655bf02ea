"""What the engine needs from the outside world, as protocols: the store of platforms, jobs and runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from polysync.domain.models import ImportedJob, RunSnapshot, RunStatus
from polysync.domain.records import (
    EngineHeartbeat,
    Job,
    Lease,
    NewPlatform,
    NewRun,
    Platform,
    Run,
    RunEvent,
    RunFilter,
    RunRepair,
)
from polysync.tasks.mapping import UpstreamRunFacts
from polysync.tasks.model import Task, TaskRun
from polysync.tasks.schedule import Schedule
from polysync.tasks.states import TaskRunStatus


@dataclass(frozen=True, slots=True)
class Submission:
    """run-now answered for one of our runs: what to record (D7, D8)."""

    run_id: int  # ours
    databricks_run_id: str  # the RunId, opaque
    run_page_url: str
    next_poll_at: datetime
    lease: Lease | None = None  # the claim it was made under; None: an unfenced write


@dataclass(frozen=True, slots=True)
class Observation:
    """What one poll saw of one of our runs, and when to look again (None: never, it ended)."""

    run_id: int  # ours
    snapshot: RunSnapshot
    observed_at: datetime
    next_poll_at: datetime | None
    lease: Lease | None = None


@dataclass(frozen=True, slots=True)
class PollFailure:
    """A poll of one of our runs that failed: look again at `retry_at`. With a `message` (an
    unexpected or lasting error) it becomes the run message, with one event; the status stays."""

    run_id: int  # ours
    retry_at: datetime
    observed_at: datetime
    message: str | None = None
    lease: Lease | None = None


TaskChecker = Callable[[Task, Sequence[Task]], Task]
"""Checks a Task about to be saved against every other saved Task (`check_task`, then
`check_acyclic`), inside the saving transaction: returns the Task to save, or raises
TaskDefinitionError."""


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """One schedule of a Task as the scheduler needs it: its watermark (`last_fired_for`, the
    scheduled-for time of the last fire handled, or when it was saved or resumed)."""

    task_id: int
    position: int
    """Its place in the Task's schedules (0-based)."""
    schedule: Schedule
    last_fired_for: datetime
    task_paused: bool


@dataclass(frozen=True, slots=True)
class TaskRunFilter:
    """Which TaskRuns to list: of one Task, in some statuses, queued since a time; newest
    first, at most `limit` (1..1000)."""

    task_id: int | None = None
    statuses: tuple[TaskRunStatus, ...] = ()
    since: datetime | None = None
    limit: int = 100


class TaskStore(Protocol):
    """Persistence of Tasks and TaskRuns (issue 12; `polysync.store.task_store`). Each method is
    one transaction; TaskRuns are inserted at most once per (task, trigger, scheduled-for)."""

    async def save_task(
        self, task: Task, now: datetime, *, check: TaskChecker, actor: str | None = None
    ) -> Task: ...

    async def get_task(self, ref: int | str) -> Task: ...

    async def list_tasks(self) -> Sequence[Task]: ...

    async def delete_task(self, task_id: int, now: datetime) -> Task: ...

    async def set_task_paused(self, task_id: int, paused: bool, now: datetime) -> Task: ...

    async def list_schedule_states(self) -> Sequence[ScheduleState]: ...

    async def add_task_runs(
        self,
        task_id: int,
        new: Sequence[TaskRun],
        now: datetime,
        *,
        overlap: bool = True,
        watermark: tuple[int, datetime] | None = None,
    ) -> tuple[list[TaskRun], datetime | None]: ...

    async def record_fires(
        self, fires: Sequence[tuple[int, Sequence[TaskRun], tuple[int, datetime]]]
    ) -> list[tuple[int, list[TaskRun], datetime | None]]: ...

    async def get_task_run(self, task_run_id: int) -> TaskRun: ...

    async def list_task_runs(self, where: TaskRunFilter) -> Sequence[TaskRun]: ...

    async def latest_task_runs(self) -> Mapping[int, TaskRun]: ...

    async def active_task_runs(self) -> Sequence[TaskRun]: ...

    async def save_task_run(self, previous: TaskRun, updated: TaskRun) -> TaskRun: ...

    async def begin_task_runs(
        self, now: datetime, slots: int, *, running_limit: int | None = None
    ) -> list[TaskRun]: ...

    async def task_run_of_run(self, run_id: int) -> TaskRun | None: ...

    async def runs_by_id(self, run_ids: Sequence[int]) -> Mapping[int, Run]: ...

    async def downstream_task_ids(self, task_id: int) -> Sequence[int]: ...

    async def dependent_task_ids(self) -> Sequence[int]: ...

    async def decide_downstream(self, task_id: int, now: datetime) -> TaskRun | None: ...

    async def upstream_facts(self, task_run: TaskRun) -> Mapping[str, UpstreamRunFacts]: ...

    async def count_task_runs(self) -> Mapping[tuple[int, str, datetime], int]: ...


@dataclass(frozen=True, slots=True)
class SubmitAdmission:
    """What `admit_submits` decided: the runs whose run-now may be sent now, and those a
    contention profile held back (Queued until their next try, or Failed), as written (D14)."""

    begun: list[Run]
    held_back: list[Run]


class Store(TaskStore, Protocol):
    """Persistence of platforms, jobs, runs and status history.

    Every method is one transaction. Writes that change a run's status add one RunEvent in the
    same transaction, never change a terminal status again and never move the history backwards
    (D6, `RunStatus.may_follow`). Times are aware UTC datetimes given by the caller (the engine's
    clock), never read from the database's clock.

    Fencing (issue 8): a run write given a `lease` is dropped - the run is returned as stored,
    unchanged - unless the run still carries that lease's owner and token; an engine that lost a
    run can never write back a stale copy. Writes without a lease (a user's request) are not
    fenced. Transient database conflicts (deadlocks, serialization failures, a busy SQLite file)
    are retried inside the store.
    """

    # ------------------------------------------------------------------ platforms
    # `actor` (str(Actor)) is recorded in the audit trail with each change, in its transaction.
    async def add_platform(
        self, new: NewPlatform, now: datetime, *, actor: str | None = None
    ) -> Platform:
        """Raises ConflictError if the name is taken."""
        ...

    async def update_platform(
        self,
        platform: Platform,
        now: datetime,
        *,
        actor: str | None = None,
        idle_only: str | None = None,
    ) -> Platform:
        """Save it; with `idle_only` (what changes), ConflictError while it has active runs."""
        ...

    async def get_platform(self, ref: int | str) -> Platform:
        """By id or by name; NotFoundError if absent."""
        ...

    async def list_platforms(self) -> Sequence[Platform]: ...

    async def remove_platform(
        self, platform_id: int, *, actor: str | None = None, now: datetime | None = None
    ) -> None:
        """Removes the platform with its jobs and runs; ConflictError while it has active runs."""
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
        *,
        lease: Lease | None = None,
    ) -> Run:
        """run-now answered: keep the Databricks RunId and the best URL known (D7); one event."""
        ...

    async def record_submissions(
        self, submissions: Sequence[Submission], now: datetime
    ) -> Sequence[Run]:
        """Several `record_submitted` in one transaction (rows locked in id order)."""
        ...

    async def begin_submits(
        self, claims: Sequence[tuple[int, Lease | None]], now: datetime
    ) -> list[Run]:
        """Count a run-now about to be sent for each (run id, lease), in one transaction; the
        runs it may be sent for. Not those ended, whose lease was lost, or cancelled before any
        run-now (they end Cancelled here)."""
        ...

    async def admit_submits(
        self, claims: Sequence[tuple[int, Lease | None]], now: datetime, *, recheck_s: float
    ) -> SubmitAdmission:
        """`begin_submits`, with each run not admitted before judged against every enabled
        contention profile linked to its platform, in the same transaction (the profiles' rows
        locked in id order): admitted, it is counted (`admitted_at`); held back, it is Queued
        with the reason and looked at again when the profile may admit it (a concurrency
        profile: after `recheck_s`), or Failed (Reject, a full queue, a Queue Timeout) - its
        lease dropped either way (D14)."""
        ...

    async def record_submit_attempt(
        self,
        run_id: int,
        message: str,
        retry_at: datetime,
        *,
        lease: Lease | None = None,
        event_at: datetime | None = None,
    ) -> Run:
        """run-now could not be confirmed (begin_submit counted it): try again at `retry_at`. With `event_at`
        (an unexpected error), the message is also recorded as an event at that time."""
        ...

    async def record_snapshot(
        self,
        run_id: int,
        snapshot: RunSnapshot,
        now: datetime,
        next_poll_at: datetime | None,
        *,
        lease: Lease | None = None,
    ) -> tuple[Run, bool]:
        """Store a poll: the per-task snapshot always; an event only when the status or message
        changed. A terminal run keeps its status; a snapshot whose status may not follow the
        stored one (stale) only moves the next poll. True if an event was written."""
        ...

    async def record_snapshots(
        self, observations: Sequence[Observation]
    ) -> Sequence[tuple[Run, bool]]:
        """Several `record_snapshot` in one transaction (rows locked in id order, so two engines
        never deadlock): a cycle over thousands of runs commits once."""
        ...

    async def record_poll_failures(self, failures: Sequence[PollFailure]) -> Sequence[Run]:
        """Count each failed poll (`poll_failures`) and set its retry time, in one transaction
        (rows locked in id order)."""
        ...

    async def record_failure(
        self, run_id: int, message: str, now: datetime, *, lease: Lease | None = None
    ) -> Run:
        """The run could not start (refused by Databricks, deleted job, ...): Failed; one event."""
        ...

    async def request_cancel(
        self, run_id: int, now: datetime, *, cancelled_by: str | None = None
    ) -> Run:
        """Mark that the user asked to cancel (the engine sends it), and who; one event."""
        ...

    async def request_repair(self, run_id: int, repair: RunRepair, now: datetime) -> Run:
        """Record a repair as intent (D13): a Failed or Cancelled run reopens as Running, due
        now, with one event; ConflictError for any other status."""
        ...

    async def record_repair_sent(
        self,
        run_id: int,
        repair_id: str,
        now: datetime,
        *,
        sent: bool = True,
        lease: Lease | None = None,
    ) -> Run:
        """The run's pending repair was sent (or had landed: `sent` False); one event."""
        ...

    async def get_run(self, run_id: int) -> Run: ...

    async def find_run_by_key(self, key: str) -> Run | None:
        """The run created with this NewRun.key, if any."""
        ...

    async def list_runs(self, where: RunFilter) -> Sequence[Run]:
        """Newest first."""
        ...

    async def run_events(self, run_id: int) -> Sequence[RunEvent]:
        """Oldest first."""
        ...

    async def events_after(self, event_id: int, limit: int = 500) -> Sequence[RunEvent]:
        """Every run's events with an id above `event_id`, oldest first."""
        ...

    async def last_event_id(self) -> int:
        """The latest event's id (0: none)."""
        ...

    async def job_durations_s(self, job_id: int, limit: int = 10) -> Sequence[float]:
        """Durations of the job's latest successful runs (for adaptive polling)."""
        ...

    # ------------------------------------------------------------------ engine leases
    async def claim_due_runs(
        self,
        owner: str,
        now: datetime,
        lease_s: float,
        limit: int,
        *,
        only: Sequence[int] | None = None,
        exclude: Sequence[int] = (),
    ) -> Sequence[Run]:
        """Lease up to `limit` non-terminal runs that are due (`next_poll_at <= now`) and not
        leased by another live engine (lease absent, expired, or ours), each with a new fencing
        token; their next poll becomes the lease's end (the claimant schedules them itself),
        and they come oldest due first. `only`: just these runs (a CLI driving its own run); `exclude`: runs this engine
        still has in flight. PostgreSQL uses `FOR UPDATE SKIP LOCKED`, so two engines never
        claim the same run."""
        ...

    async def reschedule_runs(
        self, run_ids: Sequence[int], next_poll_at: datetime, *, lease: Lease | None = None
    ) -> None:
        """Set the next poll of unchanged runs in one statement (a sweep saw no change in them);
        with a lease, only of the runs that still carry it (one claim gives one token)."""
        ...

    async def renew_leases(self, lease: Lease, run_ids: Sequence[int], until: datetime) -> int:
        """Extend the lease of these runs to `until`, where they still carry it (an engine still
        working on them); how many were renewed."""
        ...

    async def renew_held_leases(self, owner: str, now: datetime, until: datetime) -> int:
        """Extend every lease `owner` holds on a non-terminal run to `until`, in one statement,
        and move the next poll of those not due at `now` to `until` (an engine watching its runs
        in memory: should it die, they fall due when its lease ends); how many were renewed."""
        ...

    async def release_runs(
        self,
        owner: str,
        run_ids: Sequence[int] | None,
        *,
        keep: Sequence[int] = (),
        now: datetime | None = None,
    ) -> None:
        """Drop `owner`'s leases on `run_ids` (None: on every run it leases) but those in `keep`
        (graceful shutdown): another engine may take them at once. With `now`, runs whose next
        poll is later fall due at `now`."""
        ...

    async def make_all_due(self, now: datetime) -> int:
        """Reconcile on start-up: every non-terminal run is due now. Returns how many."""
        ...

    # ------------------------------------------------------------------ engine heartbeats
    async def record_heartbeat(self, beat: EngineHeartbeat) -> None:
        """Insert or replace this engine's heartbeat row."""
        ...

    async def list_engines(self) -> Sequence[EngineHeartbeat]:
        """Every engine that recorded a heartbeat, latest heartbeat first."""
        ...

    async def forget_engines(self, before: datetime) -> int:
        """Delete heartbeats older than `before` (engines long gone); how many."""
        ...

    # ------------------------------------------------------------------ monitoring
    async def count_runs_by_status(self) -> Mapping[RunStatus, int]: ...

    async def poll_lags_s(self, now: datetime) -> Sequence[float]:
        """How late each active run's due poll is at `now` (seconds; due runs only)."""
        ...
