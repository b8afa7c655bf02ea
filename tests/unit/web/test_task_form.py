"""The Task editor's form: text fields read into a Task (errors naming their field), a Task
written back as fields, and hostile text never raising anything but TaskDefinitionError."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polysync.errors import TaskDefinitionError
from polysync.tasks.dependencies import Condition, Dependency
from polysync.tasks.model import OnOverlap, Task
from polysync.tasks.retry import Backoff, RetryPolicy, RetryStrategy
from polysync.tasks.schedule import MisfirePolicy, Schedule
from polysync.web.task_form import read_values, tab_of, task_of, values_of


class Form:
    """What Starlette's FormData offers the reader: every value sent under a name."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def getlist(self, key: Any) -> Sequence[object]:
        value = self.fields.get(key, [])
        return value if isinstance(value, list) else [value]


def _form(**fields: Any) -> Form:
    base: dict[str, Any] = {
        "name": "nightly",
        "job_id": "7",
        "priority": "50",
        "concurrency_cap": "1",
        "on_overlap": "queue",
        "retry_max_attempts": "3",
        "retry_backoff": "Exponential",
        "retry_initial_delay_s": "60",
        "retry_max_delay_s": "3600",
    }
    base.update(fields)
    return Form(base)


def test_a_saved_task_round_trips_through_the_form() -> None:
    task = Task(
        id=3,
        name="report",
        job_id=7,
        parameters={"env": "dev", "note": "two\nlines"},
        paused=True,
        description="says\nwhat",
        tags={"team": "data", "nightly": ""},
        priority=80,
        concurrency_cap=2,
        on_overlap=OnOverlap.SKIP,
        timeout_s=900,
        retry=RetryPolicy(
            enabled=True,
            max_attempts=4,
            backoff=Backoff.LINEAR,
            initial_delay_s=2.5,
            max_delay_s=30,
            strategy=RetryStrategy.RESTART,
        ),
        schedules=(
            Schedule(
                "30 1 * * *",
                "Europe/London",
                starts_at=datetime(2026, 3, 28, 12, 0, tzinfo=UTC),
                misfire_policy=MisfirePolicy.RUN_ALL,
                misfire_cap=3,
            ),
            Schedule("@hourly", paused=True),
        ),
        dependencies=(Dependency("ingest", Condition.ON_FAILURE), Dependency("clean")),
    )
    values = values_of(task)
    assert values.schedules[0].starts_at == "2026-03-28T12:00"  # GMT: London's wall clock
    form = Form(
        {
            "name": values.name,
            "job_id": values.job_id,
            "description": values.description.replace("\n", "\r\n"),  # as a browser sends it
            "tags": values.tags,
            "paused": "on",
            "parameter_name": ["env", "note", "batch_size"],
            "parameter_value": ["dev", "two\r\nlines", ""],
            "dependency_upstream": [u for u, _ in values.dependencies],
            "dependency_condition": [c for _, c in values.dependencies],
            "schedule_cron": [r.cron for r in values.schedules],
            "schedule_timezone": [r.timezone for r in values.schedules],
            "schedule_starts_at": [r.starts_at for r in values.schedules],
            "schedule_ends_at": [r.ends_at for r in values.schedules],
            "schedule_paused": ["yes" if r.paused else "no" for r in values.schedules],
            "schedule_misfire_policy": [r.misfire_policy for r in values.schedules],
            "schedule_misfire_cap": [r.misfire_cap for r in values.schedules],
            "priority": values.priority,
            "concurrency_cap": values.concurrency_cap,
            "on_overlap": values.on_overlap,
            "timeout_s": values.timeout_s,
            "retry_enabled": "on",
            "retry_max_attempts": values.retry_max_attempts,
            "retry_backoff": values.retry_backoff,
            "retry_initial_delay_s": values.retry_initial_delay_s,
            "retry_max_delay_s": values.retry_max_delay_s,
            "retry_strategy": values.retry_strategy,
        }
    )
    read = task_of(read_values(form, ["env", "note", "batch_size"]), previous=task)
    assert read == task
    assert dict(read.parameters) == dict(task.parameters)
    assert dict(read.tags) == dict(task.tags)


def test_only_the_jobs_parameters_with_a_value_are_set() -> None:
    form = _form(
        parameter_name=["env", "batch_size", "smuggled"],
        parameter_value=["dev", "", "x"],
    )
    values = read_values(form, ["env", "batch_size"])
    assert dict(values.parameters) == {"env": "dev"}


def test_blank_rows_are_dropped_and_a_start_is_read_in_the_schedules_zone() -> None:
    form = _form(
        dependency_upstream=["", "ingest"],
        dependency_condition=["on_success", "on_completion"],
        schedule_cron=["", "0 2 * * *"],
        schedule_timezone=["UTC", "Australia/Sydney"],
        schedule_starts_at=["", "2026-10-04T02:30"],  # in the gap: read as the instant after
        schedule_ends_at=["", ""],
        schedule_paused=["no", "yes"],
    )
    task = task_of(read_values(form, []))
    assert task.dependencies == (Dependency("ingest", Condition.ON_COMPLETION),)
    (schedule,) = task.schedules
    assert schedule.paused is True
    assert schedule.starts_at == datetime(2026, 10, 3, 16, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"priority": "high"}, "priority", "'high' is not a whole number"),
        ({"timeout_s": "1.5"}, "timeout_s", "whole number"),
        ({"job_id": ""}, "job_id", "whole number"),
        ({"retry_initial_delay_s": "nan"}, "retry.initial_delay_s", "number of seconds"),
        ({"retry_backoff": "Random"}, "retry.backoff", "Fixed, Linear, Exponential"),
        ({"on_overlap": "drop"}, "on_overlap", "queue, skip"),
        (
            {"schedule_cron": ["* * *"], "schedule_timezone": ["UTC"]},
            "schedules[0].cron",
            "has 3 fields",
        ),
        (
            {"schedule_cron": ["@daily", "@daily"], "schedule_timezone": ["UTC", "Mars/Olympus"]},
            "schedules[1].timezone",
            "Mars/Olympus",
        ),
        (
            {"schedule_cron": ["@daily"], "schedule_starts_at": ["yesterday"]},
            "schedules[0].starts_at",
            "YYYY-MM-DDTHH:MM",
        ),
        (
            {"dependency_upstream": ["a"], "dependency_condition": ["maybe"]},
            "dependencies[0].condition",
            "on_success",
        ),
    ],
)
def test_a_value_that_cannot_be_read_names_its_field(
    fields: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(TaskDefinitionError) as caught:
        task_of(read_values(_form(**fields), []))
    assert caught.value.field == field
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("field", "tab"),
    [
        ("name", "general"),
        ("job_id", "general"),
        ("job", "general"),
        ("parameters.run_date", "settings"),
        ("dependencies", "dependencies"),
        ("dependencies[2].condition", "dependencies"),
        ("schedules[0].cron", "scheduling"),
        ("retry.max_delay_s", "runtime"),
        ("priority", "runtime"),
        (None, "general"),
    ],
)
def test_an_errors_field_opens_its_tab(field: str | None, tab: str) -> None:
    assert tab_of(field) == tab


_TEXT = st.text(max_size=40)
_FIELDS = [
    "name",
    "job_id",
    "description",
    "tags",
    "priority",
    "concurrency_cap",
    "on_overlap",
    "timeout_s",
    "retry_max_attempts",
    "retry_backoff",
    "retry_initial_delay_s",
    "retry_max_delay_s",
    "retry_strategy",
]
_ROWS = [
    "dependency_upstream",
    "dependency_condition",
    "schedule_cron",
    "schedule_timezone",
    "schedule_starts_at",
    "schedule_ends_at",
    "schedule_misfire_policy",
    "schedule_misfire_cap",
]


@settings(max_examples=300, deadline=None)
@given(
    singles=st.fixed_dictionaries({}, optional={name: _TEXT for name in _FIELDS}),
    rows=st.fixed_dictionaries({}, optional={name: st.lists(_TEXT, max_size=3) for name in _ROWS}),
)
def test_any_text_reads_as_a_task_or_an_error_naming_a_field(
    singles: dict[str, str], rows: dict[str, list[str]]
) -> None:
    outcome: Task | TaskDefinitionError
    try:
        outcome = task_of(read_values(Form({**singles, **rows}), []))
    except TaskDefinitionError as exc:
        outcome = exc
    if isinstance(outcome, TaskDefinitionError):
        assert outcome.message
        assert outcome.field
    else:
        assert isinstance(outcome, Task)
