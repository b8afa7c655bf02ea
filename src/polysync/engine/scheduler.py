"""The engine's Task scheduler (issue 12): schedules fire, dependency cycles decide, queued
TaskRuns start by priority under each Task's cap, ended runs end their attempts (with retries and
execution timeouts). One per engine, driven by `Engine.step` on the engine's injected clock;
several engines may share a store: the database keeps every fire and every decision once.

docs/tasks.md "Wiring". Never names a concrete job type: runs start through `Engine.submit`
(D8 idempotency: the run key is per TaskRun attempt, so a crash never starts two) and repairs go
through the job type's `repair` operation when it has one.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from polysync.domain.models import RunStatus
from polysync.domain.records import Job, Run, utc
from polysync.errors import (
    ConfigError,
    ConflictError,
    DatabricksError,
    NotFoundError,
    RepairNotSupportedError,
    TaskRunTransitionError,
    UsageError,
)
from polysync.tasks.lifecycle import active_attempt, attach_run, end_attempt, time_out_attempt
from polysync.tasks.mapping import parse_references, render
from polysync.tasks.model import AttemptKind, Task, TaskRun, advance, new_task_run, timed_out
from polysync.tasks.schedule import DEFAULT_GRACE_S, due_fires, misfire_message, next_fire_time
from polysync.tasks.states import TaskRunStatus, TriggerType

if TYPE_CHECKING:
    from polysync.engine.engine import Engine
    from polysync.engine.ports import ScheduleState

log = logging.getLogger(__name__)

_OUTCOMES = {
    RunStatus.SUCCESS: TaskRunStatus.SUCCEEDED,
    RunStatus.FAILED: TaskRunStatus.FAILED,
    RunStatus.CANCELLED: TaskRunStatus.CANCELLED,
}


@runtime_checkable
class SupportsRepair(Protocol):
    """A job type whose failed runs can be repaired in place (`jobs/runs/repair` for
    Databricks job runs): rerun the failed and skipped tasks with the same job parameters."""

    async def repair(self, run: Run, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """How the scheduler paces itself (seconds of the engine's clock)."""

    refresh_s: float = 60.0
    """Reload every schedule and Task this often (edits made by other processes)."""
    sweep_s: float = 30.0
    """Decide every dependent Task's cycle this often (an upstream end another engine saw)."""
    slots: int = 100
    """TaskRun attempts started per step at most."""
    grace_s: float = DEFAULT_GRACE_S
    """A fire time younger than this is on time, not a misfire."""
    fire_batch: int = 500
    """Schedules whose fires are recorded in one transaction."""


@dataclass(slots=True)
class SchedulerReport:
    """What one scheduler step did."""

    fired: list[tuple[int, datetime]] = field(default_factory=list)
    """(task id, scheduled-for) of each fire this engine recorded (another engine's are not)."""
    lags_s: list[float] = field(default_factory=list)
    """For each fire recorded: how late it was recorded (now - scheduled-for)."""
    started: int = 0
    ended: int = 0
    decided: int = 0
    timed_out: int = 0


class TaskScheduler:
    """See the module docstring. `step` does one pass; `changed` makes the next one reload."""

    def __init__(self, engine: Engine, settings: SchedulerSettings | None = None) -> None:
        self.engine = engine
        self.store = engine.store
        self.clock = engine.clock
        self.settings = settings or SchedulerSettings()
        self._heap: list[tuple[datetime, int, int]] = []
        self._states: dict[tuple[int, int], ScheduleState] = {}
        self._tasks: dict[int, Task] = {}
        self._jobs: dict[int, Job] = {}
        self._refresh_at_s = float("-inf")
        self._sweep_at_s = float("-inf")

    def changed(self) -> None:
        """Tasks changed (saved, paused, resumed): reload them at the next step."""
        self._refresh_at_s = float("-inf")

    def next_work_in_s(self) -> float:
        """Seconds until the next fire time this engine knows of (or the next reload)."""
        now_s = self.clock.now()
        soonest_s = min(self._refresh_at_s, self._sweep_at_s)
        if self._heap:
            soonest_s = min(soonest_s, self._heap[0][0].timestamp())
        return max(0.0, soonest_s - now_s)

    async def step(self) -> SchedulerReport:
        """Fire what is due, follow running TaskRuns, decide cycles, start queued TaskRuns."""
        report = SchedulerReport()
        now_s = self.clock.now()
        now = utc(now_s)
        if now_s >= self._refresh_at_s:
            await self._refresh(now)
            self._refresh_at_s = now_s + self.settings.refresh_s
        await self._fire(now, report)
        await self._follow(now, report)
        if now_s >= self._sweep_at_s:
            self._sweep_at_s = now_s + self.settings.sweep_s
            for task_id in await self.store.dependent_task_ids():
                await self._decide(task_id, now, report)
        await self._dispatch(now, report)
        return report

    # ------------------------------------------------------------------ schedules
    async def _refresh(self, now: datetime) -> None:
        self._tasks = {t.id: t for t in await self.store.list_tasks() if t.id is not None}
        self._jobs.clear()
        self._states = {(s.task_id, s.position): s for s in await self.store.list_schedule_states()}
        heap: list[tuple[datetime, int, int]] = []
        for (task_id, position), state in self._states.items():
            if state.task_paused:
                continue
            fire = next_fire_time(state.schedule, state.last_fired_for)
            if fire is not None:
                heap.append((fire, task_id, position))
        heapq.heapify(heap)
        self._heap = heap

    async def _fire(self, now: datetime, report: SchedulerReport) -> None:
        """Every schedule whose next fire has passed: its due fires (misfire policy applied),
        recorded in batches of `fire_batch` schedules per transaction."""
        groups: list[tuple[int, list[TaskRun], tuple[int, datetime]]] = []
        nexts: dict[tuple[int, int], datetime | None] = {}
        while self._heap and self._heap[0][0] <= now:
            _, task_id, position = heapq.heappop(self._heap)
            state = self._states.get((task_id, position))
            task = self._tasks.get(task_id)
            if state is None or task is None or state.task_paused:
                continue
            due = due_fires(
                state.schedule, state.last_fired_for, now, grace_s=self.settings.grace_s
            )
            warning = misfire_message(state.schedule, due)
            if warning:
                log.warning("Task %r schedule %d: %s", task.name, position, warning)
            new = [
                new_task_run(
                    task,
                    TriggerType.SCHEDULE,
                    fire,
                    now,
                    message=(warning if warning and i == 0 else f"schedule {position} fired"),
                )
                for i, fire in enumerate(due.fires)
            ]
            groups.append((task_id, new, (position, due.last_fired_for)))
            nexts[(task_id, position)] = due.next_fire
        for start in range(0, len(groups), self.settings.fire_batch):
            batch = groups[start : start + self.settings.fire_batch]
            for task_id, inserted, _ in await self.store.record_fires(batch):
                for run in inserted:
                    report.fired.append((task_id, run.scheduled_for))
                    report.lags_s.append((now - run.scheduled_for).total_seconds())
                    if run.status.is_terminal:
                        await self._after_end(run, now, report)
            for task_id, _, (position, last) in batch:
                state = self._states.get((task_id, position))
                if state is not None:
                    self._states[(task_id, position)] = replace(
                        state, last_fired_for=max(state.last_fired_for, last)
                    )
                following = nexts.get((task_id, position))
                if following is not None:
                    heapq.heappush(self._heap, (following, task_id, position))

    # ------------------------------------------------------------------ dependencies
    async def _decide(self, task_id: int, now: datetime, report: SchedulerReport) -> None:
        decided = await self.store.decide_downstream(task_id, now)
        if decided is None:
            return
        report.decided += 1
        if decided.status.is_terminal:  # Skipped: its own downstreams decide in turn
            await self._after_end(decided, now, report)

    async def _after_end(self, task_run: TaskRun, now: datetime, report: SchedulerReport) -> None:
        for downstream in await self.store.downstream_task_ids(task_run.task_id):
            await self._decide(downstream, now, report)

    # ------------------------------------------------------------------ task runs
    async def _dispatch(self, now: datetime, report: SchedulerReport) -> None:
        for task_run in await self.store.begin_task_runs(now, self.settings.slots):
            report.started += 1
            await self._start_run(task_run, now, report)

    async def _follow(self, now: datetime, report: SchedulerReport) -> None:
        active = await self.store.active_task_runs()
        attempts = {tr.id: active_attempt(tr) for tr in active}
        runs = await self.store.runs_by_id(
            [a.run_id for a in attempts.values() if a is not None and a.run_id is not None]
        )
        for task_run in active:
            attempt = attempts[task_run.id]
            if attempt is None:
                continue  # waiting for its retry: begin_task_runs starts it when due
            if attempt.run_id is None:
                await self._start_run(task_run, now, report)
                continue
            run = runs.get(attempt.run_id)
            task = await self._task(task_run.task_id)
            if run is None or task is None:
                continue
            outcome = _OUTCOMES.get(run.status)
            try:
                if outcome is not None:
                    job = await self._job(task.job_id)
                    updated, _ = end_attempt(
                        task_run,
                        outcome,
                        now,
                        retry=task.retry,
                        job_type=job.job_type,
                        message=run.message if outcome is not TaskRunStatus.SUCCEEDED else "",
                    )
                elif task.timeout_s is not None and timed_out(attempt, task.timeout_s, now):
                    if run.cancel_requested_at is None:
                        await self.engine.request_cancel(run, cancelled_by=f"task:{task.name}")
                    job = await self._job(task.job_id)
                    updated, _ = time_out_attempt(
                        task_run, task.timeout_s, now, retry=task.retry, job_type=job.job_type
                    )
                    report.timed_out += 1
                else:
                    continue
                saved = await self.store.save_task_run(task_run, updated)
            except (ConflictError, TaskRunTransitionError):
                continue  # another engine or a user moved it on first
            if saved.status.is_terminal:
                report.ended += 1
                await self._after_end(saved, now, report)

    async def _start_run(self, task_run: TaskRun, now: datetime, report: SchedulerReport) -> None:
        """Create (or find, after a crash) the run of `task_run`'s running attempt and attach
        it. A mapping or parameter that cannot be resolved fails the TaskRun before any API
        call."""
        attempt = active_attempt(task_run)
        task = await self._task(task_run.task_id)
        if attempt is None or task is None:
            return
        key = f"taskrun-{task_run.id}-attempt-{attempt.number}"
        try:
            run = await self.store.find_run_by_key(key)
            if run is None:
                job = await self._job(task.job_id)
                if attempt.kind is AttemptKind.REPAIR:
                    run = await self._repair(task_run, task)
                if run is None:
                    run = await self._new_run(task, task_run, job, key)
        except DatabricksError as exc:
            # The repair could not be planned now (repair_history unreadable): next pass.
            log.warning("TaskRun %s: attempt %d not started yet: %s", task_run.id,
                        attempt.number, exc)  # fmt: skip
            return
        except (UsageError, ConfigError) as exc:
            # Refused input (a mapping with a missing fact, a value that does not fit its Data
            # Type, the Job deleted, a secret reference that does not resolve): no retry helps.
            failed = advance(
                task_run,
                TaskRunStatus.FAILED,
                now,
                f"attempt {attempt.number} could not start: {exc.message}",
            )
            try:
                saved = await self.store.save_task_run(task_run, failed)
            except ConflictError:
                return
            report.ended += 1
            await self._after_end(saved, now, report)
            return
        # Attached by another engine, or cancelled meanwhile: nothing to do.
        with contextlib.suppress(ConflictError, TaskRunTransitionError):
            await self.store.save_task_run(task_run, attach_run(task_run, run.id))

    async def _new_run(self, task: Task, task_run: TaskRun, job: Job, key: str) -> Run:
        """A new run of the Task's Job (a first attempt or a Restart), keyed by the attempt."""
        overrides = await self._render(task, task_run)
        try:
            return await self.engine.submit(
                job, overrides, executed_by=f"task:{task.name}", key=key
            )
        except ConflictError:  # another engine created it first
            run = await self.store.find_run_by_key(key)
            if run is None:
                raise
            return run

    async def _repair(self, task_run: TaskRun, task: Task) -> Run | None:
        """A Repair attempt: the previous attempt's run repaired in place (D13,
        `Engine.request_repair`: only its failed and skipped tasks rerun, with the same
        job_parameters, in the same Databricks run), or None to start a new run instead (its
        Job Type cannot repair, or there is no run to repair)."""
        previous = next(
            (a.run_id for a in reversed(task_run.attempts[:-1]) if a.run_id is not None), None
        )
        if previous is None:
            return None
        run = await self.store.get_run(previous)
        if not run.is_terminal:
            return run  # already reopened by this repair (an engine stopped before attaching)
        try:
            return await self.engine.request_repair(run, requested_by=f"task:{task.name}")
        except RepairNotSupportedError:
            log.info("TaskRun %s: %s runs cannot be repaired; a new run", task_run.id, task.name)
            return None
        except ConflictError:
            again = await self.store.get_run(previous)
            if not again.is_terminal:
                return again  # another engine (or a user) reopened it first: follow it
            raise

    async def _render(self, task: Task, task_run: TaskRun) -> dict[str, str]:
        """The Task's parameters with `{{upstream.…}}` replaced from the upstream runs of the
        cycle (ParameterMappingError when a fact is missing)."""
        mapped = {
            name: value
            for name, value in task.parameters.items()
            if parse_references(value, parameter=name)
        }
        if not mapped:
            return dict(task.parameters)
        facts = await self.store.upstream_facts(task_run)
        return {
            name: render(value, facts, parameter=name) if name in mapped else value
            for name, value in task.parameters.items()
        }

    async def _task(self, task_id: int) -> Task | None:
        task = self._tasks.get(task_id)
        if task is None:
            try:
                task = await self.store.get_task(task_id)
            except NotFoundError:
                return None
            self._tasks[task_id] = task
        return task

    async def _job(self, job_id: int) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = await self.store.get_job(job_id)
        return job


def fire_counts(counts: Mapping[tuple[int, str, datetime], int]) -> dict[str, int]:
    """How many (task, trigger, scheduled-for) keys were recorded once, and how many more than
    once (the exactly-once check of the tests and the benchmark)."""
    once = sum(1 for n in counts.values() if n == 1)
    return {"once": once, "more": sum(1 for n in counts.values() if n > 1)}
