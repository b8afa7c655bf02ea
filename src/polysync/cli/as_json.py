"""Records as plain JSON values for `--json`: stable field names for scripts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from polysync.domain.models import Parameter
from polysync.domain.records import Job, Platform, Run, RunEvent, SecretVault
from polysync.jobtypes.base import DiscoveredJob
from polysync.shapes import (
    discovered_fields,
    job_fields,
    parameter_fields,
    platform_fields,
    run_fields,
    run_summary_fields,
    task_fields,
    vault_fields,
)


def jsonable(value: Any) -> Any:
    """Records as JSON values: enums by value, times in ISO 8601, dataclasses as objects."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        # As the API (pydantic) writes it: UTC as `Z`.
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def json_object(fields: Mapping[str, Any]) -> dict[str, Any]:
    """`fields` (polysync.shapes) as a JSON object."""
    return {key: jsonable(value) for key, value in fields.items()}


def platform_json(platform: Platform) -> dict[str, Any]:
    """The API's shape (polysync.shapes)."""
    return json_object(platform_fields(platform))


def vault_json(vault: SecretVault) -> dict[str, Any]:
    """The API's shape (polysync.shapes)."""
    return json_object(vault_fields(vault))


def discovered_json(job: DiscoveredJob, imported_job_id: int | None) -> dict[str, Any]:
    """The API's shape (polysync.shapes)."""
    return json_object(discovered_fields(job, imported_job_id))


def parameter_json(parameter: Parameter) -> dict[str, Any]:
    """The API's shape (polysync.shapes)."""
    return json_object(parameter_fields(parameter))


def job_json(job: Job, platform_name: str | None = None) -> dict[str, Any]:
    """The API's shape (polysync.shapes), plus `platform`: its platform's name."""
    return json_object(job_fields(job) | {"platform": platform_name})


def run_json(
    run: Run, job: Job | None = None, events: Sequence[RunEvent] | None = None
) -> dict[str, Any]:
    """The API's shape (polysync.shapes: `events` only when given), plus `job` (id, name,
    External Id, Job Type), `idempotency_token` and the lease of the engine tracking it."""
    if job is None:
        data = run_summary_fields(run) | {
            "life_cycle_state": run.life_cycle_state,
            "result_state": run.result_state,
            "tasks": [task_fields(t) for t in run.tasks],
        }
    else:
        data = run_fields(run, job, events or ())
        if events is None:
            del data["events"], data["last_event_id"]
    data["job"] = (
        {"id": job.id, "name": job.name, "external_id": job.external_id, "job_type": job.job_type}
        if job
        else {"id": run.job_id}
    )
    data["idempotency_token"] = run.idempotency_token
    # Which engine tracks the run now (None: none; a graceful stop releases its runs).
    data["lease_owner"] = run.lease_owner
    data["lease_expires_at"] = run.lease_expires_at
    return json_object(data)
