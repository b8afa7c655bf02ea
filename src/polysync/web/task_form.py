"""The Task editor's form: its fields read into a Task record, and a Task written back as fields.

The editor has five tabs (General, Settings, Dependencies, Scheduling, Runtime Settings) in one
form. Rows repeat their fields (`dependency_upstream`, `schedule_cron`, ...; a row's fields share
an index), so a row can be added or removed in the browser. Reading only parses text into
values: the rules are `check_task`'s, run by the services when the Task is saved, and every
error names its field (`TaskDefinitionError.field`) so the page marks it and opens its tab.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from polysync.domain.models import Parameter
from polysync.domain.text import shown
from polysync.errors import ScheduleError, TaskDefinitionError
from polysync.tasks.dependencies import Condition, Dependency
from polysync.tasks.model import DEFAULT_PRIORITY, OnOverlap, Task
from polysync.tasks.retry import Backoff, RetryPolicy, RetryStrategy
from polysync.tasks.schedule import (
    DEFAULT_MISFIRE_CAP,
    DEFAULT_TIMEZONE,
    MisfirePolicy,
    Schedule,
    check_timezone,
)

TABS = ("general", "settings", "dependencies", "scheduling", "runtime")
"""The editor's tabs, in order; `tab_of` says which one shows a field."""
_TAB_OF_FIELD = {
    "name": "general",
    "job_id": "general",
    "job": "general",
    "description": "general",
    "tags": "general",
    "paused": "general",
    "parameters": "settings",
    "dependencies": "dependencies",
    "schedules": "scheduling",
}
MAX_ROWS = 1_000
"""Rows of one kind a form may send: far above the Task's limits, which `check_task` words."""
_LOCAL_FORMAT = "%Y-%m-%dT%H:%M"
E = TypeVar("E", bound=StrEnum)


class FormData(Protocol):
    """What Starlette's FormData offers: every value sent under a name."""

    def getlist(self, key: Any) -> Sequence[object]: ...


def tab_of(field_name: str | None) -> str:
    """The tab that shows `field_name` (`schedules[1].cron` -> scheduling; retry, priority,
    timeouts -> runtime)."""
    if not field_name:
        return "general"
    head = field_name.split(".", 1)[0].split("[", 1)[0]
    return _TAB_OF_FIELD.get(head, "runtime")


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """One schedule as the form shows it: start and end in the schedule's own time zone."""

    cron: str = ""
    timezone: str = DEFAULT_TIMEZONE
    starts_at: str = ""
    ends_at: str = ""
    paused: bool = False
    misfire_policy: str = MisfirePolicy.RUN_LATEST.value
    misfire_cap: str = str(DEFAULT_MISFIRE_CAP)


@dataclass(frozen=True, slots=True)
class TaskFormValues:
    """Every field of the editor as text, to render it (a saved Task, or what was sent back
    with an error, unchanged so nothing typed is lost)."""

    name: str = ""
    job_id: str = ""
    description: str = ""
    tags: str = ""
    paused: bool = False
    parameters: Mapping[str, str] = field(default_factory=dict)
    dependencies: tuple[tuple[str, str], ...] = ()
    schedules: tuple[ScheduleRow, ...] = ()
    priority: str = str(DEFAULT_PRIORITY)
    concurrency_cap: str = "1"
    on_overlap: str = OnOverlap.QUEUE.value
    timeout_s: str = ""
    retry_enabled: bool = False
    retry_max_attempts: str = "3"
    retry_backoff: str = Backoff.EXPONENTIAL.value
    retry_initial_delay_s: str = "60"
    retry_max_delay_s: str = "3600"
    retry_strategy: str = ""


def values_of(task: Task) -> TaskFormValues:
    """A saved Task as the editor shows it."""
    retry = task.retry
    return TaskFormValues(
        name=task.name,
        job_id=str(task.job_id),
        description=task.description,
        tags="\n".join(f"{k}={v}" if v else k for k, v in task.tags.items()),
        paused=task.paused,
        parameters=dict(task.parameters),
        dependencies=tuple((d.upstream, d.condition.value) for d in task.dependencies),
        schedules=tuple(_row_of(s) for s in task.schedules),
        priority=str(task.priority),
        concurrency_cap=str(task.concurrency_cap),
        on_overlap=task.on_overlap.value,
        timeout_s="" if task.timeout_s is None else str(task.timeout_s),
        retry_enabled=retry.enabled,
        retry_max_attempts=str(retry.max_attempts),
        retry_backoff=retry.backoff.value,
        retry_initial_delay_s=f"{retry.initial_delay_s:g}",
        retry_max_delay_s=f"{retry.max_delay_s:g}",
        retry_strategy=retry.strategy.value if retry.strategy else "",
    )


def _row_of(schedule: Schedule) -> ScheduleRow:
    zone = schedule.zone

    def local(moment: datetime | None) -> str:
        return "" if moment is None else moment.astimezone(zone).strftime(_LOCAL_FORMAT)

    return ScheduleRow(
        cron=schedule.cron,
        timezone=schedule.timezone,
        starts_at=local(schedule.starts_at),
        ends_at=local(schedule.ends_at),
        paused=schedule.paused,
        misfire_policy=schedule.misfire_policy.value,
        misfire_cap=str(schedule.misfire_cap),
    )


def read_values(form: FormData, parameter_names: Sequence[str]) -> TaskFormValues:
    """The form as sent, as text (nothing parsed yet). `parameter_names`: the Job's parameters
    the Settings tab showed; a blank value leaves the parameter unset (the Job's stored value
    or default goes, as with Execute Now)."""
    names = _texts(form, "parameter_name")
    values = _texts(form, "parameter_value")
    shown_names = set(parameter_names)
    parameters = {
        name: value.replace("\r\n", "\n")
        for name, value in zip(names, values, strict=False)
        if name in shown_names and value != ""
    }
    upstreams = _texts(form, "dependency_upstream")
    conditions = _texts(form, "dependency_condition")
    dependencies = tuple(
        (upstream.strip(), condition)
        for upstream, condition in zip(upstreams, conditions, strict=False)
        if upstream.strip()
    )
    crons = _texts(form, "schedule_cron")
    rows = []
    for i, cron in enumerate(crons):
        if not cron.strip():
            continue
        rows.append(
            ScheduleRow(
                cron=cron,
                timezone=_nth(form, "schedule_timezone", i) or DEFAULT_TIMEZONE,
                starts_at=_nth(form, "schedule_starts_at", i),
                ends_at=_nth(form, "schedule_ends_at", i),
                paused=_nth(form, "schedule_paused", i) == "yes",
                misfire_policy=_nth(form, "schedule_misfire_policy", i)
                or MisfirePolicy.RUN_LATEST.value,
                misfire_cap=_nth(form, "schedule_misfire_cap", i) or str(DEFAULT_MISFIRE_CAP),
            )
        )
    return TaskFormValues(
        name=_one(form, "name"),
        job_id=_one(form, "job_id"),
        description=_one(form, "description").replace("\r\n", "\n"),
        tags=_one(form, "tags").replace("\r\n", "\n"),
        paused=_one(form, "paused") == "on",
        parameters=parameters,
        dependencies=dependencies,
        schedules=tuple(rows),
        priority=_one(form, "priority"),
        concurrency_cap=_one(form, "concurrency_cap"),
        on_overlap=_one(form, "on_overlap"),
        timeout_s=_one(form, "timeout_s"),
        retry_enabled=_one(form, "retry_enabled") == "on",
        retry_max_attempts=_one(form, "retry_max_attempts"),
        retry_backoff=_one(form, "retry_backoff"),
        retry_initial_delay_s=_one(form, "retry_initial_delay_s"),
        retry_max_delay_s=_one(form, "retry_max_delay_s"),
        retry_strategy=_one(form, "retry_strategy"),
    )


def task_of(values: TaskFormValues, *, previous: Task | None = None) -> Task:
    """The Task the form asks for; TaskDefinitionError naming the field when a value cannot be
    read (a number that is not one, an unknown choice, a start in a time zone that does not
    exist). `previous`: the saved Task when editing (its id and Job are kept)."""
    job_id = previous.job_id if previous is not None else _whole(values.job_id, "job_id", "Job")
    return Task(
        id=previous.id if previous is not None else None,
        name=values.name,
        job_id=job_id,
        parameters=dict(values.parameters),
        paused=values.paused,
        description=values.description,
        tags=_tags(values.tags),
        priority=_whole(values.priority, "priority", "priority"),
        concurrency_cap=_whole(values.concurrency_cap, "concurrency_cap", "concurrency cap"),
        on_overlap=_choice(OnOverlap, values.on_overlap, "on_overlap", "on-overlap setting"),
        timeout_s=None
        if not values.timeout_s.strip()
        else _whole(values.timeout_s, "timeout_s", "timeout"),
        retry=RetryPolicy(
            enabled=values.retry_enabled,
            max_attempts=_whole(values.retry_max_attempts, "retry.max_attempts", "max attempts"),
            backoff=_choice(Backoff, values.retry_backoff, "retry.backoff", "backoff"),
            initial_delay_s=_seconds(values.retry_initial_delay_s, "retry.initial_delay_s"),
            max_delay_s=_seconds(values.retry_max_delay_s, "retry.max_delay_s"),
            strategy=None
            if not values.retry_strategy
            else _choice(RetryStrategy, values.retry_strategy, "retry.strategy", "strategy"),
        ),
        schedules=schedules_of(values.schedules),
        dependencies=tuple(
            Dependency(
                upstream,
                _choice(Condition, condition, f"dependencies[{i}].condition", "condition"),
            )
            for i, (upstream, condition) in enumerate(values.dependencies)
        ),
    )


def schedules_of(rows: Sequence[ScheduleRow]) -> tuple[Schedule, ...]:
    """The schedules of the Scheduling tab (also for its preview); ScheduleError naming
    `schedules[i].<field>`."""
    schedules = []
    for i, row in enumerate(rows):
        where = f"schedules[{i}]"
        try:
            zone = ZoneInfo(check_timezone(row.timezone))
            schedules.append(
                Schedule(
                    cron=row.cron,
                    timezone=row.timezone,
                    starts_at=_local(row.starts_at, zone, f"{where}.starts_at"),
                    ends_at=_local(row.ends_at, zone, f"{where}.ends_at"),
                    paused=row.paused,
                    misfire_policy=_choice(
                        MisfirePolicy, row.misfire_policy, f"{where}.misfire_policy", "policy"
                    ),
                    misfire_cap=_whole(row.misfire_cap, f"{where}.misfire_cap", "misfire cap"),
                )
            )
        except ScheduleError as exc:
            name = exc.field or ""
            located = name if name.startswith(where) else f"{where}.{name}" if name else where
            raise ScheduleError(exc.message, field=located) from None
    return tuple(schedules)


def job_parameter_names(parameters: Sequence[Parameter]) -> list[str]:
    """The parameters a Task may set (those a run sends, D3), in the Job's order."""
    return [p.name for p in parameters if p.is_sent]


# --- Parsing ------------------------------------------------------------------------------------


def _texts(form: FormData, key: str) -> list[str]:
    return [v for v in form.getlist(key) if isinstance(v, str)][:MAX_ROWS]


def _one(form: FormData, key: str) -> str:
    values = _texts(form, key)
    return values[0] if values else ""


def _nth(form: FormData, key: str, index: int) -> str:
    values = _texts(form, key)
    return values[index] if index < len(values) else ""


def _whole(text: str, name: str, words: str) -> int:
    cleaned = text.strip()
    try:
        return int(cleaned)
    except ValueError:
        raise TaskDefinitionError(
            f"The {words} {shown(text)} is not a whole number. Type digits only, e.g. 5.",
            field=name,
        ) from None


def _seconds(text: str, name: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise TaskDefinitionError(
            f"The delay {shown(text)} is not a number of seconds. Type e.g. 60 or 0.5.",
            field=name,
        )
    return value


def _choice(kind: type[E], text: str, name: str, words: str) -> E:
    try:
        return kind(text)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise TaskDefinitionError(
            f"The {words} {shown(text)} is not one of {choices}.", field=name
        ) from None


def _tags(text: str) -> dict[str, str]:
    """One tag a line: `key=value`, or a `key` alone (an empty value, as Databricks shows it)."""
    tags: dict[str, str] = {}
    for line in text.split("\n"):
        if not line.strip():
            continue
        key, _, value = line.partition("=")
        tags[key.strip()] = value.strip()
    return tags


def _local(text: str, zone: ZoneInfo, name: str) -> datetime | None:
    """A `datetime-local` value read in the schedule's time zone, as an instant in UTC."""
    if not text.strip():
        return None
    try:
        naive = datetime.strptime(text.strip(), _LOCAL_FORMAT)
    except ValueError:
        try:
            naive = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ScheduleError(
                f"The time {shown(text)} is not a date and time. Use YYYY-MM-DDTHH:MM, "
                "e.g. 2026-05-01T02:00 (in the schedule's time zone).",
                field=name,
            ) from None
    if naive.tzinfo is not None:
        return naive.astimezone(UTC)
    return naive.replace(tzinfo=zone).astimezone(UTC)
