"""Pure rules of the Jobs API's control-flow tasks: dynamic value references, condition_task
comparisons and for_each_task inputs.

Sources: sdk-py `service/jobs.py` (`ConditionTask`, `ConditionTaskOp`, `ForEachTask`,
`RunConditionTask.outcome`), and the Databricks docs page "What is a dynamic value reference?"
(`{{job.parameters.<name>}}`, `{{job.id}}`, `{{job.run_id}}`, `{{job.name}}`,
`{{job.repair_count}}`, `{{tasks.<task>.run_id}}`, `{{tasks.<task>.result_state}}`,
`{{input}}` inside a for-each task).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CONDITION_OPS = frozenset(
    {
        "EQUAL_TO",
        "NOT_EQUAL",
        "GREATER_THAN",
        "GREATER_THAN_OR_EQUAL",
        "LESS_THAN",
        "LESS_THAN_OR_EQUAL",
    }
)
CONTROL_FLOW_TASKS = ("condition_task", "run_job_task", "for_each_task")
MAX_FOREACH_INPUTS = 5000  # for-each inputs per task (Databricks docs "For each task" limits)
MAX_FOREACH_CONCURRENCY = 100

_REFERENCE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def is_control_flow(task: Mapping[str, Any]) -> bool:
    """Whether a task definition is a control-flow task (run by the Jobs service, no cluster)."""
    return any(kind in task for kind in CONTROL_FLOW_TASKS)


class InvalidReference(ValueError):
    """A dynamic value reference that names nothing in this run."""


@dataclass(frozen=True, slots=True)
class ReferenceContext:
    """What `{{...}}` can name while a task of a run starts."""

    job_id: int | None
    run_id: int
    job_name: str
    repair_count: int
    job_parameters: Mapping[str, str]
    task_run_ids: Mapping[str, int] = field(default_factory=dict)
    task_results: Mapping[str, str] = field(default_factory=dict)  # lower-case result states
    item: str | None = None  # `{{input}}` of a for-each iteration, as JSON text


def resolve_references(text: str, context: ReferenceContext) -> str:
    """`text` with every `{{reference}}` replaced by its value.

    Raises `InvalidReference` naming the first reference that is not known.
    """

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1)
        value = _lookup(name, context)
        if value is None:
            raise InvalidReference(f"Invalid dynamic value reference {{{{{name}}}}}.")
        return value

    return _REFERENCE.sub(value_of, text)


def _lookup(name: str, ctx: ReferenceContext) -> str | None:
    simple = {
        "job.id": None if ctx.job_id is None else str(ctx.job_id),
        "job.run_id": str(ctx.run_id),
        "job.name": ctx.job_name,
        "job.repair_count": str(ctx.repair_count),
    }
    if name in simple:
        return simple[name]
    if name.startswith("job.parameters."):
        return ctx.job_parameters.get(name.removeprefix("job.parameters.").strip("`[]"))
    if name == "input" or name.startswith("input."):
        return _input_value(name, ctx.item)
    if name.startswith("tasks."):
        task, _, attribute = name.removeprefix("tasks.").rpartition(".")
        task = task.strip("`[]")
        if attribute == "run_id" and task in ctx.task_run_ids:
            return str(ctx.task_run_ids[task])
        if attribute == "result_state" and task in ctx.task_results:
            return ctx.task_results[task]
    return None


def _input_value(name: str, item: str | None) -> str | None:
    if item is None:
        return None
    value: object = json.loads(item)
    for part in name.split(".")[1:]:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, str) else json.dumps(value)


def evaluate_condition(op: str, left: str, right: str) -> bool:
    """The outcome of a condition_task.

    EQUAL_TO / NOT_EQUAL compare strings ("12.0" == "12" is false); the others compare numbers
    ("12.0" >= "12" is true) (sdk-py `ConditionTaskOp`). Raises ValueError for an unknown `op` or a
    numeric comparison of something that is not a number.
    """
    if op == "EQUAL_TO":
        return left == right
    if op == "NOT_EQUAL":
        return left != right
    if op not in CONDITION_OPS:
        raise ValueError(f"Unknown condition operator {op!r}.")
    a, b = _number(left), _number(right)
    if op == "GREATER_THAN":
        return a > b
    if op == "GREATER_THAN_OR_EQUAL":
        return a >= b
    if op == "LESS_THAN":
        return a < b
    return a <= b


def _number(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError as exc:
        raise ValueError(
            f"Cannot compare {text!r} numerically: the operands of a numeric comparison must be numbers."
        ) from exc
    if math.isnan(value):
        raise ValueError(f"Cannot compare {text!r} numerically.")
    return value


def parse_foreach_inputs(text: str) -> list[str]:
    """The items of a for_each_task's `inputs` (a JSON array, after references are resolved), each
    as JSON text. Raises ValueError if it is not a JSON array or holds more than 5,000 items."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"The for-each inputs are not a valid JSON array: {exc.msg}.") from exc
    if not isinstance(items, list):
        raise ValueError("The for-each inputs must be a JSON array.")
    if len(items) > MAX_FOREACH_INPUTS:
        raise ValueError(
            f"The for-each inputs have {len(items)} items; at most {MAX_FOREACH_INPUTS} are allowed."
        )
    return [json.dumps(item) for item in items]


def resolve_in(value: object, context: ReferenceContext) -> object:
    """`value` (a task definition or part of one) with references resolved in every string."""
    if isinstance(value, str):
        return resolve_references(value, context)
    if isinstance(value, list):
        return [resolve_in(v, context) for v in value]
    if isinstance(value, dict):
        return {k: resolve_in(v, context) for k, v in value.items()}
    return value
