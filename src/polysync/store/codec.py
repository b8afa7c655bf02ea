"""JSON forms of the domain values kept in JSON columns: parameters, task states, string maps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from polysync.domain.models import (
    DEFAULT_PARAMETER_SOURCE,
    DataType,
    Direction,
    Parameter,
    RunStatus,
    TaskRunState,
    Termination,
)
from polysync.domain.records import RunRepair

# Enums are stored by value (the domain's own spelling, e.g. "Input&Output"), never by Python
# name, so renaming a member in code does not orphan stored rows. Decoders ignore keys they do
# not know, so a row written by a newer Polysync still reads.


def parameter_to_json(parameter: Parameter) -> dict[str, Any]:
    return {
        "name": parameter.name,
        "data_type": parameter.data_type.value,
        "default": parameter.default,
        "direction": None if parameter.direction is None else parameter.direction.value,
        "task_key": parameter.task_key,
        "source": str(parameter.source),
        "stored_value": parameter.stored_value,
        "reference_only": parameter.reference_only,
        "choices": list(parameter.choices),
    }


def parameter_from_json(data: Mapping[str, Any]) -> Parameter:
    direction = data.get("direction")
    return Parameter(
        name=data["name"],
        data_type=DataType(data.get("data_type", DataType.STRING.value)),
        default=data.get("default"),
        direction=None if direction is None else Direction(direction),
        task_key=data.get("task_key"),
        source=str(data.get("source", DEFAULT_PARAMETER_SOURCE)),
        stored_value=data.get("stored_value"),
        reference_only=bool(data.get("reference_only", False)),
        choices=tuple(str(choice) for choice in data.get("choices") or ()),
    )


def parameters_to_json(parameters: Iterable[Parameter]) -> list[dict[str, Any]]:
    return [parameter_to_json(p) for p in parameters]


def parameters_from_json(data: Iterable[Mapping[str, Any]] | None) -> tuple[Parameter, ...]:
    return tuple(parameter_from_json(item) for item in data or ())


def termination_to_json(termination: Termination | None) -> dict[str, Any] | None:
    if termination is None:
        return None
    return {"code": termination.code, "type": termination.type, "message": termination.message}


def termination_from_json(data: Mapping[str, Any] | None) -> Termination | None:
    if data is None:
        return None
    return Termination(
        code=data.get("code"), type=data.get("type"), message=data.get("message", "")
    )


def task_to_json(task: TaskRunState) -> dict[str, Any]:
    return {
        "task_key": task.task_key,
        "status": task.status.value,
        "run_id": task.run_id,
        "attempt_number": task.attempt_number,
        "life_cycle_state": task.life_cycle_state,
        "result_state": task.result_state,
        "state_message": task.state_message,
        "termination": termination_to_json(task.termination),
        "start_time_ms": task.start_time_ms,
        "end_time_ms": task.end_time_ms,
        "duration_ms": task.duration_ms,
        "run_page_url": task.run_page_url,
        "error": task.error,
    }


def task_from_json(data: Mapping[str, Any]) -> TaskRunState:
    return TaskRunState(
        task_key=data["task_key"],
        status=RunStatus(data["status"]),
        run_id=data.get("run_id"),
        attempt_number=data.get("attempt_number", 0),
        life_cycle_state=data.get("life_cycle_state"),
        result_state=data.get("result_state"),
        state_message=data.get("state_message", ""),
        termination=termination_from_json(data.get("termination")),
        start_time_ms=data.get("start_time_ms"),
        end_time_ms=data.get("end_time_ms"),
        duration_ms=data.get("duration_ms"),
        run_page_url=data.get("run_page_url"),
        error=data.get("error"),
    )


def tasks_to_json(tasks: Iterable[TaskRunState]) -> list[dict[str, Any]]:
    return [task_to_json(t) for t in tasks]


def tasks_from_json(data: Iterable[Mapping[str, Any]] | None) -> tuple[TaskRunState, ...]:
    return tuple(task_from_json(item) for item in data or ())


def string_map_to_json(mapping: Mapping[str, str]) -> dict[str, str]:
    return dict(mapping)


def string_map_from_json(data: Mapping[str, str] | None) -> dict[str, str]:
    return dict(data or {})


def repair_to_json(repair: RunRepair | None) -> dict[str, Any] | None:
    """A run's repair (D13) as stored in `runs.repair`; times as ISO 8601 UTC text."""
    if repair is None:
        return None
    return {
        "number": repair.number,
        "task_keys": list(repair.task_keys),
        "latest_repair_id": repair.latest_repair_id,
        "requested_at": repair.requested_at.isoformat(),
        "requested_by": repair.requested_by,
        "repair_id": repair.repair_id,
        "sent_at": None if repair.sent_at is None else repair.sent_at.isoformat(),
    }


def repair_from_json(data: Mapping[str, Any] | None) -> RunRepair | None:
    if not data:
        return None
    sent_at = data.get("sent_at")
    return RunRepair(
        number=int(data["number"]),
        task_keys=tuple(str(key) for key in data.get("task_keys") or ()),
        latest_repair_id=data.get("latest_repair_id"),
        requested_at=_utc(datetime.fromisoformat(str(data["requested_at"]))),
        requested_by=data.get("requested_by"),
        repair_id=data.get("repair_id"),
        sent_at=None if sent_at is None else _utc(datetime.fromisoformat(str(sent_at))),
    )


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
