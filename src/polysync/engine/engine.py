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
from datetime import datetime, timedelta
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
    RunRepair,
    utc,
)
from polysync.engine.polling import PollPolicy
from polysync.engine.ports import Observation, PollFailure, Store, Submission
from polysync.engine.scheduler import SchedulerReport, SchedulerSettings, TaskScheduler
from polysync.errors import (
    ConfigError,
    ConflictError,
    DatabricksError,
    DatabricksNotFoundError,
    DatabricksTimeoutError,
    PolysyncError,
    StoreUnavailableError,
    UsageError,
)
from polysync.jobtypes.base import JobType, RepairPlan, idempotency_token, repair_capability

log = logging.getLogger(__name__)
T = TypeVar("T")

DELETED_MESSAGE = "the Databricks run was deleted or its history expired"
"""The run message of a run Databricks no longer knows (D6 amended)."""
FORGET_ENGINES_AFTER = timedelta(days=7)


class JobTypes(Protocol):
    """Chooses the job-type implementation for a platform's jobs (wired in services.py)."""

    def for_job(self, platform: Platform, job: Job) -> JobType: ...


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
    # How often an idle engine looks in the database for runs other processes added (runs
    # submitted in this process wake it at once).
    idle_s: float = 10.0
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
    # The Task scheduler (issue 12): on in every engine; off only for tests of runs alone.
    tasks_enabled: bool = True
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    # A run waiting on a full concurrency profile is looked at again after this long (D14).
    profile_recheck_s: float = 5.0


@dataclass(slots=True)
class StepReport:
    """What one engine cycle did (for tests, logs and metrics)."""

    claimed: int = 0
    submitted: int = 0
    polled: int = 0
    swept_platforms: int = 0
    changes: int = 0
    cancels_sent: int = 0
    repairs_sent: int = 0  # jobs/runs/repair sent (not those found already made, D13)
    errors: int = 0
    deferred: int = 0  # runs whose work failed or ran out of budget, retried later
    ended: int = 0  # runs ended by the engine itself (refused, deleted in Databricks, ...)
    queued: int = 0  # runs a contention profile holds back for now (D14)

    @property
    def did_work(self) -> bool:
        return bool(self.submitted or self.polled or self.swept_platforms or self.errors)


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


@dataclass(frozen=True, slots=True)
class _Held:
    """A run this engine holds in memory, and when it looks at it on its own timer (None: at
    its workspace's grid points). `fresh`: just claimed (a drive looks at it at once)."""

    run: Run
    due_s: float | None
    fresh: bool = False


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
        self._semaphore = asyncio.Semaphore(self.settings.max_parallel_calls)
        # The runs this engine holds (claimed, leased, renewed in one statement), kept in memory
        # between looks: a cycle reads and writes only what is new or changed.
        self._held: dict[int, _Held] = {}
        self._watched: dict[int, int] = defaultdict(int)  # started runs held, by platform
        self._ticks: dict[int, float] = {}  # next grid point of each platform
        # Runs the last sweep of each (platform, sweep group) listed.
        self._active_in: dict[tuple[int, str], int] = {}
        self._own_due: dict[int, float] = {}  # next own look decided by the poll just made
        self._renewed_s: float | None = None
        self._in_flight: set[int] = set()  # runs being worked on now: never claimed again
        # Every run claimed since the last release, ended ones too: a release leaves no lease.
        self._leased: set[int] = set()
        self._jobs: dict[int, Job] = {}  # per cycle: a job read once however many runs it has
        self._platforms: dict[int, Platform] = {}
        self._last_beat_s: float | None = None
        self._beat_lock = asyncio.Lock()
        self.tasks = TaskScheduler(self, self.settings.scheduler)
        self.last_tasks_report = SchedulerReport()
        """The Task scheduler (issue 12): each step fires schedules and starts TaskRuns."""
        # The earliest next try of a run a contention profile held back (D14): the engine wakes
        # then, rather than at its next idle look.
        self._admission_due_s: float | None = None

    # ------------------------------------------------------------------ entry points
    async def submit(
        self,
        job: Job,
        overrides: Mapping[str, str],
        *,
        executed_by: str | None = None,
        key: str | None = None,
    ) -> Run:
        """Validate and commit a new run (D3, D8): the intent only. The engine loop (or `drive`,
        for a command with no engine running) starts it. `executed_by` (str(Actor)) is recorded
        with the run; `key` (unique; default: a random one) names it. Raises UsageError on bad
        input, before anything is recorded."""
        platform = await self.store.get_platform(job.platform_id)
        job_type = self.job_types.for_job(platform, job)
        # Refuses bad input first (the job type's rules: D3, D4, compute attributes, ...).
        parameters = job_type.build_start_request(job.as_imported(), overrides).parameters_sent
        key = key or uuid.uuid4().hex
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

    def wake(self) -> None:
        """Look for work at once (a Task saved, a TaskRun queued in this process)."""
        self.tasks.changed()
        self._wake.set()

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

    async def request_repair(self, run: Run, *, requested_by: str | None = None) -> Run:
        """Plan and record a repair of the run as intent (D13); the engine sends it once and
        follows the repaired run to its new end. The one validation path of a repair:
        ConflictError (RepairNotSupportedError for a Job Type whose runs cannot be repaired)
        unless the run is Failed or Cancelled, reached Databricks and has tasks to rerun;
        reads the run's `repair_history` from the platform (DatabricksError when it cannot)."""
        if not RunStatus.RUNNING.may_follow(run.status, repair=True) or run.run_id is None:
            hint = " Wait for it to end, then repair it." if not run.is_terminal else ""
            raise ConflictError(
                f"Run {run.id} is {run.status.value}: only a Failed or Cancelled run that "
                f"reached Databricks can be repaired.{hint}"
            )
        platform = await self.store.get_platform(run.platform_id)
        job = await self.store.get_job(run.job_id)
        repairable = repair_capability(self.job_types.for_job(platform, job))
        plan = await repairable.plan_repair(run.run_id)
        repair = RunRepair(
            number=plan.number,
            task_keys=plan.task_keys,
            latest_repair_id=plan.latest_repair_id,
            requested_at=utc(self.clock.now()),
            requested_by=requested_by,
        )
        repaired = await self.store.request_repair(run.id, repair, utc(self.clock.now()))
        self._wake.set()
        return repaired

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
                wait_s = self.next_work_in_s()
                if report.claimed or (wait_s <= 0 and report.did_work):
                    continue  # more may be due right away
                # Asleep until the next grid point or own look, an in-process request (`_wake`),
                # or `idle_s` to find runs other processes added: never a busy loop.
                await self._idle(stop, wait_s or self.settings.policy.min_interval_s)
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
        """Drop every lease this engine holds but those of runs whose run-now is in flight, so
        another engine can take its runs at once. Every lease in the database, not only those
        this engine knows of: a cycle cancelled by a stop still ends its claim's transaction
        (`store_call`), so a claim can take leases whose answer the engine never saw."""
        released = sorted((self._leased | set(self._held)) - self._in_flight)
        await self.store.release_runs(
            self.owner, None, keep=sorted(self._in_flight), now=utc(self.clock.now())
        )
        for run_id in released:
            self._drop(run_id)
        self._leased &= self._in_flight

    async def step(self) -> StepReport:
        """One cycle: claim what is due, submit what is new, poll what is active; then the Task
        scheduler's step (fire, follow TaskRuns, decide cycles, start TaskRuns: the runs it
        creates are submitted by the next cycle, at once when the engine loop runs)."""
        report = await self._cycle()
        if self.settings.tasks_enabled:
            self.last_tasks_report = await self.tasks.step()
        return report

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
        # One write at a time, each taken when its turn comes: a beat that waited for the
        # database never lands after a fresher one (a stale "backing-off" after recovery).
        async with self._beat_lock:
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

    def next_work_in_s(self) -> float:
        """Seconds until this engine has something to do: the next grid point of a workspace
        with runs to watch, a run's own retry or cancel confirmation, or the next look for new
        runs (`idle_s`); 0 when work is due now."""
        now_s = self.clock.now()
        soonest_s = now_s + self.settings.idle_s
        for platform_id, count in self._watched.items():
            if count:
                soonest_s = min(soonest_s, self._ticks.get(platform_id, now_s))
        for held in self._held.values():
            if held.due_s is not None:
                soonest_s = min(soonest_s, held.due_s)
        if self.settings.tasks_enabled:
            soonest_s = min(soonest_s, now_s + self.tasks.next_work_in_s())
        if self._admission_due_s is not None:
            soonest_s = min(soonest_s, self._admission_due_s)
        return max(0.0, soonest_s - now_s)

    def poll_lags_s(self) -> list[float]:
        """How late each overdue look of a run this engine holds is now (seconds; overdue runs
        only), from memory: its workspace's grid point that passed unswept, or its own due time.
        (The store's next poll of a held run is its lease's end, so the store cannot tell.)"""
        now_s = self.clock.now()
        lags_s: list[float] = []
        for held in self._held.values():
            run = held.run
            due_s = held.due_s
            if due_s is None and run.submitted:
                due_s = self._ticks.get(run.platform_id)
            if due_s is not None and due_s < now_s:
                lags_s.append(now_s - due_s)
        return lags_s

    @property
    def watched_runs(self) -> int:
        """Runs this engine holds in memory now (started or to start)."""
        return len(self._held)

    async def _cycle(self, only: Sequence[int] | None = None) -> StepReport:
        report = StepReport()
        now_s = self.clock.now()
        if self._admission_due_s is not None and self._admission_due_s <= now_s:
            self._admission_due_s = None  # claimed below; set again if still held back
        await self._renew_if_due(now_s)
        claimed = await self.store.claim_due_runs(
            self.owner,
            utc(now_s),
            self.settings.lease_s,
            self.settings.claim_batch,
            only=only,
            exclude=sorted(self._in_flight),
        )
        report.claimed = len(claimed)
        for run in claimed:
            self._hold(run, now_s)
        self._leased.update(run.id for run in claimed)
        due = self._due(now_s, only)
        if not due:
            return report
        ids = {run.id for run in due}
        self._in_flight |= ids
        work_done = asyncio.Event()
        keeper = asyncio.ensure_future(
            self._every(self.settings.lease_s / 3, self._renew, work_done)
        )
        try:
            self._jobs.clear()
            self._platforms.clear()
            await self._work(due, report, per_run=only is not None)
        finally:
            work_done.set()
            await keeper
            self._in_flight -= ids
        return report

    def _hold(self, run: Run, now_s: float) -> None:
        """Keep a claimed run in memory: new ones are started at once, cancels confirmed at
        once; a started run joins its workspace's grid (a drive looks at it at once)."""
        held = self._held.get(run.id)
        if held is not None and held.run.submitted:
            self._watched[held.run.platform_id] -= 1
        own = run.run_id is None or run.cancel_requested_at is not None or run.repair_pending
        self._held[run.id] = _Held(run, now_s if own else None, fresh=True)
        if run.submitted:
            self._watched[run.platform_id] += 1

    def _keep(self, run: Run, due_s: float | None) -> None:
        """The run as just written: dropped from memory once it ended or its lease was lost,
        else kept with its next own look (None: on its workspace's grid)."""
        held = self._held.get(run.id)
        if held is None:
            return
        lease = held.run.lease
        if run.is_terminal or (lease is not None and run.lease != lease):
            self._drop(run.id)
            return
        if run.submitted and not held.run.submitted:
            self._watched[run.platform_id] += 1
            # It joins its workspace's grid: at the next point if the workspace had no runs to
            # watch; else at the point already due (never pushed back by a stream of starts).
            if self._watched[run.platform_id] == 1 or run.platform_id not in self._ticks:
                self._ticks[run.platform_id] = self.settings.policy.next_tick_s(self.clock.now())
        if run.cancel_requested_at is not None and due_s is None:
            due_s = self.clock.now() + self.settings.policy.cancel_poll_s
        if run.repair_pending and due_s is None:
            due_s = self.clock.now()  # on its own timer until its repair is sent (D13)
        self._held[run.id] = _Held(run, due_s)

    def _drop(self, run_id: int) -> None:
        held = self._held.pop(run_id, None)
        if held is not None and held.run.submitted:
            self._watched[held.run.platform_id] -= 1
        self._forget(run_id)

    def _due(self, now_s: float, only: Sequence[int] | None) -> list[Run]:
        """What to work on now: runs due on their own (new, cancelling, retrying, or driven),
        and every watched run of each workspace whose grid point has come."""
        cap = self.settings.max_submits_per_cycle
        submits: dict[int, int] = defaultdict(int)
        ticking = {
            platform_id
            for platform_id, count in self._watched.items()
            if count and self._ticks.get(platform_id, now_s) <= now_s
        }
        due: list[Run] = []
        for run_id in only if only is not None else list(self._held):
            held = self._held.get(run_id)
            if held is None:
                continue
            run = held.run
            own_due = held.due_s is not None and held.due_s <= now_s
            if not run.submitted:
                # run-now is paced per workspace: the rest wait for the next cycles.
                if own_due and submits[run.platform_id] < cap:
                    submits[run.platform_id] += 1
                    due.append(run)
            elif own_due or (
                # A run on its own timer (a retry backing off, a driven run) waits for it.
                held.due_s is None
                and (run.platform_id in ticking or (only is not None and held.fresh))
            ):
                due.append(run)
        return due

    async def _work(self, due: Sequence[Run], report: StepReport, *, per_run: bool) -> None:
        candidates = [run for run in due if not run.submitted]
        # Each run-now is counted before it is sent, under the runs' row locks (one transaction):
        # a cancel that came first ended its run without any; one that comes after knows one may
        # have been sent (H5). A run new to Databricks is admitted in that same transaction by
        # every contention profile of its platform, or held back by one (D14).
        admission = await self.store.admit_submits(
            [(run.id, run.lease) for run in candidates],
            utc(self.clock.now()),
            recheck_s=self.settings.profile_recheck_s,
        )
        allowed = {run.id for run in admission.begun}
        held_back = {run.id: run for run in admission.held_back}
        for run in candidates:
            if run.id in held_back:
                written = held_back[run.id]
                if written.is_terminal:
                    report.ended += 1
                    log.warning("run %s: not started: %s", run.id, written.message)
                else:
                    report.queued += 1
                    log.info("run %s: %s", run.id, written.message)
                    if written.next_poll_at is not None:
                        # Not held by this engine any more, but worth waking up for.
                        retry_s = written.next_poll_at.timestamp()
                        earliest = self._admission_due_s
                        self._admission_due_s = (
                            retry_s if earliest is None else min(earliest, retry_s)
                        )
                self._drop(run.id)
            elif run.id not in allowed:
                log.info("run %s: not submitted: cancelled first, or no longer ours", run.id)
                self._drop(run.id)
        to_submit = [run for run in candidates if run.id in allowed]
        submitted = await self._gather(self._submit(run, report) for run in to_submit)
        recorded = await self.store.record_submissions(
            [s for s in submitted if s is not None], utc(self.clock.now())
        )
        for run in recorded:
            self._keep(run, None)
        by_platform: dict[int, list[Run]] = defaultdict(list)
        own: list[Run] = []
        for run in due:
            if not run.submitted:
                continue
            held = self._held.get(run.id)
            if (
                per_run
                or run.cancel_requested_at is not None
                or run.repair_pending
                or (held and held.due_s is not None)
            ):
                own.append(run)
            else:
                by_platform[run.platform_id].append(run)
        now_s = self.clock.now()
        for platform_id in by_platform:
            self._ticks[platform_id] = self.settings.policy.next_tick_s(now_s)
        watched = await _gather_all(
            self._watch_platform(pid, runs, report) for pid, runs in by_platform.items()
        )
        watched.append(
            await self._gather(self._poll_own(run, report, driven=per_run) for run in own)
        )
        outcomes = [outcome for batch in watched for outcome in batch]
        await self._record_failures([o for o in outcomes if isinstance(o, PollFailure)])
        observations = [o for o in outcomes if isinstance(o, Observation)]
        report.changes += await self._record_observations(observations, report)

    async def _renew_if_due(self, now_s: float) -> None:
        if self._held and (
            self._renewed_s is None or now_s - self._renewed_s >= self.settings.lease_s / 3
        ):
            await self._renew()

    async def _renew(self) -> None:
        """Every lease this engine holds is extended in one statement, every third of a lease:
        the runs it watches in memory stay its own, and fall due for another engine only once
        it stops renewing. A renewal that fails is only logged: the lease may then lapse, and
        writes are fenced."""
        now_s = self.clock.now()
        try:
            await self.store.renew_held_leases(
                self.owner, utc(now_s), utc(now_s + self.settings.lease_s)
            )
        except Exception as exc:
            log.warning("engine %s: could not renew its leases: %s", self.owner, _one_line(exc))
            return
        self._renewed_s = now_s

    def _park_at(self, now_s: float) -> datetime:
        """The next poll written for a run this engine keeps in memory: its lease's end."""
        return utc(now_s + self.settings.lease_s)

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
        # It joins its workspace's grid: the next sweep lists it with its state.
        return Submission(
            run.id,
            started.run_id,
            started.run_page_url,
            self._park_at(self.clock.now()),
            run.lease,
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
            written = await self.store.record_submit_attempt(
                run.id, f"Could not reach Databricks yet: {exc}", retry_at, lease=run.lease
            )
            self._keep(written, retry_at.timestamp())
            return
        if (
            isinstance(exc, PolysyncError)
            or run.submit_attempts + 1 >= self.settings.max_submit_errors
        ):
            message = _refusal_message(exc) if isinstance(exc, PolysyncError) else _not_started(exc)
            log.warning("run %s: not started: %s", run.id, message)
            report.ended += 1
            self._keep(
                await self.store.record_failure(run.id, message, utc(now_s), lease=run.lease), None
            )
            return
        log.error(
            "run %s: unexpected error while starting it (attempt %d of %d), will retry",
            run.id,
            run.submit_attempts + 1,
            self.settings.max_submit_errors,
            exc_info=exc,
        )
        report.deferred += 1
        written = await self.store.record_submit_attempt(
            run.id,
            f"Not started yet: Polysync hit an unexpected error ({_one_line(exc)}); "
            "retrying with the same idempotency token.",
            retry_at,
            lease=run.lease,
            event_at=utc(now_s),
        )
        self._keep(written, retry_at.timestamp())

    # ------------------------------------------------------------------ watch (monitor)
    async def _watch_platform(
        self, platform_id: int, runs: list[Run], report: StepReport
    ) -> list[Observation | PollFailure]:
        """Look at a workspace's watched runs at its grid point: each sweep group of their job
        types (`JobType.sweep_group`) is swept once when that costs no more than a poll per run
        (`JobType.sweep_pays`), else each run is polled. The outcomes are written by the caller."""
        platform = await self._platform(platform_id)
        groups: dict[str, tuple[JobType, list[Run]]] = {}
        outcomes: list[Observation | PollFailure] = []
        for run in runs:
            job = await self._job(run.job_id)
            try:
                job_type = self.job_types.for_job(platform, job)
            except Exception as exc:  # e.g. a platform edited into an unusable one
                outcomes.append(self._poll_failed(run, exc, report))
                continue
            groups.setdefault(job_type.sweep_group, (job_type, []))[1].append(run)
        for group, (job_type, members) in groups.items():
            outcomes += await self._sweep_group(platform, group, job_type, members, report)
        return outcomes

    async def _sweep_group(
        self,
        platform: Platform,
        group: str,
        job_type: JobType,
        runs: list[Run],
        report: StepReport,
    ) -> list[Observation | PollFailure]:
        key = (platform.id, group)
        if job_type.sweep_pays(self._active_in.get(key), len(runs)):
            started_s = self.clock.now()
            try:
                listed = job_type.sweep([run.run_id for run in runs if run.run_id is not None])
                active = await self._within_budget(listed)
            except StoreUnavailableError:
                raise
            except Exception as exc:  # polling one by one still works
                log.warning(
                    "sweep of %s on platform %s failed, polling runs one by one: %s",
                    group,
                    platform.name,
                    _one_line(exc),
                )
            else:
                report.swept_platforms += 1
                self._active_in[key] = len(active)
                return await self._after_sweep(platform, runs, active, started_s, report)
        return await self._gather(self._poll(platform, run, report) for run in runs)

    async def _after_sweep(
        self,
        platform: Platform,
        runs: list[Run],
        active: Mapping[str, RunSnapshot],
        started_s: float,
        report: StepReport,
    ) -> list[Observation | PollFailure]:
        """What the sweep shows is used as it is: a changed run (status, message, task states)
        is written from its list entry, an unchanged one is not written at all. Only a run gone
        from the active list (it ended, or was deleted) gets one runs/get, to learn its end."""
        now_s = self.clock.now()
        outcomes: list[Observation | PollFailure] = []
        vanished: list[Run] = []
        for run in runs:
            listed = active.get(run.run_id or "")
            if listed is None or listed.is_terminal:
                submitted_s = run.submitted_at.timestamp() if run.submitted_at else now_s
                if listed is None and submitted_s >= started_s:
                    continue  # started after the sweep began: it may not be listed yet
                vanished.append(run)
            elif _differs(listed, run):
                report.polled += 1
                self._warn(run, listed)
                outcomes.append(
                    Observation(run.id, listed, utc(now_s), self._park_at(now_s), run.lease)
                )
        outcomes += await self._gather(self._poll(platform, run, report) for run in vanished)
        return outcomes

    async def _poll_own(
        self, run: Run, report: StepReport, *, driven: bool
    ) -> Observation | PollFailure:
        """A run looked at on its own timer: a cancel to send or confirm, a failed poll's
        retry (then it rejoins its workspace's grid), or a run driven by a command."""
        platform = await self._platform(run.platform_id)
        return await self._poll(platform, run, report, driven=driven)

    async def _poll(
        self, platform: Platform, run: Run, report: StepReport, *, driven: bool = False
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
        except _RepairRefused as refused:
            report.ended += 1
            self._forget(run.id)
            ended = refused.run
            snapshot = RunSnapshot(
                status=ended.status,
                message=ended.message,
                life_cycle_state=ended.life_cycle_state,
                result_state=ended.result_state,
                run_page_url=ended.run_page_url,
                tasks=ended.tasks,
            )
            return Observation(run.id, snapshot, utc(self.clock.now()), None, run.lease)
        except Exception as exc:  # isolated to this run
            return self._poll_failed(run, exc, report)
        report.polled += 1
        now_s = self.clock.now()
        self._warn(run, snapshot)
        if snapshot.is_terminal:
            self._forget(run.id)
            return Observation(run.id, snapshot, utc(now_s), None, run.lease)
        if driven and run.cancel_requested_at is None:
            # A command driving its run looks again at the grid's next point, as a sweep would.
            self._own_due[run.id] = self.settings.policy.next_tick_s(now_s)
        return Observation(run.id, snapshot, utc(now_s), self._park_at(now_s), run.lease)

    def _warn(self, run: Run, snapshot: RunSnapshot) -> None:
        for warning in snapshot.warnings:
            if (run.id, warning) not in self._warned:
                self._warned.add((run.id, warning))
                log.warning("run %s: %s", run.id, warning)

    async def _look(self, job_type: JobType, run: Run, report: StepReport) -> RunSnapshot:
        """runs/get; for a run whose cancel was asked, runs/cancel first (D10); for a run whose
        repair was asked, the repair first (D13)."""
        assert run.run_id is not None
        if run.repair_pending and run.cancel_requested_at is None:
            # A cancel asked before the repair was sent withdraws it: the run ends as it was.
            await self._send_repair(job_type, run, report)
        if run.cancel_requested_at is None:
            return await job_type.poll(run.run_id)
        outcome = await job_type.cancel(run.run_id)
        report.cancels_sent += int(outcome.requested)
        return outcome.snapshot if not outcome.requested else await job_type.poll(run.run_id)

    async def _send_repair(self, job_type: JobType, run: Run, report: StepReport) -> None:
        """Send the run's pending repair once (D13): the plan recorded with the request carries
        the run's `latest_repair_id`, so a resend after a crash finds the repair that landed
        instead of making a second one. Databricks' refusal (not a transient error) ends the
        run Failed again, saying why (_RepairRefused)."""
        assert run.run_id is not None
        assert run.repair is not None
        job = await self._job(run.job_id)
        planned = run.repair
        plan = RepairPlan(
            run_id=run.run_id,
            number=planned.number,
            latest_repair_id=planned.latest_repair_id,
            task_keys=planned.task_keys,
        )
        try:
            outcome = await repair_capability(job_type).repair(
                plan, job.as_imported(), run.parameters_sent
            )
        except DatabricksNotFoundError:
            raise
        except PolysyncError as exc:
            if isinstance(exc, DatabricksError) and exc.retryable:
                raise
            message = f"Repair #{planned.number} was refused: {_refusal_message(exc)}"
            written = await self.store.record_failure(
                run.id, message, utc(self.clock.now()), lease=run.lease
            )
            raise _RepairRefused(written) from exc
        report.repairs_sent += int(outcome.sent)
        log.info(
            "run %s (Databricks %s): repair #%d %s (repair id %s)",
            run.id,
            run.run_id,
            planned.number,
            "sent" if outcome.sent else "had landed already",
            outcome.repair_id,
        )
        await self.store.record_repair_sent(
            run.id, outcome.repair_id, utc(self.clock.now()), sent=outcome.sent, lease=run.lease
        )

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
        self._own_due[run.id] = now_s + delay_s  # its own retry; then it rejoins the grid
        return PollFailure(run.id, self._park_at(now_s), utc(now_s), message, run.lease)

    def _forget(self, run_id: int) -> None:
        self._own_due.pop(run_id, None)
        if self._warned:
            self._warned = {(r, w) for r, w in self._warned if r != run_id}

    async def _record_failures(self, failures: Sequence[PollFailure]) -> None:
        if failures:
            self._kept(await self.store.record_poll_failures(failures))

    def _kept(self, written: Iterable[Run]) -> None:
        for run in written:
            self._keep(run, self._own_due.pop(run.id, None))

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
        self._kept(run for run, _ in results)
        return sum(changed for _, changed in results)

    async def _record_one(self, observation: Observation, report: StepReport) -> int:
        try:
            ((run, changed),) = await self.store.record_snapshots([observation])
        except StoreUnavailableError:
            raise
        except Exception as exc:  # this run only
            run = await self.store.get_run(observation.run_id)
            failure = self._poll_failed(run, exc, report)
            self._kept(await self.store.record_poll_failures([failure]))
            return 0
        self._kept([run])
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


class _RepairRefused(Exception):
    """Databricks refused a run's repair: the run was ended Failed (`run`, as written)."""

    def __init__(self, run: Run) -> None:
        super().__init__(run.message)
        self.run = run


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


def _differs(listed: RunSnapshot, run: Run) -> bool:
    """Whether a sweep's entry says more than what is stored: another status, message, state,
    task states or run page URL, or a run whose failed polls are still counted."""
    return (
        listed.status is not run.status
        or listed.message != run.message
        or listed.life_cycle_state != run.life_cycle_state
        or listed.result_state != run.result_state
        or listed.tasks != run.tasks
        or bool(listed.run_page_url and listed.run_page_url != run.run_page_url)
        or run.poll_failures > 0
    )


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
