"""Job settings as the Jobs API validates and stores them: tasks, their DAG, parameters, scripts."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

from polysync.emulator.controlflow import CONDITION_OPS, MAX_FOREACH_CONCURRENCY
from polysync.emulator.errors import INVALID_PARAMETER_VALUE, ApiError
from polysync.emulator.fields import as_param_string, int_field, malformed
from polysync.emulator.records import Job
from polysync.emulator.spec import TaskScript

MAX_TASKS = 1_000  # tasks per job via write endpoints (reference §8)
ITERATION_SCRIPT = "[iteration]"  # scripts key suffix of a for_each_task's nested task
PARAM_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
RUN_IF = frozenset(
    {
        "ALL_SUCCESS",
        "AT_LEAST_ONE_SUCCESS",
        "NONE_FAILED",
        "ALL_DONE",
        "AT_LEAST_ONE_FAILED",
        "ALL_FAILED",
    }
)


def validate_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, TaskScript]]:
    """Job settings as the API stores them, and the `emulator:` scripts taken out of their tasks.

    Checks what create, reset, update and submit check (reference §2, §8): `name`, task keys,
    task types, `run_if`, `depends_on` (known keys, no cycle), job parameter definitions and
    `max_concurrent_runs`; fills the defaults. Raises ApiError 400 `INVALID_PARAMETER_VALUE` or
    `MALFORMED_REQUEST` naming the offending value.
    """
    clean = copy.deepcopy(dict(settings))
    name = clean.get("name", "Untitled")
    if not isinstance(name, str):
        raise malformed("name", "string", name)
    clean["name"] = name
    tasks = clean.get("tasks", [])
    if not isinstance(tasks, list):
        raise malformed("tasks", "array", tasks)
    if len(tasks) > MAX_TASKS:
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            f"A job can have at most {MAX_TASKS} tasks, got {len(tasks)}.",
        )
    scripts: dict[str, TaskScript] = {}
    keys: set[str] = set()
    for task in tasks:
        if not isinstance(task, dict):
            raise malformed("tasks", "object", task)
        key = task.get("task_key")
        if not isinstance(key, str) or not key:
            raise ApiError(400, INVALID_PARAMETER_VALUE, "Missing required field: task_key")
        if key in keys:
            raise ApiError(
                400, INVALID_PARAMETER_VALUE, f"Task key {key!r} is used by more than one task."
            )
        keys.add(key)
        _take_script(task, key, scripts)
        nested = task.get("for_each_task")
        if isinstance(nested, dict) and isinstance(nested.get("task"), dict):
            _take_script(nested["task"], f"{key}{ITERATION_SCRIPT}", scripts)
        _check_task_type(task, key)
        run_if = task.get("run_if", "ALL_SUCCESS")
        if run_if not in RUN_IF:
            raise ApiError(
                400, INVALID_PARAMETER_VALUE, f"Invalid run_if {run_if!r} for task {key}."
            )
    for task in tasks:
        deps = task.get("depends_on") or []
        if not isinstance(deps, list):
            raise malformed("depends_on", "array", deps)
        normal: list[dict[str, Any]] = []
        for dep in deps:
            dep_key = (
                dep
                if isinstance(dep, str)
                else dep.get("task_key")
                if isinstance(dep, dict)
                else None
            )
            if dep_key not in keys:
                raise ApiError(
                    400,
                    INVALID_PARAMETER_VALUE,
                    f"Task {task['task_key']} depends on {dep_key!r}, which is not a task of this job.",
                )
            normal.append(dep if isinstance(dep, dict) else {"task_key": dep_key})
        if deps:
            task["depends_on"] = normal
    _check_acyclic(tasks)
    params = clean.get("parameters", [])
    if not isinstance(params, list):
        raise malformed("parameters", "array", params)
    for param in params:
        if not isinstance(param, dict) or "name" not in param or "default" not in param:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                "Job parameter definitions need both `name` and `default`.",
            )
        if not PARAM_NAME.match(str(param["name"])):
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"Invalid job parameter name {param['name']!r}: only alphanumerics, "
                "'_', '-' and '.' are allowed.",
            )
        param["default"] = as_param_string(param["default"])
    mcr = clean.get("max_concurrent_runs", 1)
    if not isinstance(mcr, int) or isinstance(mcr, bool) or not 0 <= mcr <= 1000:
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            f"max_concurrent_runs must be between 0 and 1000, got {mcr!r}.",
        )
    clean.setdefault("max_concurrent_runs", 1)
    clean.setdefault("timeout_seconds", 0)
    clean.setdefault("email_notifications", {})
    return clean, scripts


def updated_settings(
    job: Job, new_settings: Mapping[str, Any], fields_to_remove: Iterable[str]
) -> dict[str, Any]:
    """`jobs/update`'s partial update of `job`'s settings, not yet validated: `fields_to_remove`
    go, `new_settings` replace top-level fields, and its `tasks` replace or add tasks by key. The
    tasks keep their `emulator:` scripts."""
    merged = copy.deepcopy(job.settings)
    for task in merged.get("tasks", []):
        script = job.scripts.get(task.get("task_key"))
        if script is not None:
            task["emulator"] = script.model_dump(exclude_none=True)
        nested = job.scripts.get(f"{task.get('task_key')}{ITERATION_SCRIPT}")
        if nested is not None and isinstance(task.get("for_each_task"), dict):
            task["for_each_task"]["task"]["emulator"] = nested.model_dump(exclude_none=True)
    for name in fields_to_remove:
        merged.pop(name, None)
    if "tasks" in new_settings:
        by_key = {t["task_key"]: t for t in merged.get("tasks", [])}
        for task in new_settings["tasks"]:
            by_key[task.get("task_key")] = task
        merged["tasks"] = list(by_key.values())
    merged.update({k: v for k, v in new_settings.items() if k != "tasks"})
    return merged


def job_parameter_values(
    job: Job, values_in: Mapping[str, object], *, reject_unknown: bool
) -> list[dict[str, str]]:
    """The run's `job_parameters` (`name`, `default`, `value`) for these overrides.

    With `reject_unknown` (the workspace switch `reject_unknown_job_parameters`), a name the job
    does not define is refused with ApiError 400 `INVALID_PARAMETER_VALUE` naming it and the
    defined ones; otherwise it is kept with an empty default.
    """
    values = {str(k): as_param_string(v) for k, v in values_in.items()}
    defined = {str(p["name"]): str(p["default"]) for p in job.parameters}
    if reject_unknown:
        unknown = sorted(set(values) - set(defined))
        if unknown:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"Job {job.job_id} does not define the job parameter(s) {', '.join(unknown)}. "
                f"Defined job parameters: {', '.join(sorted(defined)) or 'none'}.",
            )
    params = [
        {"name": name, "default": default, "value": values.get(name, default)}
        for name, default in defined.items()
    ]
    params += [
        {"name": name, "default": "", "value": value}
        for name, value in values.items()
        if name not in defined
    ]
    return params


def _take_script(task: dict[str, Any], key: str, scripts: dict[str, TaskScript]) -> None:
    """Move a task's `emulator:` block (never shown by the API) into `scripts[key]`."""
    script = task.pop("emulator", None)
    if script is None:
        return
    try:
        scripts[key] = TaskScript.model_validate(script)
    except ValueError as exc:
        raise ApiError(
            400, INVALID_PARAMETER_VALUE, f"Invalid emulator script for task {key}: {exc}"
        ) from exc


def _check_task_type(task: dict[str, Any], key: str) -> None:
    """The checks the Jobs API makes on control-flow task definitions (sdk-py `ConditionTask`,
    `RunJobTask`, `ForEachTask`: their required fields and enum values)."""
    condition = task.get("condition_task")
    if condition is not None:
        if not isinstance(condition, dict):
            raise malformed("condition_task", "object", condition)
        for field_name in ("op", "left", "right"):
            if field_name not in condition:
                raise ApiError(
                    400,
                    INVALID_PARAMETER_VALUE,
                    f"Missing required field: condition_task.{field_name}",
                )
        if condition["op"] not in CONDITION_OPS:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"Invalid condition_task.op {condition['op']!r} for task {key}: expected one of "
                f"{', '.join(sorted(CONDITION_OPS))}.",
            )
    run_job = task.get("run_job_task")
    if run_job is not None:
        if not isinstance(run_job, dict):
            raise malformed("run_job_task", "object", run_job)
        int_field(run_job, "job_id", required=True)
    for_each = task.get("for_each_task")
    if for_each is not None:
        if not isinstance(for_each, dict):
            raise malformed("for_each_task", "object", for_each)
        if not isinstance(for_each.get("inputs"), str):
            raise ApiError(
                400, INVALID_PARAMETER_VALUE, "Missing required field: for_each_task.inputs"
            )
        nested = for_each.get("task")
        if not isinstance(nested, dict) or not isinstance(nested.get("task_key"), str):
            raise ApiError(
                400, INVALID_PARAMETER_VALUE, "Missing required field: for_each_task.task"
            )
        if "for_each_task" in nested:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"Task {key}: a for_each_task cannot nest another one.",
            )
        concurrency = for_each.get("concurrency", 1)
        if (
            not isinstance(concurrency, int)
            or isinstance(concurrency, bool)
            or not 1 <= concurrency <= MAX_FOREACH_CONCURRENCY
        ):
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"for_each_task.concurrency of task {key} must be between 1 and "
                f"{MAX_FOREACH_CONCURRENCY}, got {concurrency!r}.",
            )


def _check_acyclic(tasks: list[dict[str, Any]]) -> None:
    deps = {
        t["task_key"]: [
            d["task_key"] if isinstance(d, dict) else d for d in t.get("depends_on") or []
        ]
        for t in tasks
    }
    state: dict[str, int] = {}

    def visit(key: str, path: list[str]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            cycle = " -> ".join([*path[path.index(key) :], key])
            raise ApiError(
                400, INVALID_PARAMETER_VALUE, f"Task dependencies form a cycle: {cycle}."
            )
        state[key] = 1
        for dep in deps.get(key, []):
            visit(dep, [*path, key])
        state[key] = 2

    for key in deps:
        visit(key, [])
