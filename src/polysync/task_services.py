"""Tasks and TaskRuns as use cases (issue 12): the one validation path every adapter (API routes,
web pages, CLI) goes through, reached as `Services.tasks` (polysync.services).

Stable interface (the REST API and web UI build on it; docs/tasks.md, docs/cli.md):

- `create(data, *, actor)` / `edit(ref, changes, *, actor)`: a Task from its JSON shape
  (`parse_task`; the fields of `polysync.shapes.polysync_task_fields` that are not computed) ->
  Task. Saved with `check_task` + `check_acyclic` in one transaction.
- `delete(ref, *, actor)`, `pause(ref)`, `resume(ref)` -> Task.
- `run_once(ref, *, actor)` -> TaskRun (trigger Manual, Queued; always queues).
- `preview(ref, n=10, after=None)` / `preview_data(data, n, after)` -> [`FireTime`].
- `get(ref)` -> Task; `list_tasks()` -> [`TaskSummary`]; `details(ref)` -> `TaskDetails`.
- `list_runs(task=None, statuses=(), limit=100)` -> [TaskRun]; `get_run(id)` -> TaskRun;
  `cancel_run(id, *, actor)`, `repair_run(id, *, actor)` -> TaskRun.

Errors: TaskDefinitionError (a UsageError naming `field`) -> HTTP 422 / CLI exit 2;
TaskRunTransitionError and ConflictError -> 409 / exit 2; NotFoundError -> 404 / exit 2.
`ref` is a Task's id (int, or digits) or name.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from polysync.clock import Clock
from polysync.domain.access import Actor
from polysync.domain.limits import record_id
from polysync.domain.models import DataType
from polysync.domain.records import Job, utc
from polysync.domain.text import shown
from polysync.engine.ports import Store, TaskRunFilter
from polysync.errors import ConflictError, TaskDefinitionError, TaskRunTransitionError, UsageError
from polysync.lookup import find_job
from polysync.store.task_store import retry_from_json, task_settings
from polysync.tasks.dependencies import Condition, Dependency, check_acyclic
from polysync.tasks.lifecycle import active_attempt, repair
from polysync.tasks.model import (
    AttemptKind,
    OnOverlap,
    Task,
    TaskRun,
    advance,
    check_task,
    new_task_run,
)
from polysync.tasks.retry import Backoff, RetryStrategy, member_named
from polysync.tasks.schedule import (
    MAX_PREVIEW,
    MisfirePolicy,
    Schedule,
    next_fire_time,
    next_fire_times,
)
from polysync.tasks.states import TaskRunStatus, TriggerType

_TASK_FIELDS = frozenset(
    {
        "name",
        "job",
        "job_id",
        "parameters",
        "paused",
        "description",
        "tags",
        "priority",
        "concurrency_cap",
        "on_overlap",
        "timeout_s",
        "retry",
        "schedules",
        "dependencies",
    }
)
_SCHEDULE_FIELDS = frozenset(
    {"cron", "timezone", "starts_at", "ends_at", "paused", "misfire_policy", "misfire_cap"}
)


@dataclass(frozen=True, slots=True)
class FireTime:
    """One upcoming fire of a Task: when (UTC) and which schedule (0-based position)."""

    at: datetime
    schedule: int


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """A Task for the Tasks list: its next fire time (None: no active schedule, or paused)
    and its latest TaskRun (None: never ran)."""

    task: Task
    job: Job | None
    next_fire: datetime | None
    last_run: TaskRun | None


@dataclass(frozen=True, slots=True)
class TaskDetails:
    """A Task's page: the summary, the next fire times and its latest TaskRuns."""

    summary: TaskSummary
    preview: tuple[FireTime, ...]
    runs: tuple[TaskRun, ...]


class TaskServices:
    """The Task use cases over one store and clock (see the module docstring). `wake` is
    called after a change the engine should notice at once (a Task saved, a TaskRun queued)."""

    def __init__(self, store: Store, clock: Clock, wake: Callable[[], None] = lambda: None):
        self.store = store
        self.clock = clock
        self.wake = wake

    def now(self) -> datetime:
        return utc(self.clock.now())

    # ------------------------------------------------------------------ tasks
    async def create(self, data: Mapping[str, Any], *, actor: Actor | None = None) -> Task:
        """A new Task from its JSON shape; `job` (id, External Id or name) or `job_id` is
        required. TaskDefinitionError naming the field; nothing is saved then."""
        job = await self._job_of(data)
        task = parse_task(data, job_id=job.id)
        saved = await self.store.save_task(
            task, self.now(), check=await self._checker(job), actor=_who(actor)
        )
        self.wake()
        return saved

    async def edit(
        self, ref: int | str, changes: Mapping[str, Any], *, actor: Actor | None = None
    ) -> Task:
        """The Task with `changes` (fields of its JSON shape) applied; the Job cannot change.
        Schedules and dependencies, when given, replace the whole list."""
        previous = await self.get(ref)
        _check_keys(changes, _TASK_FIELDS, "the Task")
        if "job" in changes or "job_id" in changes:
            wanted = await self._job_of(changes)
            if wanted.id != previous.job_id:
                raise TaskDefinitionError(
                    f"Task {previous.name!r} runs Job {previous.job_id}; a Task's Job cannot "
                    "change after it is saved. Create a new Task for the other Job.",
                    field="job_id",
                )
        merged = {**task_data(previous), **changes}
        merged.pop("job", None)
        task = replace(parse_task(merged, job_id=previous.job_id), id=previous.id)
        job = await self.store.get_job(previous.job_id)
        saved = await self.store.save_task(
            task,
            self.now(),
            check=await self._checker(job, previous=previous),
            actor=_who(actor),
        )
        self.wake()
        return saved

    async def delete(self, ref: int | str, *, actor: Actor | None = None) -> Task:
        """Remove a Task and its TaskRuns. ConflictError while Tasks depend on it or it has
        Queued or Running TaskRuns."""
        task = await self.get(ref)
        deleted = await self.store.delete_task(_id(task), self.now())
        self.wake()
        return deleted

    async def pause(self, ref: int | str, *, actor: Actor | None = None) -> Task:
        """Schedules and dependencies stop triggering it (Run once still works)."""
        task = await self.get(ref)
        paused = await self.store.set_task_paused(_id(task), True, self.now())
        self.wake()
        return paused

    async def resume(self, ref: int | str, *, actor: Actor | None = None) -> Task:
        """Triggers again from now: times passed while paused are dropped (D12)."""
        task = await self.get(ref)
        resumed = await self.store.set_task_paused(_id(task), False, self.now())
        self.wake()
        return resumed

    async def run_once(self, ref: int | str, *, actor: Actor | None = None) -> TaskRun:
        """Queue a Manual TaskRun now (paused or not, whatever its concurrency cap)."""
        task = await self.get(ref)
        now = self.now()
        run = new_task_run(
            task, TriggerType.MANUAL, now, now, message=f"run once by {_who(actor) or 'a user'}"
        )
        inserted, _ = await self.store.add_task_runs(_id(task), [run], now, overlap=False)
        if not inserted:  # the store gives each press its own instant: not expected
            raise ConflictError(
                f"Task {task.name!r} could not be run once at {now.isoformat()}: another "
                "TaskRun took that instant. Press Run once again."
            )
        self.wake()
        return inserted[0]

    async def preview(
        self, ref: int | str, n: int = 10, after: datetime | None = None
    ) -> list[FireTime]:
        """The next `n` (1..1000) fire times of the Task's schedules after `after` (default
        now), merged in time order; a paused schedule or Task previews as if resumed."""
        return preview_schedules((await self.get(ref)).schedules, n, after or self.now())

    async def preview_data(
        self, data: Mapping[str, Any], n: int = 10, after: datetime | None = None
    ) -> list[FireTime]:
        """`preview` of schedules not saved yet (`data["schedules"]`, as in the JSON shape):
        the editor's preview. TaskDefinitionError for an invalid schedule."""
        schedules = _schedules(data.get("schedules", []))
        return preview_schedules(schedules, n, after or self.now())

    async def get(self, ref: int | str) -> Task:
        """By id (an int, or digits) or name; NotFoundError if absent."""
        if isinstance(ref, str) and (task_id := record_id(ref)) is not None:
            try:
                return await self.store.get_task(ref)
            except UsageError:
                return await self.store.get_task(task_id)
        return await self.store.get_task(ref)

    async def list_tasks(self) -> list[TaskSummary]:
        """Every Task by name, with its next fire time and latest TaskRun."""
        tasks = await self.store.list_tasks()
        jobs = {job.id: job for job in await self.store.list_jobs()}
        now = self.now()
        latest = await self.store.latest_task_runs()
        return [
            TaskSummary(task, jobs.get(task.job_id), next_fire(task, now), latest.get(_id(task)))
            for task in tasks
        ]

    async def details(self, ref: int | str, *, runs: int = 20) -> TaskDetails:
        """One Task with its next 10 fire times and its latest `runs` TaskRuns."""
        task = await self.get(ref)
        now = self.now()
        recent = tuple(
            await self.store.list_task_runs(TaskRunFilter(task_id=_id(task), limit=runs))
        )
        job = await self.store.get_job(task.job_id)
        summary = TaskSummary(task, job, next_fire(task, now), recent[0] if recent else None)
        return TaskDetails(summary, tuple(preview_schedules(task.schedules, 10, now)), recent)

    # ------------------------------------------------------------------ task runs
    async def list_runs(
        self,
        task: int | str | None = None,
        statuses: Sequence[TaskRunStatus | str] = (),
        limit: int = 100,
        since: datetime | None = None,
    ) -> list[TaskRun]:
        """TaskRuns newest first, of one Task when given, in `statuses` when given."""
        task_id = _id(await self.get(task)) if task is not None else None
        wanted = tuple(_status(s) for s in statuses)
        return list(
            await self.store.list_task_runs(
                TaskRunFilter(task_id=task_id, statuses=wanted, since=since, limit=limit)
            )
        )

    async def get_run(self, task_run_id: int) -> TaskRun:
        return await self.store.get_task_run(task_run_id)

    async def cancel_run(self, task_run_id: int, *, actor: Actor | None = None) -> TaskRun:
        """Cancel a Queued or Running TaskRun; its running attempt's run gets a cancel request
        (the engine sends runs/cancel, D10). TaskRunTransitionError once it has ended."""
        task_run = await self.store.get_task_run(task_run_id)
        now = self.now()
        who = _who(actor) or "a user"
        cancelled = advance(task_run, TaskRunStatus.CANCELLED, now, f"cancelled by {who}")
        attempt = active_attempt(task_run)
        saved = await self.store.save_task_run(task_run, cancelled)
        if attempt is not None and attempt.run_id is not None:
            run = await self.store.get_run(attempt.run_id)
            if not run.is_terminal:
                await self.store.request_cancel(run.id, now, cancelled_by=_who(actor))
        self.wake()
        return saved

    async def repair_run(self, task_run_id: int, *, actor: Actor | None = None) -> TaskRun:
        """Repair a Failed or Cancelled TaskRun by hand: it reopens as Running with a repair
        attempt (D6 as amended, D12), which the engine sends as a repair of the last run (or,
        for a job type without repair, a new run). TaskRunTransitionError for another status."""
        task_run = await self.store.get_task_run(task_run_id)
        repaired = repair(task_run, self.now())
        # The engine makes the repair happen and attaches the run it follows.
        attempt = repaired.attempts[-1]
        repaired = replace(
            repaired, attempts=(*repaired.attempts[:-1], replace(attempt, run_id=None))
        )
        saved = await self.store.save_task_run(task_run, repaired)
        self.wake()
        return saved

    # ------------------------------------------------------------------ helpers
    async def _job_of(self, data: Mapping[str, Any]) -> Job:
        ref = data.get("job", data.get("job_id"))
        if ref is None or isinstance(ref, bool) or not isinstance(ref, int | str):
            raise TaskDefinitionError(
                "A Task needs its Job: give `job` (a Job's id, External Id or name).", field="job"
            )
        try:
            return await find_job(self.store, ref)
        except UsageError as exc:
            raise TaskDefinitionError(exc.message, field="job") from None

    async def _checker(
        self, job: Job, previous: Task | None = None
    ) -> Callable[[Task, Sequence[Task]], Task]:
        jobs = {j.id: j for j in await self.store.list_jobs()}

        def check(task: Task, others: Sequence[Task]) -> Task:
            upstream_jobs = {o.name: jobs.get(o.job_id) for o in others}
            checked = check_task(
                task,
                job_type=job.job_type,
                job_parameters=job.parameters,
                task_names=[o.name for o in others],
                upstream_parameters={
                    name: [p.name for p in j.parameters]
                    for name, j in upstream_jobs.items()
                    if j is not None
                },
                secret_parameters={
                    name: [p.name for p in j.parameters if p.data_type is DataType.SECRET]
                    for name, j in upstream_jobs.items()
                    if j is not None
                },
                previous=previous,
            )
            graph = {o.name: o.upstreams for o in others}
            graph[checked.name] = checked.upstreams
            if previous is not None and previous.name != checked.name:
                # A rename: other Tasks' edges name the new name in the same transaction.
                graph = {
                    name: tuple(checked.name if u == previous.name else u for u in ups)
                    for name, ups in graph.items()
                }
            try:
                check_acyclic(graph)
            except TaskDefinitionError as exc:
                exc.field = exc.field or "dependencies"
                raise
            return checked

        return check


def next_fire(task: Task, now: datetime) -> datetime | None:
    """The Tasks list's next run: the earliest next fire of its active schedules, None when
    the Task is paused or has none."""
    if task.paused:
        return None
    fires = [f for s in task.schedules if (f := next_fire_time(s, now)) is not None]
    return min(fires, default=None)


def preview_schedules(schedules: Sequence[Schedule], n: int, after: datetime) -> list[FireTime]:
    """The next `n` fire times of `schedules` after `after`, merged (ties: lower position)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PREVIEW:
        raise TaskDefinitionError(
            f"A preview lists 1 to {MAX_PREVIEW} fire times, not {shown(n)}.", field="n"
        )
    streams = [
        [FireTime(at, position) for at in next_fire_times(replace(s, paused=False), after, n)]
        for position, s in enumerate(schedules)
    ]
    merged = heapq.merge(*streams, key=lambda f: (f.at, f.schedule))
    return [fire for _, fire in zip(range(n), merged, strict=False)]


# --- the JSON shape in ------------------------------------------------------------------------


def task_data(task: Task) -> dict[str, Any]:
    """A Task's editable fields as its JSON shape (what `parse_task` reads back)."""
    return {
        **task_settings(task),
        "schedules": [schedule_data(s) for s in task.schedules],
        "dependencies": [
            {"upstream": d.upstream, "condition": d.condition.value} for d in task.dependencies
        ],
    }


def schedule_data(schedule: Schedule) -> dict[str, Any]:
    """A schedule as its JSON shape."""
    return {
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "starts_at": schedule.starts_at,
        "ends_at": schedule.ends_at,
        "paused": schedule.paused,
        "misfire_policy": schedule.misfire_policy.value,
        "misfire_cap": schedule.misfire_cap,
    }


def parse_task(data: Mapping[str, Any], *, job_id: int) -> Task:
    """A Task from its JSON shape (hostile input: every value checked, TaskDefinitionError
    naming the field). Absent fields take the defaults of `Task`."""
    if not isinstance(data, Mapping):
        raise TaskDefinitionError(f"A Task is an object, not {type(data).__name__}.")
    _check_keys(data, _TASK_FIELDS, "the Task")
    name = data.get("name")
    if not isinstance(name, str):
        raise TaskDefinitionError(f"The Task's name must be text, not {shown(name)}.", field="name")
    values: dict[str, Any] = {"name": name, "job_id": job_id}
    for key in ("parameters", "tags"):
        if key in data:
            values[key] = _string_map(data[key], key)
    if "paused" in data:
        values["paused"] = _bool(data["paused"], "paused")
    if "description" in data:
        values["description"] = _text(data["description"], "description")
    for key in ("priority", "concurrency_cap"):
        if key in data:
            values[key] = _int(data[key], key)
    if "timeout_s" in data:
        raw = data["timeout_s"]
        values["timeout_s"] = None if raw is None else _int(raw, "timeout_s")
    if "on_overlap" in data:
        values["on_overlap"] = _member(OnOverlap, data["on_overlap"], "on_overlap")
    if "retry" in data:
        retry = data["retry"]
        if not isinstance(retry, Mapping):
            raise TaskDefinitionError(
                f"The retry policy is an object, not {shown(retry)}.", field="retry"
            )
        _check_keys(
            retry,
            {"enabled", "max_attempts", "backoff", "initial_delay_s", "max_delay_s", "strategy"},
            "the retry policy",
            prefix="retry.",
        )
        try:
            values["retry"] = retry_from_json(_checked_retry_fields(retry))
        except (TypeError, ValueError) as exc:
            raise TaskDefinitionError(
                f"The retry policy is not valid: {shown(str(exc))}.", field="retry"
            ) from None
    if "schedules" in data:
        values["schedules"] = _schedules(data["schedules"])
    if "dependencies" in data:
        values["dependencies"] = _dependencies(data["dependencies"])
    return Task(**values)


def _schedules(raw: object) -> tuple[Schedule, ...]:
    if not isinstance(raw, list | tuple):
        raise TaskDefinitionError(f"The schedules are a list, not {shown(raw)}.", field="schedules")
    schedules: list[Schedule] = []
    for index, given in enumerate(raw):
        where = f"schedules[{index}]"
        item: Any = {"cron": given} if isinstance(given, str) else given
        if not isinstance(item, Mapping):
            raise TaskDefinitionError(
                f"A schedule is an object or a cron expression, not {shown(item)}.", field=where
            )
        _check_keys(item, _SCHEDULE_FIELDS, "a schedule", prefix=f"{where}.")
        try:
            schedules.append(
                Schedule(
                    cron=item.get("cron", ""),
                    timezone=item.get("timezone", "UTC"),
                    starts_at=_instant(item.get("starts_at"), f"{where}.starts_at"),
                    ends_at=_instant(item.get("ends_at"), f"{where}.ends_at"),
                    paused=item.get("paused", False),
                    misfire_policy=item.get("misfire_policy", MisfirePolicy.RUN_LATEST),
                    misfire_cap=item.get("misfire_cap", 10),
                )
            )
        except TaskDefinitionError as exc:
            exc.field = f"{where}.{exc.field}" if exc.field else where
            raise
    return tuple(schedules)


def _dependencies(raw: object) -> tuple[Dependency, ...]:
    if not isinstance(raw, list | tuple):
        raise TaskDefinitionError(
            f"The dependencies are a list, not {shown(raw)}.", field="dependencies"
        )
    edges: list[Dependency] = []
    for index, given in enumerate(raw):
        where = f"dependencies[{index}]"
        item: Any = {"upstream": given} if isinstance(given, str) else given
        if not isinstance(item, Mapping):
            raise TaskDefinitionError(
                f"A dependency is an object or an upstream Task's name, not {shown(item)}.",
                field=where,
            )
        _check_keys(item, {"upstream", "condition"}, "a dependency", prefix=f"{where}.")
        upstream = item.get("upstream")
        if not isinstance(upstream, str):
            raise TaskDefinitionError(
                f"A dependency's upstream is a Task's name, not {shown(upstream)}.",
                field=f"{where}.upstream",
            )
        condition = _member(
            Condition, item.get("condition", Condition.ON_SUCCESS.value), f"{where}.condition"
        )
        edges.append(Dependency(upstream, condition))
    return tuple(edges)


def _check_keys(
    data: Mapping[str, Any], allowed: frozenset[str] | set[str], what: str, prefix: str = ""
) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise TaskDefinitionError(
            f"{what[0].upper()}{what[1:]} has no field {shown(unknown[0])}; its fields are "
            f"{', '.join(sorted(allowed))}.",
            field=f"{prefix}{unknown[0]}"[:200],
        )


def _string_map(raw: object, field: str) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise TaskDefinitionError(
            f"The Task's {field} are an object of names to text values, not {shown(raw)}.",
            field=field,
        )
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TaskDefinitionError(
                f"The Task's {field} map names to text values; {shown(key)}: {shown(value)} "
                "is not. Quote the value.",
                field=f"{field}.{key}"[:200],
            )
        out[key] = value
    return out


def _bool(raw: object, field: str) -> bool:
    if not isinstance(raw, bool):
        raise TaskDefinitionError(f"{field} must be true or false, not {shown(raw)}.", field=field)
    return raw


def _checked_retry_fields(retry: Mapping[str, Any]) -> dict[str, Any]:
    """`retry` with its choices spelt as the enums spell them (given in any case); each field's
    type and choices checked and named: a text "false" would enable retries and a misspelt
    backoff would only say which enum refused it. TaskDefinitionError naming the field."""
    if "enabled" in retry and not isinstance(retry["enabled"], bool):
        raise TaskDefinitionError(
            f"retry.enabled must be true or false, not {shown(retry['enabled'])}.",
            field="retry.enabled",
        )
    if "max_attempts" in retry:
        _int(retry["max_attempts"], "retry.max_attempts")
    for key in ("initial_delay_s", "max_delay_s"):
        raw = retry.get(key, 0)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise TaskDefinitionError(
                f"retry.{key} must be a number of seconds, not {shown(raw)}.", field=f"retry.{key}"
            )
    checked = dict(retry)
    if "backoff" in retry:
        checked["backoff"] = _member(Backoff, retry["backoff"], "retry.backoff").value
    if retry.get("strategy"):  # absent, null or "": the Job Type's strategy
        checked["strategy"] = _member(RetryStrategy, retry["strategy"], "retry.strategy").value
    return checked


def _int(raw: object, field: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise TaskDefinitionError(f"{field} must be a whole number, not {shown(raw)}.", field=field)
    return raw


def _text(raw: object, field: str) -> str:
    if not isinstance(raw, str):
        raise TaskDefinitionError(f"{field} must be text, not {shown(raw)}.", field=field)
    return raw


def _member(kind: Any, raw: object, field: str) -> Any:
    """The member of the StrEnum `kind` named by `raw`, in any case; TaskDefinitionError naming
    `field` and the choices otherwise."""
    member = member_named(kind, raw)
    if member is not None:
        return member
    choices = ", ".join(m.value for m in kind)
    raise TaskDefinitionError(f"{field} {shown(raw)} is not one of {choices}.", field=field)


def _instant(raw: object, field: str) -> datetime | None:
    if raw is None or isinstance(raw, datetime):
        return raw
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
    raise TaskDefinitionError(
        f"{field} {shown(raw)} is not a date and time; give ISO 8601 with an offset, e.g. "
        "2026-05-01T02:00:00Z.",
        field=field,
    )


def _status(raw: TaskRunStatus | str) -> TaskRunStatus:
    if isinstance(raw, TaskRunStatus):
        return raw
    for status in TaskRunStatus:
        if str(raw).strip().lower() == status.value.lower():
            return status
    choices = ", ".join(s.value for s in TaskRunStatus)
    raise UsageError(f"TaskRun status {shown(raw)} is not one of {choices}.")


def _id(task: Task) -> int:
    if task.id is None:
        raise ValueError("a saved Task has an id")
    return task.id


def _who(actor: Actor | None) -> str | None:
    return None if actor is None else str(actor)


__all__ = [
    "AttemptKind",
    "FireTime",
    "TaskDetails",
    "TaskRunTransitionError",
    "TaskServices",
    "TaskSummary",
    "next_fire",
    "parse_task",
    "preview_schedules",
    "schedule_data",
    "task_data",
]
