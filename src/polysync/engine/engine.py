"""The run engine: starts each run exactly once, watches every active run, survives what goes wrong.

Crash safety (D8): a run's row and its idempotency token are committed before run-now is sent,
and the Databricks RunId after it answers. Whatever the point of a crash, the run is still
non-terminal in the store; on restart it is due again, and a run without RunId is re-sent with
the same token, which Databricks answers with the run it already started. So a run is never
started twice and never lost.

One worker per run (issue 8): the engine works on a run only under its own claim of it (a lease
with a fencing token, renewed while the work lasts), never twice at once in this process (runs in
flight are left out of every claim), and every write carries the claim's lease, so an engine that
lost a run can never write back a stale copy.

Isolation (issue 8): what is done for one run - its submit or its poll - is guarded. An unexpected
exception defers that run (and after repeated tries at submit, fails it), recorded in its history
and logged with its id, while the rest of the cycle goes on. A cycle that fails as a whole (the
database cannot be reached) is retried with back-off: `run_forever` never ends on an error, and
its heartbeat (in memory and in the database) shows what it is doing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol, TypeVar

from polysync.clock import Clock
from polysync.domain.models import RunSnapshot, RunStatus
from polysync.domain.records import (
    EngineHeartbeat,
    EngineState,
    Job,
    NewRun,
    Platform,
    Run,
    utc,
)
from polysync.engine.polling import PollPolicy, expected_duration_s, next_poll_delay_s
from polysync.engine.ports import Observation, PollFailure, Store, Submission
from polysync.errors import (
    ConfigError,
    DatabricksError,
    DatabricksNotFoundError,
    DatabricksTimeoutError,
    PolysyncError,
    StoreUnavailableError,
    UsageError,
)
from polysync.jobtypes.base import JobType, idempotency_token

log = logging.getLogger(__name__)
T = TypeVar("T")

DELETED_MESSAGE = "the Databricks run was deleted or its history expired"
"""The run message of a run Databricks no longer knows (D6 amended)."""
FORGET_ENGINES_AFTER = timedelta(days=7)


class JobTypes(Protocol):
    """Chooses the job-type implementation for a platform's jobs (wired in services.py)."""

    def for_job(self, platform: Platform, job: Job) -> JobType: ...

    def for_platform(self, platform: Platform) -> JobType: ...


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How an engine paces itself; every time is in seconds of the engine's clock."""

    policy: PollPolicy = field(default_factory=PollPolicy)
    lease_s: float = 60.0  # another engine may take a run over once its lease expires
    # Large enough that new submissions (the oldest due times) never crowd out the runs to watch.
    claim_batch: int = 5000
    # run-now is paced at 20/s per workspace: a burst of submissions is spread over cycles so
    # that watching the runs already started never waits behind it.
    max_submits_per_cycle: int = 40
    max_parallel_calls: int = 32  # in-flight API calls per engine (the rate limiter paces them)
    idle_s: float = 1.0  # how often an idle engine looks for new work
    # The longest one run's API work may hold a cycle: then it is deferred (and retried with its
    # idempotency token), so one slow answer never stalls the other runs.
    call_budget_s: float = 30.0
    heartbeat_s: float = 5.0  # how often the heartbeat is written to the database
    # No successful cycle for this long: the engine is stalled (/health answers 503).
    stall_after_s: float = 120.0
    backoff_min_s: float = 1.0  # after a failed cycle; doubles up to backoff_max_s
    backoff_max_s: float = 30.0
    # Unexpected errors (not Databricks' answers) while starting one run before it is failed.
    max_submit_errors: int = 5


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
    deferred: int = 0  # runs whose work failed or ran out of budget, retried later
    ended: int = 0  # runs ended by the engine itself (refused, deleted in Databricks, ...)


@dataclass(slots=True)
class EngineHealth:
    """The engine's own view of itself (what its heartbeat says), updated at every cycle."""

    state: EngineState | None = None  # None: this engine has not run in this process
    started_at_s: float | None = None
    last_cycle_at_s: float | None = None  # end of the last successful cycle
    cycles: int = 0
    failures: int = 0  # consecutive failed cycles
    last_error: str | None = None
    restarts: int = 0  # times a supervisor restarted it after a crash

    def is_stalled(self, now_s: float, stall_after_s: float) -> bool:
        """No successful cycle for `stall_after_s` while it should be cycling."""
        if self.state not in (EngineState.STARTING, EngineState.RUNNING, EngineState.BACKING_OFF):
            return False
        since_s = self.last_cycle_at_s or self.started_at_s
        return since_s is not None and now_s - since_s > stall_after_s


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
        self.health = EngineHealth()
        self._wake = asyncio.Event()
        self._warned: set[tuple[int, str]] = set()
        self._last_full_poll: dict[int, float] = {}
        self._semaphore = asyncio.Semaphore(self.settings.max_parallel_calls)
        self._leased: set[int] = set()  # runs this engine has claimed, released on shutdown
        self._in_flight: set[int] = set()  # runs being worked on now: never claimed again
        self._jobs: dict[int, Job] = {}  # per cycle: a job read once however many runs it has
        self._platforms: dict[int, Platform] = {}
        # One runs/list pass serves every claim batch of the same moment: (taken at, result).
        self._sweeps: dict[int, tuple[float, Mapping[str, RunSnapshot]]] = {}
        self._last_beat_s: float | None = None

    # ------------------------------------------------------------------ entry points
    async def submit(
        self, job: Job, overrides: Mapping[str, str], *, executed_by: str | None = None
    ) -> Run:
        """Validate and commit a new run (D3, D8): the intent only. The engine loop (or `drive`,
        for a command with no engine running) starts it. `executed_by` (str(Actor)) is recorded
        with the run. Raises UsageError on bad input, before anything is recorded."""
        platform = await self.store.get_platform(job.platform_id)
        job_type = self.job_types.for_job(platform, job)
        # Refuses bad input first (the job type's rules: D3, D4, compute attributes, ...).
        parameters = job_type.build_start_request(job.as_imported(), overrides).parameters_sent
        key = uuid.uuid4().hex
        new = NewRun(
            job_id=job.id,
            platform_id=job.platform_id,
            key=key,
            idempotency_token=idempotency_token(key),
            overrides=dict(overrides),
            parameters_sent=dict(parameters),
            executed_by=executed_by,
        )
        run = await self.store.create_run(new, utc(self.clock.now()))
        self._wake.set()
        return run

    async def request_cancel(self, run: Run, *, cancelled_by: str | None = None) -> Run:
        """Record the request (and who made it); the engine sends runs/cancel and keeps polling
        to confirm (D10). UsageError when the run has already ended."""
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
        """Reconcile, then cycle until `stop` is set; never ends on an error. A failed cycle
        (e.g. the database cannot be reached) is retried after a back-off that doubles from
        `backoff_min_s` to `backoff_max_s`. Databricks runs are left running on exit; our leases
        are released so the next engine resumes tracking at once."""
        health = self.health
        health.state = EngineState.STARTING
        health.started_at_s = self.clock.now()
        health.last_cycle_at_s = None
        health.failures = 0
        await self._beat(force=True)
        await self._forget_old_engines()
        # The heartbeat has its own rhythm: a long cycle (a slow answer) never makes the engine
        # look gone to `polysync status`; a stalled one shows in its last cycle time instead.
        beats_done = asyncio.Event()
        beater = asyncio.ensure_future(
            self._every(self.settings.heartbeat_s, self._beat_now, beats_done)
        )
        reconciled = False
        delay_s = self.settings.backoff_min_s
        try:
            while not stop.is_set():
                try:
                    # Shutting down never waits for a slow answer.
                    if not reconciled:
                        await _unless(self.reconcile(), stop.wait())
                        reconciled = True
                    report = await _unless(self.step(), stop.wait())
                except _Abandoned:
                    break
                except Exception as exc:  # nothing may end the loop
                    self._cycle_failed(exc, delay_s)
                    await self._beat(force=True)
                    await self._idle(stop, delay_s)
                    delay_s = min(delay_s * 2, self.settings.backoff_max_s)
                    continue
                delay_s = self.settings.backoff_min_s
                changed = health.state is not EngineState.RUNNING
                self._cycle_succeeded()
                if changed:
                    await self._beat(force=True)  # a change of state is written at once
                if report.claimed:
                    continue  # more may be due right away
                await self._idle(stop, self.settings.idle_s)
        finally:
            beats_done.set()
            await beater  # never cancelled mid-write: it finishes the beat it is writing
            health.state = EngineState.STOPPED
            try:
                await self.release()
            except Exception as exc:  # the leases expire on their own anyway
                log.warning("engine %s: could not release its leases: %s", self.owner, exc)
            await self._beat(force=True)

    async def run_supervised(self, stop: asyncio.Event) -> None:
        """`run_forever`, restarted whenever it crashes (which it should never do), with the
        reason logged and back-off between restarts, until `stop` is set."""
        delay_s = self.settings.backoff_min_s
        while not stop.is_set():
            try:
                await self.run_forever(stop)
            except Exception as exc:  # a supervisor outlives its child
                self.health.state = EngineState.CRASHED
                self.health.restarts += 1
                self.health.last_error = _one_line(exc)
                log.error(
                    "engine %s crashed; restarting in %.0f s (restart %d)",
                    self.owner,
                    delay_s,
                    self.health.restarts,
                    exc_info=exc,
                )
                await self._beat(force=True)
                await self._idle(stop, delay_s)
                delay_s = min(delay_s * 2, self.settings.backoff_max_s)
                continue
            return

    async def release(self) -> None:
        """Drop every lease this engine holds, so another engine can take its runs at once."""
        await self.store.release_runs(self.owner, sorted(self._leased - self._in_flight))
        self._leased &= self._in_flight

    async def step(self) -> StepReport:
        """One cycle: claim what is due, submit what is new, poll what is active."""
        return await self._cycle()

    async def drive(self, run_id: int) -> StepReport:
        """One cycle for one run only (a command with no engine running drives its own run):
        submit or poll it if it is due and no other live engine holds it, else nothing."""
        return await self._cycle(only=(run_id,))

    def heartbeat(self) -> EngineHeartbeat:
        """This engine's heartbeat now (what `_beat` writes to the database)."""
        health = self.health
        now_s = self.clock.now()
        return EngineHeartbeat(
            owner=self.owner,
            host=socket.gethostname(),
            pid=os.getpid(),
            state=health.state or EngineState.STOPPED,
            started_at=utc(health.started_at_s or now_s),
            heartbeat_at=utc(now_s),
            last_cycle_at=utc(health.last_cycle_at_s) if health.last_cycle_at_s else None,
            cycles=health.cycles,
            failures=health.failures,
            last_error=health.last_error,
        )

    # ------------------------------------------------------------------ health
    def _cycle_failed(self, exc: Exception, retry_in_s: float) -> None:
        health = self.health
        health.failures += 1
        health.state = EngineState.BACKING_OFF
        health.last_error = _one_line(exc)
        if isinstance(exc, StoreUnavailableError):
            log.warning(
                "engine %s: %s; retrying in %.0f s", self.owner, health.last_error, retry_in_s
            )
        else:
            # A PolysyncError's message says it all (and SQLAlchemy's full text, which may list a
            # statement's values, is kept out); anything else is a bug: its traceback helps.
            log.error(
                "engine %s: cycle failed (%d in a row), retrying in %.0f s: %s",
                self.owner,
                health.failures,
                retry_in_s,
                health.last_error,
                exc_info=None if isinstance(exc, PolysyncError) else exc,
            )

    def _cycle_succeeded(self) -> None:
        health = self.health
        if health.failures:
            log.warning("engine %s: cycling again after %d failure(s)", self.owner, health.failures)
        health.state = EngineState.RUNNING
        health.failures = 0
        health.cycles += 1
        health.last_cycle_at_s = self.clock.now()

    async def _beat(self, *, force: bool = False) -> None:
        """Write the heartbeat (at most every `heartbeat_s` unless forced); a failure to write
        it is logged, never raised: the database being down is already the cycle's business."""
        now_s = self.clock.now()
        if (
            not force
            and self._last_beat_s is not None
            and now_s - self._last_beat_s < self.settings.heartbeat_s
        ):
            return
        try:
            await self.store.record_heartbeat(self.heartbeat())
        except Exception as exc:
            log.debug("engine %s: heartbeat not recorded: %s", self.owner, _one_line(exc))
            return
        self._last_beat_s = now_s

    async def _beat_now(self) -> None:
        await self._beat(force=True)

    async def _every(
        self, interval_s: float, action: Callable[[], Awaitable[None]], done: asyncio.Event
    ) -> None:
        """`action` every `interval_s` of the engine's clock until `done` is set. Only the wait
        is ever interrupted, never the action: a task cancelled in the middle of a database
        transaction could leave its connection (and its row locks) behind."""
        while True:
            try:
                await _unless(self.clock.sleep(interval_s), done.wait())
            except _Abandoned:
                return
            await action()

    async def _forget_old_engines(self) -> None:
        try:
            await self.store.forget_engines(utc(self.clock.now()) - FORGET_ENGINES_AFTER)
        except Exception as exc:  # housekeeping only
            log.debug("could not forget old engine heartbeats: %s", _one_line(exc))

    # ------------------------------------------------------------------ the cycle
    async def _idle(self, stop: asyncio.Event, seconds: float) -> None:
        self._wake.clear()
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, waker, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker, stopper):
                task.cancel()

    async def _cycle(self, only: Sequence[int] | None = None) -> StepReport:
        report = StepReport()
        now_s = self.clock.now()
        due = await self.store.claim_due_runs(
            self.owner,
            utc(now_s),
            self.settings.lease_s,
            self.settings.claim_batch,
            only=only,
            exclude=sorted(self._in_flight),
        )
        report.claimed = len(due)
        if not due:
            return report
        ids = {run.id for run in due}
        self._in_flight |= ids
        self._leased |= ids
        work_done = asyncio.Event()
        keeper = asyncio.ensure_future(
            self._every(self.settings.lease_s / 3, lambda: self._renew(due), work_done)
        )
        try:
            self._jobs.clear()
            self._platforms.clear()
            await self._work(due, report)
        finally:
            work_done.set()
            await keeper
            self._in_flight -= ids
        return report

    async def _work(self, due: Sequence[Run], report: StepReport) -> None:
        to_submit = [run for run in due if not run.submitted][: self.settings.max_submits_per_cycle]
        to_watch = [run for run in due if run.submitted]
        submitted = await self._gather(self._submit(run, report) for run in to_submit)
        await self.store.record_submissions(
            [s for s in submitted if s is not None], utc(self.clock.now())
        )
        by_platform: dict[int, list[Run]] = defaultdict(list)
        for run in to_watch:
            by_platform[run.platform_id].append(run)
        watched = await _gather_all(
            self._watch_platform(pid, runs, report) for pid, runs in by_platform.items()
        )
        outcomes = [outcome for batch in watched for outcome in batch]
        await self._record_failures([o for o in outcomes if isinstance(o, PollFailure)])
        observations = [o for o in outcomes if isinstance(o, Observation)]
        report.changes += await self._record_observations(observations, report)

    async def _renew(self, runs: Sequence[Run]) -> None:
        """While the cycle works on `runs`, their lease is extended every third of it: a slow
        answer (a long Retry-After) never lets another engine take a run this one still works
        on. A renewal that fails is only logged: the lease may then lapse, and writes are fenced."""
        lease = runs[0].lease
        if lease is None:
            return
        try:
            until = utc(self.clock.now() + self.settings.lease_s)
            await self.store.renew_leases(lease, [run.id for run in runs], until)
        except Exception as exc:
            log.warning("engine %s: could not renew its leases: %s", self.owner, _one_line(exc))

    async def _gather(self, calls: Iterable[Awaitable[T]]) -> list[T]:
        async def bounded(call: Awaitable[T]) -> T:
            async with self._semaphore:
                return await call

        return await _gather_all(bounded(call) for call in calls)

    async def _within_budget(self, call: Awaitable[T]) -> T:
        """`call`, abandoned (DatabricksTimeoutError) once it has taken `call_budget_s`."""
        budget_s = self.settings.call_budget_s
        try:
            return await _unless(call, self.clock.sleep(budget_s))
        except _Abandoned:
            raise DatabricksTimeoutError(
                f"Databricks did not answer within {budget_s:g} s"
            ) from None

    def _backoff_s(self, base_s: float, failures: int) -> float:
        """`base_s` doubled per consecutive failure, up to the longest poll interval."""
        return min(self.settings.policy.max_interval_s, base_s * 2.0 ** min(failures, 16))

    # ------------------------------------------------------------------ submit (dispatcher)
    async def _submit(self, run: Run, report: StepReport) -> Submission | None:
        # Store reads are outside the guard: the database being down fails the whole cycle.
        job = await self._job(run.job_id)
        platform = await self._platform(run.platform_id)
        try:
            job_type = self.job_types.for_job(platform, job)
            started = await self._within_budget(
                job_type.start(
                    job.as_imported(), run.overrides, idempotency_token=run.idempotency_token
                )
            )
        except StoreUnavailableError:
            raise
        except Exception as exc:  # isolated to this run
            await self._submit_failed(run, exc, report)
            return None
        report.submitted += 1
        first_poll_s = self.clock.now() + self.settings.policy.first_poll_s
        return Submission(
            run.id, started.run_id, started.run_page_url, utc(first_poll_s), run.lease
        )

    async def _submit_failed(self, run: Run, exc: Exception, report: StepReport) -> None:
        """Retry later (transient, or unexpected but not yet `max_submit_errors` times), or end
        the run Failed: refused by Databricks, bad input, configuration, repeated errors."""
        report.errors += 1
        now_s = self.clock.now()
        retry_at = utc(now_s + self._backoff_s(self.settings.policy.submit_retry_s, 0))
        if isinstance(exc, DatabricksError) and exc.retryable:
            log.warning("run %s: run-now not confirmed, will retry: %s", run.id, exc)
            report.deferred += 1
            await self.store.record_submit_attempt(
                run.id, f"Could not reach Databricks yet: {exc}", retry_at, lease=run.lease
            )
            return
        if (
            isinstance(exc, PolysyncError)
            or run.submit_attempts + 1 >= self.settings.max_submit_errors
        ):
            message = _refusal_message(exc) if isinstance(exc, PolysyncError) else _not_started(exc)
            log.warning("run %s: not started: %s", run.id, message)
            report.ended += 1
            await self.store.record_failure(run.id, message, utc(now_s), lease=run.lease)
            return
        log.error(
            "run %s: unexpected error while starting it (attempt %d of %d), will retry",
            run.id,
            run.submit_attempts + 1,
            self.settings.max_submit_errors,
            exc_info=exc,
        )
        report.deferred += 1
        await self.store.record_submit_attempt(
            run.id,
            f"Not started yet: Polysync hit an unexpected error ({_one_line(exc)}); "
            "retrying with the same idempotency token.",
            retry_at,
            lease=run.lease,
            event_at=utc(now_s),
        )

    # ------------------------------------------------------------------ watch (monitor)
    async def _watch_platform(
        self, platform_id: int, runs: list[Run], report: StepReport
    ) -> list[Observation | PollFailure]:
        """Look at a platform's due runs; the outcomes are written by the caller at once."""
        platform = await self._platform(platform_id)
        policy = self.settings.policy
        try:
            job_type = self.job_types.for_platform(platform)
        except Exception as exc:  # e.g. a platform edited into an unusable one
            return [self._poll_failed(run, exc, report) for run in runs]
        if len(runs) >= policy.sweep_min_runs:
            try:
                active = await self._within_budget(self._sweep(platform_id, job_type))
            except StoreUnavailableError:
                raise
            except Exception as exc:  # polling one by one still works
                log.warning(
                    "sweep of platform %s failed, polling runs one by one: %s",
                    platform.name,
                    _one_line(exc),
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
    ) -> list[Observation | PollFailure]:
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
        await self.store.reschedule_runs(
            unchanged, utc(self._next_sweep_s(now_s)), lease=runs[0].lease
        )
        return await self._gather(
            self._poll(platform, run, report, on_grid=True) for run in to_poll
        )

    async def _poll(
        self, platform: Platform, run: Run, report: StepReport, *, on_grid: bool = False
    ) -> Observation | PollFailure:
        assert run.run_id is not None
        job = await self._job(run.job_id)
        try:
            job_type = self.job_types.for_job(platform, job)
            snapshot = await self._within_budget(self._look(job_type, run, report))
        except StoreUnavailableError:
            raise
        except DatabricksNotFoundError:
            return self._deleted(run, report)
        except Exception as exc:  # isolated to this run
            return self._poll_failed(run, exc, report)
        report.polled += 1
        now_s = self.clock.now()
        self._last_full_poll[run.id] = now_s
        for warning in snapshot.warnings:
            if (run.id, warning) not in self._warned:
                self._warned.add((run.id, warning))
                log.warning("run %s: %s", run.id, warning)
        if snapshot.is_terminal:
            next_s = None
            self._forget(run.id)
        elif on_grid and run.cancel_requested_at is None:
            next_s = self._next_sweep_s(now_s)
        else:
            next_s = now_s + await self._delay_s(run, snapshot, now_s)
        return Observation(
            run.id, snapshot, utc(now_s), utc(next_s) if next_s is not None else None, run.lease
        )

    async def _look(self, job_type: JobType, run: Run, report: StepReport) -> RunSnapshot:
        """runs/get; for a run whose cancel was asked, runs/cancel first (D10)."""
        assert run.run_id is not None
        if run.cancel_requested_at is None:
            return await job_type.poll(run.run_id)
        outcome = await job_type.cancel(run.run_id)
        report.cancels_sent += int(outcome.requested)
        return outcome.snapshot if not outcome.requested else await job_type.poll(run.run_id)

    def _deleted(self, run: Run, report: StepReport) -> Observation:
        """Databricks does not know the run any more (deleted, or history expired): it ends
        Failed and nothing polls it again (D6 amended)."""
        message = DELETED_MESSAGE[0].upper() + DELETED_MESSAGE[1:] + "."
        if run.cancel_requested_at is not None:
            message += " There is nothing left to cancel."
        log.warning("run %s (Databricks %s): %s", run.id, run.run_id, DELETED_MESSAGE)
        report.ended += 1
        self._forget(run.id)
        snapshot = RunSnapshot(
            status=RunStatus.FAILED,
            message=message,
            life_cycle_state=run.life_cycle_state,
            result_state=run.result_state,
            run_page_url=run.run_page_url,
            tasks=run.tasks,
        )
        return Observation(run.id, snapshot, utc(self.clock.now()), None, run.lease)

    def _poll_failed(self, run: Run, exc: Exception, report: StepReport) -> PollFailure:
        """Look again later, backing off with the run's consecutive failures. A transient
        Databricks error is only logged; any other error is also written as the run message."""
        report.errors += 1
        report.deferred += 1
        now_s = self.clock.now()
        delay_s = self._backoff_s(self.settings.policy.min_interval_s, run.poll_failures)
        transient = isinstance(exc, DatabricksError) and exc.retryable
        message: str | None = None
        if transient:
            log.warning(
                "run %s (Databricks %s): poll failed, retrying in %.0f s: %s",
                run.id,
                run.run_id,
                delay_s,
                exc,
            )
        else:
            known = isinstance(exc, PolysyncError)
            log.error(
                "run %s (Databricks %s): could not check it, retrying in %.0f s: %s",
                run.id,
                run.run_id,
                delay_s,
                _one_line(exc),
                exc_info=None if known else exc,
            )
            reason = str(exc) if isinstance(exc, DatabricksError | ConfigError) else _one_line(exc)
            message = f"Could not check the run in Databricks ({reason}); retrying."
        return PollFailure(run.id, utc(now_s + delay_s), utc(now_s), message, run.lease)

    def _forget(self, run_id: int) -> None:
        self._last_full_poll.pop(run_id, None)
        self._warned = {(r, w) for r, w in self._warned if r != run_id}

    async def _record_failures(self, failures: Sequence[PollFailure]) -> None:
        await self.store.record_poll_failures(failures)

    async def _record_observations(
        self, observations: Sequence[Observation], report: StepReport
    ) -> int:
        """All in one transaction; if that fails for another reason than the database being
        unreachable (one run's snapshot it cannot store), one by one, so that the bad one is
        deferred with its error and the others are recorded."""
        if not observations:
            return 0
        try:
            results = await self.store.record_snapshots(observations)
        except StoreUnavailableError:
            raise
        except Exception as exc:  # isolate the bad one below
            log.warning("recording %d polls failed, one by one now: %s", len(observations), exc)
            changes = 0
            for observation in observations:
                changes += await self._record_one(observation, report)
            return changes
        return sum(changed for _, changed in results)

    async def _record_one(self, observation: Observation, report: StepReport) -> int:
        try:
            ((_, changed),) = await self.store.record_snapshots([observation])
        except StoreUnavailableError:
            raise
        except Exception as exc:  # this run only
            run = await self.store.get_run(observation.run_id)
            failure = self._poll_failed(run, exc, report)
            await self.store.record_poll_failures([failure])
            return 0
        return int(changed)

    async def _job(self, job_id: int) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = await self.store.get_job(job_id)
        return job

    async def _platform(self, platform_id: int) -> Platform:
        platform = self._platforms.get(platform_id)
        if platform is None:
            platform = self._platforms[platform_id] = await self.store.get_platform(platform_id)
        return platform

    async def _delay_s(self, run: Run, snapshot: RunSnapshot, now_s: float) -> float:
        policy = self.settings.policy
        if run.cancel_requested_at is not None:
            return policy.cancel_poll_s
        if snapshot.status is RunStatus.STARTING:
            return policy.min_interval_s
        started_s = run.submitted_at.timestamp() if run.submitted_at else now_s
        history = await self.store.job_durations_s(run.job_id)
        return next_poll_delay_s(now_s - started_s, expected_duration_s(history), policy)


class _Abandoned(Exception):
    """The rival finished first: the work was cancelled."""


async def _unless(work: Awaitable[T], rival: Awaitable[object]) -> T:
    """`work`'s result, unless `rival` finishes first: then `work` is cancelled, has finished
    cancelling, and _Abandoned is raised. (Abandoning a run-now is safe: it carries its token.)"""
    task = asyncio.ensure_future(work)
    other = asyncio.ensure_future(rival)
    try:
        await asyncio.wait({task, other}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        other.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise _Abandoned
    return task.result()


async def _gather_all(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Like asyncio.gather, but every call has finished before the first error is raised: no
    work on a run is still going on when the cycle that started it ends."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def _one_line(exc: BaseException) -> str:
    """An error in one line for logs, heartbeats and run messages: a PolysyncError's message
    (written never to hold a secret), else the type and the first line of its text."""
    if isinstance(exc, PolysyncError):
        text = str(exc)
    else:
        first = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {first[0]}" if first else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _refusal_message(exc: PolysyncError) -> str:
    if isinstance(exc, DatabricksError):
        return f"Databricks refused to start the run: {exc}"
    if isinstance(exc, ConfigError):
        return f"Not started: {exc.message}"
    return exc.message


def _not_started(exc: BaseException) -> str:
    return (
        f"Not started: Polysync hit an unexpected error each time it tried ({_one_line(exc)}). "
        "If it reached Databricks, the run there carries this run's idempotency token."
    )
