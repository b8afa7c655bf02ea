"""The Tasks half of the SQL store (issue 12): Tasks, schedules with their watermarks,
dependencies, TaskRuns with their attempts and history. Mixed into `SqlStore`; the methods are
those of `polysync.engine.ports.TaskStore` (one transaction each, retried when transient).

Exactly once: a TaskRun is inserted under UNIQUE (task_id, trigger, scheduled_for) with
`ON CONFLICT DO NOTHING`, so a schedule's fire or a dependency cycle's decision is recorded once
however many engines make it (docs/tasks.md "Exactly once").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from polysync.domain.records import Run
from polysync.engine.ports import ScheduleState, TaskChecker, TaskRunFilter
from polysync.errors import LIST_TASKS, ConflictError, Hint, NotFoundError, not_found
from polysync.store.database import store_call
from polysync.store.rows import run_from_row
from polysync.store.tables import (
    contention_profile_tasks,
    runs,
    task_dependencies,
    task_run_attempts,
    task_run_events,
    task_runs,
    task_schedules,
    tasks,
)
from polysync.tasks.dependencies import (
    Condition,
    Decision,
    Dependency,
    UpstreamOutcome,
    cycle_outcome,
    downstream_decision,
)
from polysync.tasks.lifecycle import retries_due, start_attempt
from polysync.tasks.mapping import UpstreamRunFacts
from polysync.tasks.model import (
    Attempt,
    AttemptKind,
    OnOverlap,
    Task,
    TaskRun,
    TaskRunEvent,
    new_task_run,
    pick_to_start,
)
from polysync.tasks.retry import Backoff, RetryPolicy, RetryStrategy
from polysync.tasks.schedule import MisfirePolicy, Schedule
from polysync.tasks.states import TaskRunStatus, TriggerType

LIST_TASK_RUNS = Hint("list_task_runs", "List the TaskRuns.")
# Any constant: dispatch takes it so two engines never start more than a Task's cap at once.
_PG_DISPATCH_LOCK = 0x7461736B72756E73  # "taskruns"
MAX_TASK_RUNS_LISTED = 1000


class TaskStoreMixin:
    """Tasks and TaskRuns in SQL (see the module docstring). Needs `_read`, `_write` and
    `engine` from `SqlStore`."""

    engine: Any

    def _read(self) -> Any: ...  # pragma: no cover - provided by SqlStore

    def _write(self) -> Any: ...  # pragma: no cover - provided by SqlStore

    # ------------------------------------------------------------------ tasks
    @store_call
    async def save_task(
        self, task: Task, now: datetime, *, check: TaskChecker, actor: str | None = None
    ) -> Task:
        """Insert (`task.id` None) or update the Task, with its schedules and dependencies.
        `check(task, others)` runs inside the transaction over every other saved Task (names,
        edges: `check_task` then `check_acyclic`) and returns the Task to save; what it raises
        leaves nothing written. NotFoundError for an unknown id; ConflictError when a concurrent
        save took the name. A schedule whose fields did not change keeps its watermark; a new
        or changed one starts at `now` (earlier times are not misfires)."""
        async with self._write() as conn:
            others = [t for t in await _load_tasks(conn) if t.id != task.id]
            previous: Task | None = None
            if task.id is not None:
                previous = await _load_task(conn, task.id, lock=True)
            checked = check(task, others)
            ids = {t.name: t.id for t in others}
            values = _task_values(checked, now)
            try:
                if previous is None:
                    row = (
                        await conn.execute(
                            insert(tasks)
                            .values(**values, created_at=now, dependencies_saved_at=now)
                            .returning(tasks.c.id)
                        )
                    ).one()
                    task_id = int(row.id)
                else:
                    task_id = int(previous.id or 0)
                    if previous.dependencies != checked.dependencies:
                        values["dependencies_saved_at"] = now
                    await conn.execute(update(tasks).where(tasks.c.id == task_id).values(values))
            except IntegrityError as exc:
                raise ConflictError(
                    f"A Task named {checked.name!r} already exists. Choose another name.",
                    hint=LIST_TASKS,
                ) from exc
            await _write_schedules(conn, task_id, checked.schedules, now)
            await conn.execute(
                delete(task_dependencies).where(task_dependencies.c.task_id == task_id)
            )
            for position, edge in enumerate(checked.dependencies):
                await conn.execute(
                    insert(task_dependencies).values(
                        task_id=task_id,
                        upstream_task_id=ids[edge.upstream],
                        position=position,
                        condition=edge.condition.value,
                    )
                )
            return await _load_task(conn, task_id)

    @store_call
    async def get_task(self, ref: int | str) -> Task:
        """By id or by name; NotFoundError if absent."""
        async with self._read() as conn:
            if isinstance(ref, int):
                return await _load_task(conn, ref)
            row = (await conn.execute(select(tasks.c.id).where(tasks.c.name == ref))).first()
            if row is None:
                raise _task_not_found(ref)
            return await _load_task(conn, int(row.id))

    @store_call
    async def list_tasks(self) -> Sequence[Task]:
        """Every Task, by name."""
        async with self._read() as conn:
            return sorted(await _load_tasks(conn), key=lambda t: t.name)

    @store_call
    async def delete_task(self, task_id: int, now: datetime) -> Task:
        """Remove the Task with its schedules, TaskRuns and contention profile links. ConflictError while another Task
        depends on it (name them) or one of its TaskRuns is Queued or Running."""
        async with self._write() as conn:
            task = await _load_task(conn, task_id, lock=True)
            downstream = (
                await conn.execute(
                    select(tasks.c.name)
                    .join(task_dependencies, task_dependencies.c.task_id == tasks.c.id)
                    .where(task_dependencies.c.upstream_task_id == task_id)
                    .order_by(tasks.c.name)
                )
            ).all()
            if downstream:
                names = ", ".join(repr(row.name) for row in downstream[:10])
                raise ConflictError(
                    f"Task {task.name!r} cannot be deleted: {names} depend on it. Remove those "
                    "dependencies first."
                )
            active = await _count_active(conn, task_id)
            if active:
                raise ConflictError(
                    f"Task {task.name!r} has {active} Queued or Running TaskRun(s). Cancel them "
                    "or wait for them to end, then delete it."
                )
            # Its contention profile links go with it (D14): no foreign key, the links predate
            # the tasks table.
            await conn.execute(
                delete(contention_profile_tasks).where(
                    contention_profile_tasks.c.task_id == task_id
                )
            )
            await conn.execute(delete(tasks).where(tasks.c.id == task_id))
            return task

    @store_call
    async def set_task_paused(self, task_id: int, paused: bool, now: datetime) -> Task:
        """Pause or resume the Task. Resuming moves each schedule's watermark and the
        dependency cycle's start to `now`: times passed while paused are dropped (D12)."""
        async with self._write() as conn:
            task = await _load_task(conn, task_id, lock=True)
            if task.paused == paused:
                return task
            values: dict[str, Any] = {"paused": paused, "updated_at": now}
            if not paused:
                values["dependencies_saved_at"] = now
                await conn.execute(
                    update(task_schedules)
                    .where(task_schedules.c.task_id == task_id)
                    .values(last_fired_for=now)
                )
            await conn.execute(update(tasks).where(tasks.c.id == task_id).values(values))
            return await _load_task(conn, task_id)

    @store_call
    async def list_schedule_states(self) -> Sequence[ScheduleState]:
        """Every schedule of every Task with its watermark (the scheduler's heap is built from
        these)."""
        async with self._read() as conn:
            query = select(task_schedules, tasks.c.paused.label("task_paused")).join(
                tasks, tasks.c.id == task_schedules.c.task_id
            )
            return [
                ScheduleState(
                    task_id=int(row.task_id),
                    position=int(row.position),
                    schedule=_schedule_from_row(row),
                    last_fired_for=row.last_fired_for,
                    task_paused=bool(row.task_paused),
                )
                for row in (await conn.execute(query)).all()
            ]

    # ------------------------------------------------------------------ task runs
    @store_call
    async def add_task_runs(
        self,
        task_id: int,
        new: Sequence[TaskRun],
        now: datetime,
        *,
        overlap: bool = True,
        watermark: tuple[int, datetime] | None = None,
    ) -> tuple[list[TaskRun], datetime | None]:
        """Insert new TaskRuns of one Task, each at most once: a (task, trigger, scheduled-for)
        already recorded is left alone. With `overlap`, a Queued one finding the Task at its
        concurrency cap becomes Skipped when its on-overlap is skip. `watermark` = (schedule
        position, last fired for) advances that schedule's watermark, never backwards. Returns
        the TaskRuns inserted and the watermark as stored (None without `watermark`)."""
        async with self._write() as conn:
            return await _add_runs(conn, task_id, new, overlap=overlap, watermark=watermark)

    @store_call
    async def record_fires(
        self, fires: Sequence[tuple[int, Sequence[TaskRun], tuple[int, datetime]]]
    ) -> list[tuple[int, list[TaskRun], datetime | None]]:
        """Several schedules' fires in one transaction, set-wise: for each (task id, new
        TaskRuns, (schedule position, last fired for)), what `add_task_runs` with overlap does
        (a Queued TaskRun of a Task at its cap with on-overlap skip is recorded Skipped), in a
        few statements for the whole batch. Tasks are locked in id order (two engines never
        deadlock); a Task deleted meanwhile is left out, one paused meanwhile records nothing
        (its watermark still moves: pausing drops fire times). Returns (task id, inserted, None) per
        group (watermarks only move forward; they are not read back)."""
        if not fires:
            return []
        async with self._write() as conn:
            ids = sorted({task_id for task_id, _, _ in fires})
            rows = {
                int(row.id): row
                for row in (
                    await conn.execute(
                        select(
                            tasks.c.id, tasks.c.concurrency_cap, tasks.c.on_overlap, tasks.c.paused
                        )
                        .where(tasks.c.id.in_(ids))
                        .order_by(tasks.c.id)
                        .with_for_update()
                    )
                ).all()
            }
            skipping = [i for i, row in rows.items() if row.on_overlap == OnOverlap.SKIP.value]
            active: dict[int, int] = {}
            if skipping:
                active = {
                    int(task_id): int(n)
                    for task_id, n in (
                        await conn.execute(
                            select(task_runs.c.task_id, func.count())
                            .where(
                                task_runs.c.task_id.in_(skipping), task_runs.c.terminal.is_(False)
                            )
                            .group_by(task_runs.c.task_id)
                        )
                    ).all()
                }
            candidates: list[TaskRun] = []
            for task_id, new, _ in fires:
                row = rows.get(task_id)
                if row is None or row.paused:
                    continue  # paused meanwhile (maybe by another process): its fires drop
                for run in new:
                    chosen = run
                    count = active.get(task_id, 0)
                    if task_id in active or row.on_overlap == OnOverlap.SKIP.value:
                        if run.status is TaskRunStatus.QUEUED and count >= row.concurrency_cap:
                            chosen = _skipped_for_overlap(run, count, row.concurrency_cap)
                        elif run.status is TaskRunStatus.QUEUED:
                            active[task_id] = count + 1
                    candidates.append(chosen)
            inserted = await _insert_task_runs(conn, candidates)
            marks = [
                {"t": task_id, "p": position, "mark": mark}
                for task_id, _, (position, mark) in fires
                if task_id in rows
            ]
            if marks:
                await conn.execute(
                    update(task_schedules)
                    .where(
                        task_schedules.c.task_id == bindparam("t"),
                        task_schedules.c.position == bindparam("p"),
                        task_schedules.c.last_fired_for < bindparam("mark"),
                    )
                    .values(last_fired_for=bindparam("mark")),
                    marks,
                )
        by_task: dict[int, list[TaskRun]] = {}
        for run in inserted:
            by_task.setdefault(run.task_id, []).append(run)
        return [(task_id, by_task.get(task_id, []), None) for task_id in ids if task_id in rows]

    @store_call
    async def get_task_run(self, task_run_id: int) -> TaskRun:
        """NotFoundError if absent."""
        async with self._read() as conn:
            return await _load_task_run(conn, task_run_id)

    @store_call
    async def list_task_runs(self, where: TaskRunFilter) -> Sequence[TaskRun]:
        """Newest first (by queued time, then id), at most `where.limit`."""
        async with self._read() as conn:
            query = select(task_runs)
            if where.task_id is not None:
                query = query.where(task_runs.c.task_id == where.task_id)
            if where.statuses:
                query = query.where(task_runs.c.status.in_([s.value for s in where.statuses]))
            if where.since is not None:
                query = query.where(task_runs.c.queued_at >= where.since)
            limit = max(1, min(where.limit, MAX_TASK_RUNS_LISTED))
            query = query.order_by(task_runs.c.queued_at.desc(), task_runs.c.id.desc()).limit(limit)
            rows = (await conn.execute(query)).all()
            return await _assemble(conn, rows)

    @store_call
    async def latest_task_runs(self) -> Mapping[int, TaskRun]:
        """{task id: its latest TaskRun (highest id)} for every Task that has one."""
        async with self._read() as conn:
            newest = select(func.max(task_runs.c.id)).group_by(task_runs.c.task_id)
            rows = (await conn.execute(select(task_runs).where(task_runs.c.id.in_(newest)))).all()
            return {run.task_id: run for run in await _assemble(conn, rows)}

    @store_call
    async def active_task_runs(self) -> Sequence[TaskRun]:
        """Every Running TaskRun (an attempt running or a retry waiting), oldest first."""
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    select(task_runs)
                    .where(task_runs.c.status == TaskRunStatus.RUNNING.value)
                    .order_by(task_runs.c.id)
                )
            ).all()
            return await _assemble(conn, rows)

    @store_call
    async def save_task_run(self, previous: TaskRun, updated: TaskRun) -> TaskRun:
        """Write `updated` over `previous` (as read): its status, times, attempts and the
        history events added since. ConflictError when the stored TaskRun is no longer
        `previous` (another engine or a user changed it first: read it again)."""
        if previous.id is None or updated.id != previous.id:
            raise ValueError("save_task_run needs the same saved TaskRun before and after")
        async with self._write() as conn:
            await _save_task_run(conn, previous, updated)
            return await _load_task_run(conn, previous.id)

    @store_call
    async def begin_task_runs(
        self, now: datetime, slots: int, *, running_limit: int | None = None
    ) -> list[TaskRun]:
        """Start up to `slots` attempts, in one transaction: Queued TaskRuns in dispatch order
        (priority, scheduled-for, queued time, id) under each Task's concurrency cap, and
        Running TaskRuns whose retry delay has passed. Each returned TaskRun has its new
        attempt running with no run attached yet (the caller creates the run, keyed by
        TaskRun and attempt so a crash never makes two). Two engines never exceed a cap: on
        PostgreSQL the transaction takes an advisory lock; SQLite writes one at a time."""
        if slots <= 0:
            return []
        # Every engine cycle asks: a read first, so that a cycle with nothing to start takes
        # neither SQLite's write lock nor PostgreSQL's dispatch lock.
        startable = or_(
            task_runs.c.status == TaskRunStatus.QUEUED.value,
            and_(
                task_runs.c.status == TaskRunStatus.RUNNING.value,
                task_runs.c.next_attempt_at.is_not(None),
                task_runs.c.next_attempt_at <= now,
            ),
        )
        async with self._read() as conn:
            found = await conn.execute(select(task_runs.c.id).where(startable).limit(1))
            if found.first() is None:
                return []
        async with self._write() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_DISPATCH_LOCK}
                )
            started: list[TaskRun] = []
            waiting_rows = (
                await conn.execute(
                    select(task_runs)
                    .where(
                        task_runs.c.status == TaskRunStatus.RUNNING.value,
                        task_runs.c.next_attempt_at.is_not(None),
                        task_runs.c.next_attempt_at <= now,
                    )
                    .order_by(task_runs.c.next_attempt_at, task_runs.c.id)
                    .limit(slots)
                )
            ).all()
            for run in retries_due(await _assemble(conn, waiting_rows), now):
                if len(started) >= slots:
                    break
                begun = start_attempt(run, now)
                await _save_task_run(conn, run, begun)
                started.append(begun)
            free = slots - len(started)
            if free <= 0:
                return started
            running = dict(
                (
                    await conn.execute(
                        select(task_runs.c.task_id, func.count())
                        .where(task_runs.c.status == TaskRunStatus.RUNNING.value)
                        .group_by(task_runs.c.task_id)
                    )
                ).all()
            )
            queued_rows = (
                await conn.execute(
                    select(task_runs)
                    .where(task_runs.c.status == TaskRunStatus.QUEUED.value)
                    .order_by(
                        task_runs.c.priority.desc(),
                        task_runs.c.scheduled_for,
                        task_runs.c.queued_at,
                        task_runs.c.id,
                    )
                    .limit(running_limit or max(free * 20, 500))
                )
            ).all()
            if not queued_rows:
                return started
            task_ids = sorted({int(row.task_id) for row in queued_rows})
            caps = dict(
                (
                    await conn.execute(
                        select(tasks.c.id, tasks.c.concurrency_cap).where(tasks.c.id.in_(task_ids))
                    )
                ).all()
            )
            queued = await _assemble(conn, queued_rows)
            for run in pick_to_start(queued, running, caps, free, now):
                begun = start_attempt(run, now, kind=AttemptKind.START)
                await _save_task_run(conn, run, begun)
                started.append(begun)
            return started

    @store_call
    async def task_run_of_run(self, run_id: int) -> TaskRun | None:
        """The TaskRun one of whose attempts started or repaired our run `run_id`, if any."""
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(task_run_attempts.c.task_run_id)
                    .where(task_run_attempts.c.run_id == run_id)
                    .limit(1)
                )
            ).first()
            if row is None:
                return None
            return await _load_task_run(conn, int(row.task_run_id))

    @store_call
    async def runs_by_id(self, run_ids: Sequence[int]) -> Mapping[int, Run]:
        """Our runs with these ids (absent ones left out), in one query."""
        if not run_ids:
            return {}
        async with self._read() as conn:
            rows = (
                await conn.execute(select(runs).where(runs.c.id.in_(sorted(set(run_ids)))))
            ).all()
            return {int(row.id): run_from_row(row) for row in rows}

    @store_call
    async def downstream_task_ids(self, task_id: int) -> Sequence[int]:
        """The Tasks that depend on `task_id`, by id."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(task_dependencies.c.task_id)
                .where(task_dependencies.c.upstream_task_id == task_id)
                .order_by(task_dependencies.c.task_id)
            )
            return [int(row.task_id) for row in rows]

    @store_call
    async def dependent_task_ids(self) -> Sequence[int]:
        """Every Task that has upstreams (what a dependency sweep decides)."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(task_dependencies.c.task_id).distinct().order_by(task_dependencies.c.task_id)
            )
            return [int(row.task_id) for row in rows]

    @store_call
    async def decide_downstream(self, task_id: int, now: datetime) -> TaskRun | None:
        """Decide the current dependency cycle of `task_id` (docs/tasks.md "The same cycle"),
        holding its row: when every upstream finished in the cycle, insert a Dependency
        TaskRun at the cycle key, Queued (or Skipped: a condition not met, or on-overlap skip)
        and return it; None while waiting, when the Task is paused or has no upstreams, or when
        this cycle was already decided."""
        async with self._write() as conn:
            row = await _lock_task_row(conn, task_id)
            if row.paused:
                return None
            task = await _load_task(conn, task_id)
            if not task.dependencies:
                return None
            start = await _cycle_start(conn, task_id, row.dependencies_saved_at)
            ids = await _upstream_ids(conn, task_id)
            outcomes: list[UpstreamOutcome] = []
            for edge in task.dependencies:
                ended = (
                    await conn.execute(
                        select(task_runs.c.status, task_runs.c.ended_at).where(
                            task_runs.c.task_id == ids[edge.upstream],
                            task_runs.c.terminal.is_(True),
                            task_runs.c.ended_at > start,
                        )
                    )
                ).all()
                status, ended_at = cycle_outcome(
                    ((TaskRunStatus(r.status), r.ended_at) for r in ended), start
                )
                outcomes.append(UpstreamOutcome(edge.upstream, edge.condition, status, ended_at))
            decision = downstream_decision(outcomes)
            if decision.decision is Decision.WAIT or decision.cycle_key is None:
                return None
            status = (
                TaskRunStatus.QUEUED if decision.decision is Decision.RUN else TaskRunStatus.SKIPPED
            )
            active = await _count_active(conn, task_id)
            message = decision.reason
            if (
                status is TaskRunStatus.QUEUED
                and active >= row.concurrency_cap
                and row.on_overlap == OnOverlap.SKIP.value
            ):
                status = TaskRunStatus.SKIPPED
                message = (
                    f"skipped: {active} TaskRun(s) of this Task are active (concurrency cap "
                    f"{row.concurrency_cap}, on overlap: skip); {decision.reason}"
                )
            run = new_task_run(
                task,
                TriggerType.DEPENDENCY,
                decision.cycle_key,
                now,
                status=status,
                message=message,
            )
            return await _insert_task_run(conn, run)

    @store_call
    async def upstream_facts(self, task_run: TaskRun) -> Mapping[str, UpstreamRunFacts]:
        """For mapping (`mapping.render`): each upstream Task's TaskRun of `task_run`'s cycle
        and the run of its last attempt. A Dependency TaskRun's cycle ends at its key
        (scheduled-for) and starts at the previous Dependency TaskRun's key; for any other
        trigger, each upstream's latest TaskRun that ended before this one was queued."""
        async with self._read() as conn:
            ids = await _upstream_ids(conn, task_run.task_id)
            high = task_run.scheduled_for
            low: datetime | None = None
            if task_run.trigger is TriggerType.DEPENDENCY:
                low = (
                    await conn.execute(
                        select(func.max(task_runs.c.scheduled_for)).where(
                            task_runs.c.task_id == task_run.task_id,
                            task_runs.c.trigger == TriggerType.DEPENDENCY.value,
                            task_runs.c.scheduled_for < high,
                        )
                    )
                ).scalar_one_or_none()
            else:
                high = task_run.queued_at
            facts: dict[str, UpstreamRunFacts] = {}
            for name, upstream_id in ids.items():
                query = select(task_runs).where(
                    task_runs.c.task_id == upstream_id,
                    task_runs.c.terminal.is_(True),
                    task_runs.c.ended_at <= high,
                )
                if low is not None:
                    query = query.where(task_runs.c.ended_at > low)
                row = (
                    await conn.execute(
                        query.order_by(task_runs.c.ended_at.desc(), task_runs.c.id.desc()).limit(1)
                    )
                ).first()
                if row is None:
                    continue
                upstream = (await _assemble(conn, [row]))[0]
                run_ids = [a.run_id for a in upstream.attempts if a.run_id is not None]
                run: Run | None = None
                if run_ids:
                    run_row = (
                        await conn.execute(select(runs).where(runs.c.id == run_ids[-1]))
                    ).first()
                    run = run_from_row(run_row) if run_row is not None else None
                facts[name] = UpstreamRunFacts(
                    status=upstream.status.value,
                    run_id=run.run_id if run is not None else None,
                    run_page_url=run.run_page_url if run is not None else None,
                    start_time=upstream.started_at,
                    end_time=upstream.ended_at,
                    scheduled_for=upstream.scheduled_for,
                    parameters=dict(run.parameters_sent) if run is not None else {},
                )
            return facts

    @store_call
    async def count_task_runs(self) -> Mapping[tuple[int, str, datetime], int]:
        """{(task id, trigger, scheduled-for): how many TaskRuns} (the exactly-once proof)."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(
                    task_runs.c.task_id,
                    task_runs.c.trigger,
                    task_runs.c.scheduled_for,
                    func.count(),
                ).group_by(task_runs.c.task_id, task_runs.c.trigger, task_runs.c.scheduled_for)
            )
            return {(int(r[0]), str(r[1]), r[2]): int(r[3]) for r in rows}


# --- rows -------------------------------------------------------------------------------------


async def _add_runs(
    conn: AsyncConnection,
    task_id: int,
    new: Sequence[TaskRun],
    *,
    overlap: bool,
    watermark: tuple[int, datetime] | None,
) -> tuple[list[TaskRun], datetime | None]:
    row = await _lock_task_row(conn, task_id)
    active = await _count_active(conn, task_id)
    inserted: list[TaskRun] = []
    for given in new:
        run = given
        if run.trigger.by_user:
            run = await _own_instant(conn, run)
        if (
            overlap
            and run.status is TaskRunStatus.QUEUED
            and active >= row.concurrency_cap
            and row.on_overlap == OnOverlap.SKIP.value
        ):
            message = (
                f"skipped: {active} TaskRun(s) of this Task are active (concurrency "
                f"cap {row.concurrency_cap}, on overlap: skip)"
            )
            run = replace(
                run,
                status=TaskRunStatus.SKIPPED,
                ended_at=run.queued_at,
                message=message,
                history=(TaskRunEvent(run.queued_at, TaskRunStatus.SKIPPED, message),),
            )
        stored = await _insert_task_run(conn, run)
        if stored is not None:
            inserted.append(stored)
            if stored.status.is_active:
                active += 1
    stored_mark: datetime | None = None
    if watermark is not None:
        position, mark = watermark
        where = (task_schedules.c.task_id == task_id, task_schedules.c.position == position)
        current = (
            await conn.execute(select(task_schedules.c.last_fired_for).where(*where))
        ).scalar_one_or_none()
        if current is not None:
            stored_mark = max(current, mark)
            if stored_mark != current:
                await conn.execute(
                    update(task_schedules).where(*where).values(last_fired_for=stored_mark)
                )
    return inserted, stored_mark


async def _own_instant(conn: AsyncConnection, run: TaskRun) -> TaskRun:
    """A TaskRun made by a user's press, its scheduled-for moved a microsecond past the
    latest of the same Task and trigger when that instant is taken: a second press at one
    instant is a second TaskRun, never a unique-key clash (the Task row is locked: see
    `_add_runs`)."""
    same = (task_runs.c.task_id == run.task_id, task_runs.c.trigger == run.trigger.value)
    taken = await conn.scalar(
        select(func.count())
        .select_from(task_runs)
        .where(*same, task_runs.c.scheduled_for == run.scheduled_for)
    )
    if not taken:
        return run
    latest = await conn.scalar(select(func.max(task_runs.c.scheduled_for)).where(*same))
    return replace(run, scheduled_for=max(latest, run.scheduled_for) + timedelta(microseconds=1))


def _task_values(task: Task, now: datetime) -> dict[str, Any]:
    return {**task_settings(task), "updated_at": now}


def task_settings(task: Task) -> dict[str, Any]:
    """A Task's own settings as its `tasks` row holds them, which is also their JSON shape
    (`task_services.task_data`): name, job_id, parameters, paused, description, tags,
    priority, concurrency_cap, on_overlap, timeout_s (seconds or None), retry."""
    return {
        "name": task.name,
        "job_id": task.job_id,
        "parameters": dict(task.parameters),
        "paused": task.paused,
        "description": task.description,
        "tags": dict(task.tags),
        "priority": task.priority,
        "concurrency_cap": task.concurrency_cap,
        "on_overlap": task.on_overlap.value,
        "timeout_s": task.timeout_s,
        "retry": retry_to_json(task.retry),
    }


def retry_to_json(policy: RetryPolicy) -> dict[str, Any]:
    """A retry policy as stored (and shown in JSON)."""
    return {
        "enabled": policy.enabled,
        "max_attempts": policy.max_attempts,
        "backoff": policy.backoff.value,
        "initial_delay_s": policy.initial_delay_s,
        "max_delay_s": policy.max_delay_s,
        "strategy": policy.strategy.value if policy.strategy is not None else None,
    }


def retry_from_json(data: Mapping[str, Any]) -> RetryPolicy:
    strategy = data.get("strategy")
    return RetryPolicy(
        enabled=bool(data.get("enabled", False)),
        max_attempts=int(data.get("max_attempts", 3)),
        backoff=Backoff(data.get("backoff", Backoff.EXPONENTIAL.value)),
        initial_delay_s=float(data.get("initial_delay_s", 60.0)),
        max_delay_s=float(data.get("max_delay_s", 3600.0)),
        strategy=RetryStrategy(strategy) if strategy else None,
    )


def _schedule_from_row(row: Any) -> Schedule:
    return Schedule(
        cron=row.cron,
        timezone=row.timezone,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        paused=bool(row.paused),
        misfire_policy=MisfirePolicy(row.misfire_policy),
        misfire_cap=int(row.misfire_cap),
    )


def _task_from_rows(row: Any, schedules: Iterable[Any], edges: Iterable[Any]) -> Task:
    return Task(
        id=int(row.id),
        name=row.name,
        job_id=int(row.job_id),
        parameters=dict(row.parameters or {}),
        paused=bool(row.paused),
        description=row.description,
        tags=dict(row.tags or {}),
        priority=int(row.priority),
        concurrency_cap=int(row.concurrency_cap),
        on_overlap=OnOverlap(row.on_overlap),
        timeout_s=row.timeout_s,
        retry=retry_from_json(row.retry or {}),
        schedules=tuple(_schedule_from_row(s) for s in sorted(schedules, key=lambda s: s.position)),
        dependencies=tuple(
            Dependency(e.upstream_name, Condition(e.condition))
            for e in sorted(edges, key=lambda e: e.position)
        ),
    )


_EDGES = (
    select(
        task_dependencies.c.task_id,
        task_dependencies.c.position,
        task_dependencies.c.condition,
        tasks.c.name.label("upstream_name"),
    )
).join(tasks, tasks.c.id == task_dependencies.c.upstream_task_id)


async def _load_tasks(conn: AsyncConnection) -> list[Task]:
    rows = (await conn.execute(select(tasks))).all()
    schedules: dict[int, list[Any]] = {}
    for s in (await conn.execute(select(task_schedules))).all():
        schedules.setdefault(int(s.task_id), []).append(s)
    edges: dict[int, list[Any]] = {}
    for e in (await conn.execute(_EDGES)).all():
        edges.setdefault(int(e.task_id), []).append(e)
    return [
        _task_from_rows(row, schedules.get(int(row.id), ()), edges.get(int(row.id), ()))
        for row in rows
    ]


async def _load_task(conn: AsyncConnection, task_id: int, *, lock: bool = False) -> Task:
    row = await _lock_task_row(conn, task_id) if lock else None
    if row is None:
        row = (await conn.execute(select(tasks).where(tasks.c.id == task_id))).first()
    if row is None:
        raise _task_not_found(task_id)
    schedules = (
        await conn.execute(select(task_schedules).where(task_schedules.c.task_id == task_id))
    ).all()
    edges = (await conn.execute(_EDGES.where(task_dependencies.c.task_id == task_id))).all()
    return _task_from_rows(row, schedules, edges)


async def _lock_task_row(conn: AsyncConnection, task_id: int) -> Any:
    # FOR UPDATE on PostgreSQL: two engines deciding one Task's cycle, or counting its active
    # TaskRuns, do it one after the other (SQLite has one writer at a time).
    row = (await conn.execute(select(tasks).where(tasks.c.id == task_id).with_for_update())).first()
    if row is None:
        raise _task_not_found(task_id)
    return row


async def _write_schedules(
    conn: AsyncConnection, task_id: int, schedules: Sequence[Schedule], now: datetime
) -> None:
    stored = {
        int(row.position): row
        for row in (
            await conn.execute(select(task_schedules).where(task_schedules.c.task_id == task_id))
        ).all()
    }
    await conn.execute(delete(task_schedules).where(task_schedules.c.task_id == task_id))
    for position, schedule in enumerate(schedules):
        old = stored.get(position)
        kept = old is not None and _schedule_from_row(old) == schedule
        await conn.execute(
            insert(task_schedules).values(
                task_id=task_id,
                position=position,
                cron=schedule.cron,
                timezone=schedule.timezone,
                starts_at=schedule.starts_at,
                ends_at=schedule.ends_at,
                paused=schedule.paused,
                misfire_policy=schedule.misfire_policy.value,
                misfire_cap=schedule.misfire_cap,
                last_fired_for=old.last_fired_for if kept and old is not None else now,
            )
        )


async def _count_active(conn: AsyncConnection, task_id: int) -> int:
    return int(
        (
            await conn.execute(
                select(func.count()).where(
                    task_runs.c.task_id == task_id, task_runs.c.terminal.is_(False)
                )
            )
        ).scalar_one()
    )


async def _cycle_start(conn: AsyncConnection, task_id: int, saved_at: datetime) -> datetime:
    last_key = (
        await conn.execute(
            select(func.max(task_runs.c.scheduled_for)).where(
                task_runs.c.task_id == task_id,
                task_runs.c.trigger == TriggerType.DEPENDENCY.value,
            )
        )
    ).scalar_one_or_none()
    return saved_at if last_key is None else max(saved_at, last_key)


async def _upstream_ids(conn: AsyncConnection, task_id: int) -> dict[str, int]:
    rows = await conn.execute(
        select(tasks.c.name, tasks.c.id)
        .join(task_dependencies, task_dependencies.c.upstream_task_id == tasks.c.id)
        .where(task_dependencies.c.task_id == task_id)
    )
    return {row.name: int(row.id) for row in rows}


def _run_values(run: TaskRun) -> dict[str, Any]:
    return {
        "status": run.status.value,
        "terminal": run.status.is_terminal,
        "priority": run.priority,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "next_attempt_at": run.next_attempt_at,
        "next_attempt_kind": run.next_attempt_kind.value if run.next_attempt_kind else None,
        "message": run.message,
        "revision": len(run.history),
    }


async def _insert_task_run(conn: AsyncConnection, run: TaskRun) -> TaskRun | None:
    values = {
        **_run_values(run),
        "task_id": run.task_id,
        "trigger": run.trigger.value,
        "scheduled_for": run.scheduled_for,
        "queued_at": run.queued_at,
        "retry_of": run.retry_of,
    }
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = (
        dialect_insert(task_runs)
        .values(values)
        .on_conflict_do_nothing(index_elements=["task_id", "trigger", "scheduled_for"])
        .returning(task_runs.c.id)
    )
    row = (await conn.execute(statement)).first()
    if row is None:
        return None  # this fire or cycle was already recorded (by us or another engine)
    stored = replace(run, id=int(row.id))
    if run.attempts:
        await _write_attempts(conn, stored)
    await _write_events(conn, int(row.id), run.history)
    return stored


def _skipped_for_overlap(run: TaskRun, active: int, cap: int) -> TaskRun:
    message = (
        f"skipped: {active} TaskRun(s) of this Task are active (concurrency cap {cap}, on "
        "overlap: skip)"
    )
    return replace(
        run,
        status=TaskRunStatus.SKIPPED,
        ended_at=run.queued_at,
        message=message,
        history=(TaskRunEvent(run.queued_at, TaskRunStatus.SKIPPED, message),),
    )


async def _insert_task_runs(conn: AsyncConnection, new: Sequence[TaskRun]) -> list[TaskRun]:
    """New TaskRuns (no attempts) in one INSERT ... ON CONFLICT DO NOTHING RETURNING, their
    first events in one more statement; the ones inserted, with their ids."""
    if not new:
        return []
    keyed = {(r.task_id, r.trigger.value, r.scheduled_for): r for r in new}
    values = [
        {
            **_run_values(r),
            "task_id": r.task_id,
            "trigger": r.trigger.value,
            "scheduled_for": r.scheduled_for,
            "queued_at": r.queued_at,
            "retry_of": r.retry_of,
        }
        for r in keyed.values()
    ]
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    inserted: list[TaskRun] = []
    for first in range(0, len(values), 200):  # bound the statement's bound parameters
        statement = (
            dialect_insert(task_runs)
            .values(values[first : first + 200])
            .on_conflict_do_nothing(index_elements=["task_id", "trigger", "scheduled_for"])
            .returning(task_runs.c.id, task_runs.c.task_id, task_runs.c.trigger,
                       task_runs.c.scheduled_for)
        )  # fmt: skip
        for row in (await conn.execute(statement)).all():
            run = keyed[(int(row.task_id), row.trigger, row.scheduled_for)]
            inserted.append(replace(run, id=int(row.id)))
    events = [
        {
            "task_run_id": run.id,
            "at": e.at,
            "status": e.status.value,
            "message": e.message,
            "attempt": e.attempt,
        }
        for run in inserted
        for e in run.history
    ]
    if events:
        await conn.execute(insert(task_run_events), events)
    return sorted(inserted, key=lambda r: (r.task_id, r.scheduled_for))


async def _write_attempts(conn: AsyncConnection, run: TaskRun) -> None:
    await conn.execute(delete(task_run_attempts).where(task_run_attempts.c.task_run_id == run.id))
    for attempt in run.attempts:
        await conn.execute(
            insert(task_run_attempts).values(
                task_run_id=run.id,
                number=attempt.number,
                kind=attempt.kind.value,
                run_id=attempt.run_id,
                started_at=attempt.started_at,
                ended_at=attempt.ended_at,
                status=attempt.status.value if attempt.status is not None else None,
                message=attempt.message,
            )
        )


async def _write_events(
    conn: AsyncConnection, task_run_id: int, events: Sequence[TaskRunEvent]
) -> None:
    if events:
        await conn.execute(
            insert(task_run_events),
            [
                {
                    "task_run_id": task_run_id,
                    "at": e.at,
                    "status": e.status.value,
                    "message": e.message,
                    "attempt": e.attempt,
                }
                for e in events
            ],
        )


async def _save_task_run(conn: AsyncConnection, previous: TaskRun, updated: TaskRun) -> None:
    result = await conn.execute(
        update(task_runs)
        .where(
            and_(
                task_runs.c.id == previous.id,
                task_runs.c.revision == len(previous.history),
                task_runs.c.status == previous.status.value,
            )
        )
        .values(_run_values(updated))
    )
    if result.rowcount != 1:
        exists = (
            await conn.execute(select(task_runs.c.id).where(task_runs.c.id == previous.id))
        ).first()
        if exists is None:
            raise _task_run_not_found(int(previous.id or 0))
        raise ConflictError(
            f"TaskRun {previous.id} changed meanwhile (another engine or a user moved it on). "
            "Look at it again and retry."
        )
    if updated.attempts != previous.attempts:
        await _write_attempts(conn, updated)
    await _write_events(conn, int(previous.id or 0), updated.history[len(previous.history) :])


async def _assemble(conn: AsyncConnection, rows: Sequence[Any]) -> list[TaskRun]:
    ids = [int(row.id) for row in rows]
    if not ids:
        return []
    attempts: dict[int, list[Attempt]] = {}
    for a in (
        await conn.execute(
            select(task_run_attempts)
            .where(task_run_attempts.c.task_run_id.in_(ids))
            .order_by(task_run_attempts.c.task_run_id, task_run_attempts.c.number)
        )
    ).all():
        attempts.setdefault(int(a.task_run_id), []).append(
            Attempt(
                number=int(a.number),
                kind=AttemptKind(a.kind),
                started_at=a.started_at,
                run_id=int(a.run_id) if a.run_id is not None else None,
                ended_at=a.ended_at,
                status=TaskRunStatus(a.status) if a.status else None,
                message=a.message,
            )
        )
    events: dict[int, list[TaskRunEvent]] = {}
    for e in (
        await conn.execute(
            select(task_run_events)
            .where(task_run_events.c.task_run_id.in_(ids))
            .order_by(task_run_events.c.task_run_id, task_run_events.c.id)
        )
    ).all():
        events.setdefault(int(e.task_run_id), []).append(
            TaskRunEvent(e.at, TaskRunStatus(e.status), e.message, e.attempt)
        )
    return [
        TaskRun(
            id=int(row.id),
            task_id=int(row.task_id),
            trigger=TriggerType(row.trigger),
            scheduled_for=row.scheduled_for,
            queued_at=row.queued_at,
            status=TaskRunStatus(row.status),
            priority=int(row.priority),
            started_at=row.started_at,
            ended_at=row.ended_at,
            attempts=tuple(attempts.get(int(row.id), ())),
            history=tuple(events.get(int(row.id), ())),
            message=row.message,
            next_attempt_at=row.next_attempt_at,
            next_attempt_kind=AttemptKind(row.next_attempt_kind) if row.next_attempt_kind else None,
            retry_of=int(row.retry_of) if row.retry_of is not None else None,
        )
        for row in rows
    ]


async def _load_task_run(conn: AsyncConnection, task_run_id: int) -> TaskRun:
    row = (await conn.execute(select(task_runs).where(task_runs.c.id == task_run_id))).first()
    if row is None:
        raise _task_run_not_found(task_run_id)
    return (await _assemble(conn, [row]))[0]


def _task_not_found(ref: int | str) -> NotFoundError:
    return not_found("Task", ref, LIST_TASKS)


def _task_run_not_found(task_run_id: int) -> NotFoundError:
    return NotFoundError(f"No TaskRun with id {task_run_id}.", hint=LIST_TASK_RUNS)


__all__ = [
    "LIST_TASKS",
    "LIST_TASK_RUNS",
    "TaskStoreMixin",
    "retry_from_json",
    "retry_to_json",
    "task_settings",
]
