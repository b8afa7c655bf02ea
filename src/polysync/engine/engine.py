"""The run engine: starts each run exactly once, watches every active run, reconciles on start-up.

Crash safety (D8): a run's row and its idempotency token are committed before run-now is sent,
and the Databricks RunId after it answers. Whatever the point of a crash, the run is still
non-terminal in the store; on restart it is due again, and a run without RunId is re-sent with
the same token, which Databricks answers with the run it already started. So a run is never
started twice and never lost.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from polysync.clock import Clock
from polysync.domain.models import RunSnapshot, RunStatus
from polysync.domain.parameters import resolve_run_parameters
from polysync.domain.records import Job, NewRun, Platform, Run, utc
from polysync.engine.polling import PollPolicy, expected_duration_s, next_poll_delay_s
from polysync.engine.ports import Store
from polysync.errors import DatabricksError, PolysyncError, UsageError
from polysync.jobtypes.base import JobType
from polysync.jobtypes.databricks_workflow import idempotency_token

log = logging.getLogger(__name__)
T = TypeVar("T")
# (our run id, what was seen, when it was seen, when to look again)
Observation = tuple[int, RunSnapshot, datetime, datetime | None]
Submission = tuple[int, str, str, datetime]


class JobTypes(Protocol):
    """Chooses the job-type implementation for a platform's jobs (wired in services.py)."""

    def for_job(self, platform: Platform, job: Job) -> JobType: ...

    def for_platform(self, platform: Platform) -> JobType: ...


@dataclass(frozen=True, slots=True)
class EngineSettings:
    policy: PollPolicy = field(default_factory=PollPolicy)
    lease_s: float = 60.0  # another engine may take a run over once its lease expires
    # Large enough that new submissions (the oldest due times) never crowd out the runs to watch.
    claim_batch: int = 5000
    # run-now is paced at 20/s per workspace: a burst of submissions is spread over cycles so
    # that watching the runs already started never waits behind it.
    max_submits_per_cycle: int = 40
    max_parallel_calls: int = 32  # in-flight API calls per engine (the rate limiter paces them)
    idle_s: float = 1.0  # how often an idle engine looks for new work


@dataclass(slots=True)
class StepReport:
    """What one engine cycle did (for tests, logs and metrics)."""

    claimed: int = 0
    submitted: int = 0
    polled: int = 0
    swept_platforms: int = 0
    changes: int = 0
    cancels_sent: int = 0
    errors: int = 0


class Engine:
    """One engine process. Several may share a PostgreSQL store: leases keep them apart."""

    def __init__(
        self,
        store: Store,
        job_types: JobTypes,
        clock: Clock,
        settings: EngineSettings | None = None,
        *,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.job_types = job_types
        self.clock = clock
        self.settings = settings or EngineSettings()
        self.owner = owner or f"engine-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._warned: set[tuple[int, str]] = set()
        self._last_full_poll: dict[int, float] = {}
        self._semaphore = asyncio.Semaphore(self.settings.max_parallel_calls)
        self._leased: set[int] = set()  # runs this engine has claimed, released on shutdown
        self._jobs: dict[int, Job] = {}  # per cycle: a job read once however many runs it has
        # One runs/list pass serves every claim batch of the same moment: (taken at, result).
        self._sweeps: dict[int, tuple[float, Mapping[str, RunSnapshot]]] = {}

    # ------------------------------------------------------------------ entry points
    async def submit(
        self, job: Job, overrides: Mapping[str, str], *, executed_by: str | None = None
    ) -> Run:
        """Validate and commit a new run (D3, D8). The engine loop (or `dispatch`) starts it.
        `executed_by` (str(Actor)) is recorded with the run."""
        parameters = resolve_run_parameters(job.parameters, overrides)  # refuses bad input first
        key = uuid.uuid4().hex
        new = NewRun(
            job_id=job.id,
            platform_id=job.platform_id,
            key=key,
            idempotency_token=idempotency_token(key),
            overrides=dict(overrides),
            parameters_sent=parameters,
            executed_by=executed_by,
        )
        run = await self.store.create_run(new, utc(self.clock.now()))
        self._wake.set()
        return run

    async def request_cancel(self, run: Run, *, cancelled_by: str | None = None) -> Run:
        """Record the request (and who made it); the engine sends runs/cancel and keeps polling
        to confirm (D10)."""
        if run.is_terminal:
            raise UsageError(f"Run {run.id} is already {run.status.value}; nothing to cancel.")
        cancelled = await self.store.request_cancel(
            run.id, utc(self.clock.now()), cancelled_by=cancelled_by
        )
        self._wake.set()
        return cancelled

    async def reconcile(self) -> int:
        """On start-up: every non-terminal run becomes due at once, so none is lost."""
        count = await self.store.make_all_due(utc(self.clock.now()))
        if count:
            log.info("reconciling %d unfinished run(s)", count)
        return count

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Reconcile, then cycle until `stop` is set. Databricks runs are left running on exit;
        our leases are released so the next engine resumes tracking at once."""
        await self.reconcile()
        try:
            while not stop.is_set():
                report = await self.step()
                if report.claimed:
                    continue  # more may be due right away
                await self._idle(stop)
        finally:
            await self.release()

    async def release(self) -> None:
        """Drop every lease this engine holds, so another engine can take its runs at once."""
        await self.store.release_runs(self.owner, sorted(self._leased))
        self._leased.clear()

    async def step(self) -> StepReport:
        """One cycle: claim what is due, submit what is new, poll what is active."""
        return await self._cycle()

    # ------------------------------------------------------------------ the cycle
    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        sleeper = asyncio.ensure_future(self.clock.sleep(self.settings.idle_s))
        waker = asyncio.ensure_future(self._wake.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, waker, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker, stopper):
                task.cancel()

    async def _cycle(self) -> StepReport:
        report = StepReport()
        now_s = self.clock.now()
        due = await self.store.claim_due_runs(
            self.owner, utc(now_s), self.settings.lease_s, self.settings.claim_batch
        )
        report.claimed = len(due)
        if not due:
            return report
        self._jobs.clear()
        self._leased.update(run.id for run in due)
        to_submit = [run for run in due if not run.submitted][: self.settings.max_submits_per_cycle]
        to_watch = [run for run in due if run.submitted]
        submitted = await self._gather(self._submit(run, report) for run in to_submit)
        await self.store.record_submissions(
            [s for s in submitted if s is not None], utc(self.clock.now())
        )
        by_platform: dict[int, list[Run]] = defaultdict(list)
        for run in to_watch:
            by_platform[run.platform_id].append(run)
        observed = await asyncio.gather(
            *(self._watch_platform(pid, runs, report) for pid, runs in by_platform.items())
        )
        results = await self.store.record_snapshots([o for batch in observed for o in batch])
        report.changes += sum(changed for _, changed in results)
        return report

    async def _gather(self, calls: Iterable[Awaitable[T]]) -> list[T]:
        async def bounded(call: Awaitable[T]) -> T:
            async with self._semaphore:
                return await call

        return list(await asyncio.gather(*(bounded(call) for call in calls)))

    # ------------------------------------------------------------------ submit (dispatcher)
    async def _submit(self, run: Run, report: StepReport) -> Submission | None:
        now_s = self.clock.now()
        try:
            job = await self._job(run.job_id)
            platform = await self.store.get_platform(run.platform_id)
            job_type = self.job_types.for_job(platform, job)
            started = await job_type.start(
                job.as_imported(), run.overrides, idempotency_token=run.idempotency_token
            )
        except (UsageError, DatabricksError) as exc:
            if isinstance(exc, DatabricksError) and exc.retryable:
                report.errors += 1
                log.warning("run %s: run-now not confirmed, will retry: %s", run.id, exc)
                await self.store.record_submit_attempt(
                    run.id,
                    f"Could not reach Databricks yet: {exc}",
                    utc(now_s + self.settings.policy.submit_retry_s),
                )
                return None
            report.errors += 1
            await self.store.record_failure(run.id, _refusal_message(exc), utc(self.clock.now()))
            return None
        report.submitted += 1
        first_poll_s = self.clock.now() + self.settings.policy.first_poll_s
        return (run.id, started.run_id, started.run_page_url, utc(first_poll_s))

    # ------------------------------------------------------------------ watch (monitor)
    async def _watch_platform(
        self, platform_id: int, runs: list[Run], report: StepReport
    ) -> list[Observation]:
        """Look at a platform's due runs; the observations are written by the caller at once."""
        try:
            platform = await self.store.get_platform(platform_id)
        except PolysyncError as exc:
            log.error("platform %s of %d run(s) unavailable: %s", platform_id, len(runs), exc)
            report.errors += len(runs)
            retry = utc(self.clock.now() + self.settings.policy.max_interval_s)
            return [(run.id, _unchanged(run), utc(self.clock.now()), retry) for run in runs]
        policy = self.settings.policy
        job_type = self.job_types.for_platform(platform)
        if len(runs) >= policy.sweep_min_runs:
            try:
                active = await self._sweep(platform_id, job_type)
            except PolysyncError as exc:
                log.warning(
                    "sweep of platform %s failed, polling runs one by one: %s", platform.name, exc
                )
            else:
                report.swept_platforms += 1
                return await self._after_sweep(platform, runs, active, report)
        return await self._gather(self._poll(platform, run, report) for run in runs)

    async def _sweep(self, platform_id: int, job_type: JobType) -> Mapping[str, RunSnapshot]:
        now_s = self.clock.now()
        cached = self._sweeps.get(platform_id)
        if cached is not None and now_s - cached[0] < self.settings.policy.sweep_interval_s / 3:
            return cached[1]
        active = await job_type.active_runs()
        self._sweeps[platform_id] = (now_s, active)
        return active

    def _next_sweep_s(self, now_s: float) -> float:
        """Swept runs are due together on a shared grid, so one pass serves them all."""
        interval = self.settings.policy.sweep_interval_s
        return (now_s // interval + 1) * interval

    async def _after_sweep(
        self,
        platform: Platform,
        runs: list[Run],
        active: Mapping[str, RunSnapshot],
        report: StepReport,
    ) -> list[Observation]:
        """Runs still active and unchanged are rescheduled in one statement; only the others -
        changed, gone from the active list (ended), cancelling, or due a task refresh - get a
        runs/get."""
        now_s = self.clock.now()
        refresh_s = self.settings.policy.task_refresh_s
        unchanged: list[int] = []
        to_poll: list[Run] = []
        for run in runs:
            listed = active.get(run.run_id or "")
            fresh = now_s - self._last_full_poll.get(run.id, now_s) < refresh_s
            if (
                listed is not None
                and listed.status == run.status
                and run.cancel_requested_at is None
                and fresh
            ):
                unchanged.append(run.id)
            else:
                to_poll.append(run)
        await self.store.reschedule_runs(unchanged, utc(self._next_sweep_s(now_s)))
        return await self._gather(
            self._poll(platform, run, report, on_grid=True) for run in to_poll
        )

    async def _poll(
        self, platform: Platform, run: Run, report: StepReport, *, on_grid: bool = False
    ) -> Observation:
        assert run.run_id is not None
        try:
            job = await self._job(run.job_id)
            job_type = self.job_types.for_job(platform, job)
            if run.cancel_requested_at is not None and not run.is_terminal:
                outcome = await job_type.cancel(run.run_id)
                report.cancels_sent += int(outcome.requested)
                snapshot = (
                    outcome.snapshot if not outcome.requested else await job_type.poll(run.run_id)
                )
            else:
                snapshot = await job_type.poll(run.run_id)
        except PolysyncError as exc:
            report.errors += 1
            log.warning(
                "run %s (Databricks %s): poll failed, will retry: %s", run.id, run.run_id, exc
            )
            retry_s = self.clock.now() + self.settings.policy.min_interval_s
            return (run.id, _unchanged(run), utc(self.clock.now()), utc(retry_s))
        report.polled += 1
        now_s = self.clock.now()
        self._last_full_poll[run.id] = now_s
        for warning in snapshot.warnings:
            if (run.id, warning) not in self._warned:
                self._warned.add((run.id, warning))
                log.warning("run %s: %s", run.id, warning)
        if snapshot.is_terminal:
            next_s = None
        elif on_grid and run.cancel_requested_at is None:
            next_s = self._next_sweep_s(now_s)
        else:
            next_s = now_s + await self._delay_s(run, snapshot, now_s)
        if snapshot.is_terminal:
            self._last_full_poll.pop(run.id, None)
        return (run.id, snapshot, utc(now_s), utc(next_s) if next_s is not None else None)

    async def _job(self, job_id: int) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = await self.store.get_job(job_id)
        return job

    async def _delay_s(self, run: Run, snapshot: RunSnapshot, now_s: float) -> float:
        policy = self.settings.policy
        if run.cancel_requested_at is not None:
            return policy.cancel_poll_s
        if snapshot.status is RunStatus.STARTING:
            return policy.min_interval_s
        started_s = run.submitted_at.timestamp() if run.submitted_at else now_s
        history = await self.store.job_durations_s(run.job_id)
        return next_poll_delay_s(now_s - started_s, expected_duration_s(history), policy)


def _refusal_message(exc: PolysyncError) -> str:
    if isinstance(exc, DatabricksError):
        return f"Databricks refused to start the run: {exc}"
    return exc.message


def _unchanged(run: Run) -> RunSnapshot:
    """The run as stored: recording it changes nothing but the next poll time."""
    return RunSnapshot(
        status=run.status,
        message=run.message,
        run_id=int(run.run_id) if run.run_id else None,
        life_cycle_state=run.life_cycle_state,
        result_state=run.result_state,
        run_page_url=run.run_page_url,
        tasks=run.tasks,
    )
