"""Databricks job settings: parameter import (D1), Job Type by task count (D5), `jobs/get` read
into an ImportedJob. Tolerant: malformed entries are skipped, never fatal."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any

from polysync.domain.models import ImportedJob, Parameter
from polysync.domain.parameters import default_text, infer_data_type
from polysync.jobtypes.databricks.external_id import format_external_id, parse_external_id


class JobKind(StrEnum):
    """The Job Types a Databricks job (Jobs API) is imported as, by its task count (D5)."""

    WORKFLOW = "Databricks Workflow"
    JOB = "Databricks Job"


class ParameterSource(StrEnum):
    """The `JobSettings` field a parameter definition was read from (D1)."""

    PARAMETERS = "parameters"
    JOB_PARAMETERS = "job_parameters"
    NOTEBOOK_BASE_PARAMETERS = "notebook_task.base_parameters"
    SQL_PARAMETERS = "sql_task.parameters"
    RUN_JOB_PARAMETERS = "run_job_task.job_parameters"
    PYTHON_WHEEL_NAMED_PARAMETERS = "python_wheel_task.named_parameters"


# Task-type fields whose map of named values is seeded into the schema, reference-only (D1;
# reference §2 "Task-level parameters"). List-shaped task parameters (spark_python_task etc.)
# have no names, so there is nothing to import from them.
_TASK_PARAMETER_FIELDS: tuple[tuple[str, str, ParameterSource], ...] = (
    ("notebook_task", "base_parameters", ParameterSource.NOTEBOOK_BASE_PARAMETERS),
    ("sql_task", "parameters", ParameterSource.SQL_PARAMETERS),
    ("run_job_task", "job_parameters", ParameterSource.RUN_JOB_PARAMETERS),
    ("python_wheel_task", "named_parameters", ParameterSource.PYTHON_WHEEL_NAMED_PARAMETERS),
)


# --- D1: import ----------------------------------------------------------------------------


def extract_parameters(settings: Mapping[str, Any]) -> tuple[Parameter, ...]:
    """The parameter schema in a `JobSettings` dict: job level first, then each task's (D1).

    Job level: the real `parameters[] {name, default}` first, then the specification's
    `job_parameters[] {name, default_value}`; a name in both is one parameter (the real shape
    wins). Then, per task in order, scoped to its `task_key` and reference-only:
    `notebook_task.base_parameters`, `sql_task.parameters`, `run_job_task.job_parameters`,
    `python_wheel_task.named_parameters`. Malformed entries are skipped, never fatal.
    """
    if not isinstance(settings, Mapping):
        return ()
    found: dict[tuple[str, str | None], Parameter] = {}

    def add(name: str, raw_default: object, task_key: str | None, source: ParameterSource) -> None:
        if (name, task_key) not in found:
            found[(name, task_key)] = Parameter(
                name=name,
                data_type=infer_data_type(raw_default),
                default=default_text(raw_default),
                task_key=task_key,
                source=source,
            )

    for name, raw in _definitions(settings.get("parameters"), ("default",)):
        add(name, raw, None, ParameterSource.PARAMETERS)
    for name, raw in _definitions(settings.get("job_parameters"), ("default_value", "default")):
        add(name, raw, None, ParameterSource.JOB_PARAMETERS)
    for task in _tasks(settings):
        task_key = task.get("task_key")
        if not isinstance(task_key, str) or not task_key:
            continue  # no scope to name: the API requires task_key, so this is junk
        for field_name, values_name, source in _TASK_PARAMETER_FIELDS:
            task_field = task.get(field_name)
            if isinstance(task_field, Mapping):
                for name, raw in _named_values(task_field.get(values_name)):
                    add(name, raw, task_key, source)
    return tuple(found.values())


def _definitions(raw: object, default_keys: tuple[str, ...]) -> Iterator[tuple[str, object]]:
    if isinstance(raw, Mapping):
        yield from _named_values(raw)
        return
    if not isinstance(raw, list):
        return
    for entry in raw:
        if not isinstance(entry, Mapping):
            continue
        name = entry.get("name")
        if isinstance(name, str) and name:
            default = next((entry[k] for k in default_keys if k in entry), None)
            yield name, default


def _named_values(raw: object) -> Iterator[tuple[str, object]]:
    if isinstance(raw, Mapping):
        for name, value in raw.items():
            if isinstance(name, str) and name:
                yield name, value


def _tasks(settings: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tasks = settings.get("tasks")
    if not isinstance(tasks, list):
        return []
    return [task for task in tasks if isinstance(task, Mapping)]


# --- D5: Job Type --------------------------------------------------------------------------


def classify(task_count: int) -> JobKind:
    """More than one task -> Databricks Workflow; one or zero -> Databricks Job (D5)."""
    return JobKind.WORKFLOW if task_count > 1 else JobKind.JOB


def imported_job(job: Mapping[str, Any]) -> ImportedJob:
    """An ImportedJob from a `jobs/get` answer whose `settings.tasks` pages were all fetched.

    Raises InvalidExternalIdError when `job_id` is not a valid Job Id.
    """
    raw_id = job.get("job_id")
    # Databricks sends an int; repr() turns anything else (True, None, 1.5) into refused text.
    job_id = parse_external_id(raw_id if isinstance(raw_id, str) else repr(raw_id))
    raw_settings = job.get("settings")
    settings: Mapping[str, Any] = raw_settings if isinstance(raw_settings, Mapping) else {}
    tasks = _tasks(settings)
    task_keys = tuple(
        key for key in (task.get("task_key") for task in tasks) if isinstance(key, str) and key
    )
    raw_tags = settings.get("tags")
    tags = (
        {k: v for k, v in raw_tags.items() if isinstance(k, str) and isinstance(v, str)}
        if isinstance(raw_tags, Mapping)
        else {}
    )
    name = settings.get("name")
    description = settings.get("description")
    return ImportedJob(
        external_id=format_external_id(job_id),
        name=name if isinstance(name, str) else "",
        description=description if isinstance(description, str) else "",
        tags=tags,
        kind=classify(len(tasks)),
        task_count=len(tasks),
        task_keys=task_keys,
        parameters=extract_parameters(settings),
    )
