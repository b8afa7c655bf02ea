"""Records as plain JSON values for `--json`: stable field names for scripts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from polysync.cli.render import kind_label
from polysync.domain.models import Parameter
from polysync.domain.records import Job, Platform, Run, RunEvent
from polysync.jobtypes.base import DiscoveredJob


def jsonable(value: Any) -> Any:
    """Records as JSON values: enums by value, times in ISO 8601, dataclasses as objects."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def platform_json(platform: Platform) -> dict[str, Any]:
    return {
        "id": platform.id,
        "name": platform.name,
        "provider": platform.provider,
        "workspace_url": platform.workspace_url,
        "auth": jsonable(platform.auth),  # references only: `env:NAME`, `file:PATH`
        "cluster_id": platform.cluster_id,
        "description": platform.description,
        "options": jsonable(platform.options),
        "created_at": jsonable(platform.created_at),
        "updated_at": jsonable(platform.updated_at),
    }


def discovered_json(job: DiscoveredJob, imported: bool) -> dict[str, Any]:
    return {
        "external_id": job.external_id,
        "name": job.name,
        "job_type": str(job.kind),
        "classification": kind_label(job.kind),
        "task_count": job.task_count,
        "tags": dict(job.tags),
        "creator": job.creator,
        "created_time_ms": job.created_time_ms,
        "imported": imported,
    }


def parameter_json(parameter: Parameter) -> dict[str, Any]:
    return {
        "name": parameter.name,
        "data_type": parameter.data_type.value,
        "default": parameter.default,
        "direction": parameter.direction.value if parameter.direction else None,
        "scope": "job" if parameter.is_job_level else f"task:{parameter.task_key}",
        "task_key": parameter.task_key,
        "source": str(parameter.source),
        "stored_value": parameter.stored_value,
        "sent_at_run_time": parameter.is_sent,
        "reference_only": not parameter.is_job_level or parameter.reference_only,
        "choices": list(parameter.choices),
    }


def job_json(job: Job, platform_name: str | None = None) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "job_type": str(job.job_type),
        "external_id": job.external_id,
        "platform_id": job.platform_id,
        "platform": platform_name,
        "description": job.description,
        "tags": dict(job.tags),
        "task_count": job.task_count,
        "task_keys": list(job.task_keys),
        "parameters": [parameter_json(p) for p in job.parameters],
        "imported_at": jsonable(job.imported_at),
        "synced_at": jsonable(job.synced_at),
    }


def run_json(
    run: Run, job: Job | None = None, events: Sequence[RunEvent] | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": run.id,
        "job": (
            {
                "id": job.id,
                "name": job.name,
                "external_id": job.external_id,
                "job_type": str(job.job_type),
            }
            if job
            else {"id": run.job_id}
        ),
        "job_id": run.job_id,
        "platform_id": run.platform_id,
        "run_id": run.run_id,
        "status": run.status.value,
        "terminal": run.is_terminal,
        "message": run.message,
        "run_page_url": run.run_page_url,
        "life_cycle_state": run.life_cycle_state,
        "result_state": run.result_state,
        "tasks": jsonable(run.tasks),
        "parameters_sent": dict(run.parameters_sent),
        "overrides": dict(run.overrides),
        "idempotency_token": run.idempotency_token,
        "created_at": jsonable(run.created_at),
        "submitted_at": jsonable(run.submitted_at),
        "cancel_requested_at": jsonable(run.cancel_requested_at),
        "ended_at": jsonable(run.ended_at),
        "executed_by": run.executed_by,
        "cancelled_by": run.cancelled_by,
        # Which engine tracks the run now (None: none; a graceful stop releases its runs).
        "lease_owner": run.lease_owner,
        "lease_expires_at": jsonable(run.lease_expires_at),
    }
    if events is not None:
        data["status_history"] = [
            {
                "at": jsonable(e.at),
                "status": e.status.value,
                "message": e.message,
                "life_cycle_state": e.life_cycle_state,
                "result_state": e.result_state,
                "source": e.source,
            }
            for e in events
        ]
    return data
