"""One JSON shape per resource, shared by the REST API and `polysync ... --json` (issue 10).

Each function gives a record's public fields as a dict of plain Python values (datetimes,
enums): the API's response models are built from it (polysync.api.schemas, pydantic writes the
JSON), and the CLI writes it with `polysync.cli.as_json.jsonable`. The field names are the
API's, its public contract: a run's Databricks RunId is `databricks_run_id`, its status history
`events`. Secret parameter values are masked here, for every interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from polysync.domain.contention import ContentionProfile
from polysync.domain.models import Parameter, TaskRunState
from polysync.domain.parameters import shown_default, shown_value, shown_values
from polysync.domain.records import Job, Platform, Run, RunEvent, RunRepair, SecretVault
from polysync.jobtypes.base import DiscoveredJob
from polysync.task_services import FireTime, TaskSummary, task_data
from polysync.tasks.model import TaskRun


def platform_fields(platform: Platform) -> dict[str, Any]:
    """A platform: `auth` holds the method, its non-secret fields and secret references."""
    return {
        "id": platform.id,
        "name": platform.name,
        "provider": platform.provider,
        "workspace_url": platform.workspace_url,
        "auth": dict(platform.auth),
        "auth_method": platform.auth_method,
        "cluster_id": platform.cluster_id,
        "description": platform.description,
        "options": dict(platform.options),
        "created_at": platform.created_at,
        "updated_at": platform.updated_at,
    }


def vault_fields(vault: SecretVault) -> dict[str, Any]:
    """A Secret Vault (D15): `auth` holds the method, its non-secret fields and a client
    secret's reference; `reference` is how secrets of it are named."""
    return {
        "id": vault.id,
        "name": vault.name,
        "provider": vault.provider,
        "vault_url": vault.vault_url,
        "auth": dict(vault.auth),
        "auth_method": vault.auth_method,
        "description": vault.description,
        "options": dict(vault.options),
        "reference": f"vault://{vault.name}/SECRET",
        "created_at": vault.created_at,
        "updated_at": vault.updated_at,
    }


def discovered_fields(job: DiscoveredJob, imported_job_id: int | None) -> dict[str, Any]:
    """A job Get Pipelines found; `imported_job_id` is its Polysync job, when imported."""
    return {
        "external_id": job.external_id,
        "name": job.name,
        "kind": job.kind,
        "task_count": job.task_count,
        "tasks_truncated": job.tasks_truncated,
        "tags": dict(job.tags),
        "creator": job.creator,
        "created_time_ms": job.created_time_ms,
        "imported_job_id": imported_job_id,
    }


def parameter_fields(parameter: Parameter) -> dict[str, Any]:
    """A job's parameter; a Secret's default is MASK, its stored value a reference or MASK
    (`polysync.domain.parameters.shown_value`)."""
    return {
        "name": parameter.name,
        "data_type": parameter.data_type,
        "default": shown_default(parameter),
        "direction": parameter.direction,
        "task_key": parameter.task_key,
        "source": str(parameter.source),
        "stored_value": shown_value(parameter.data_type, parameter.stored_value),
        "sent_at_run_time": parameter.is_sent,
        "reference_only": parameter.reference_only,
        "choices": list(parameter.choices),
    }


def job_fields(job: Job) -> dict[str, Any]:
    """An imported job with its parameter schema."""
    return {
        "id": job.id,
        "platform_id": job.platform_id,
        "job_type": job.job_type,
        "external_id": job.external_id,
        "name": job.name,
        "description": job.description,
        "tags": dict(job.tags),
        "task_count": job.task_count,
        "task_keys": list(job.task_keys),
        "parameters": [parameter_fields(p) for p in job.parameters],
        "imported_at": job.imported_at,
        "synced_at": job.synced_at,
    }


def task_fields(task: TaskRunState) -> dict[str, Any]:
    """One task run (attempt) of a run; `run_id` is the task run's Databricks id."""
    return {
        "task_key": task.task_key,
        "status": task.status,
        "run_id": task.run_id,
        "attempt_number": task.attempt_number,
        "life_cycle_state": task.life_cycle_state,
        "result_state": task.result_state,
        "state_message": task.state_message,
        "start_time_ms": task.start_time_ms,
        "end_time_ms": task.end_time_ms,
        "duration_ms": task.duration_ms,
        "run_page_url": task.run_page_url,
        "error": task.error,
    }


def event_fields(event: RunEvent) -> dict[str, Any]:
    """One entry of a run's status history."""
    return {
        "id": event.id,
        "at": event.at,
        "status": event.status,
        "message": event.message,
        "life_cycle_state": event.life_cycle_state,
        "result_state": event.result_state,
        "source": event.source,
    }


def run_summary_fields(run: Run) -> dict[str, Any]:
    """A run as lists show it."""
    return {
        "id": run.id,
        "job_id": run.job_id,
        "platform_id": run.platform_id,
        "status": run.status,
        "terminal": run.is_terminal,
        "message": run.message,
        "databricks_run_id": run.run_id,
        "run_page_url": run.run_page_url,
        "created_at": run.created_at,
        "submitted_at": run.submitted_at,
        "ended_at": run.ended_at,
        "updated_at": run.updated_at,
        "cancel_requested_at": run.cancel_requested_at,
        "executed_by": run.executed_by,
        "cancelled_by": run.cancelled_by,
        "repair": None if run.repair is None else repair_fields(run.repair, run.repair_pending),
    }


def repair_fields(repair: RunRepair, pending: bool) -> dict[str, Any]:
    """The latest repair of a run (D13): its number, the tasks it reruns, who asked, and
    Databricks' repair id once sent (`pending`: recorded, not sent yet)."""
    return {
        "number": repair.number,
        "task_keys": list(repair.task_keys),
        "latest_repair_id": repair.latest_repair_id,
        "requested_at": repair.requested_at,
        "requested_by": repair.requested_by,
        "repair_id": repair.repair_id,
        "sent_at": repair.sent_at,
        "pending": pending,
    }


def run_fields(run: Run, job: Job, events: Sequence[RunEvent]) -> dict[str, Any]:
    """A run with its values (Secret ones masked), tasks and status history (oldest first);
    `last_event_id` is what the API's long poll takes as `since`."""
    return run_summary_fields(run) | {
        "life_cycle_state": run.life_cycle_state,
        "result_state": run.result_state,
        "overrides": shown_values(job.parameters, run.overrides),
        "parameters_sent": shown_values(job.parameters, run.parameters_sent),
        "tasks": [task_fields(t) for t in run.tasks],
        "events": [event_fields(e) for e in events],
        "last_event_id": events[-1].id if events else 0,
    }


def polysync_task_fields(summary: TaskSummary) -> dict[str, Any]:
    """A Task (issue 12) with its Job, next fire time and last result: its editable fields
    (what `polysync.task_services.parse_task` reads) plus `id`, `job` {id, name, job_type,
    platform_id}, `next_fire`, `last_run` (a TaskRun summary or None)."""
    task = summary.task
    job = summary.job
    return {
        "id": task.id,
        **task_data(task),
        "enabled": task.enabled,
        "job": (
            None
            if job is None
            else {
                "id": job.id,
                "name": job.name,
                "job_type": job.job_type,
                "platform_id": job.platform_id,
            }
        ),
        "next_fire": summary.next_fire,
        "last_run": taskrun_summary_fields(summary.last_run) if summary.last_run else None,
    }


def taskrun_summary_fields(task_run: TaskRun) -> dict[str, Any]:
    """A TaskRun without its history: status, trigger, times, attempts (each with our run's
    `run_id`, the Polysync run id)."""
    return {
        "id": task_run.id,
        "task_id": task_run.task_id,
        "trigger": task_run.trigger.value,
        "scheduled_for": task_run.scheduled_for,
        "status": task_run.status.value,
        "priority": task_run.priority,
        "queued_at": task_run.queued_at,
        "started_at": task_run.started_at,
        "ended_at": task_run.ended_at,
        "next_attempt_at": task_run.next_attempt_at,
        "retry_of": task_run.retry_of,
        "message": task_run.message,
        "attempts": [
            {
                "number": a.number,
                "kind": a.kind.value,
                "run_id": a.run_id,
                "started_at": a.started_at,
                "ended_at": a.ended_at,
                "status": a.status.value if a.status is not None else None,
                "message": a.message,
            }
            for a in task_run.attempts
        ],
    }


def taskrun_fields(task_run: TaskRun) -> dict[str, Any]:
    """A TaskRun with its status history (`events`, oldest first)."""
    return {
        **taskrun_summary_fields(task_run),
        "events": [
            {"at": e.at, "status": e.status.value, "message": e.message, "attempt": e.attempt}
            for e in task_run.history
        ],
    }


def fire_time_fields(fire: FireTime) -> dict[str, Any]:
    """One previewed fire time: `at` (UTC) and the schedule's position."""
    return {"at": fire.at, "schedule": fire.schedule}


def profile_fields(profile: ContentionProfile) -> dict[str, Any]:
    """A contention profile (D14): its settings, flat, and its links by id."""
    settings = profile.settings
    return {
        "id": profile.id,
        "name": settings.name,
        "type": settings.type.value,
        "enabled": settings.enabled,
        "scope": settings.scope.value,
        "description": settings.description,
        "max_concurrent": settings.max_concurrent,
        "limit": settings.limit,
        "window_s": settings.window_s,
        "algorithm": settings.algorithm.value,
        "queue_size_limit": settings.queue_size_limit,
        "queue_timeout_s": settings.queue_timeout_s,
        "exceed_action": settings.exceed_action.value,
        "platform_ids": list(profile.platform_ids),
        "task_ids": list(profile.task_ids),
        "created_at": profile.created_at,
        "updated_at": profile.updated_at,
    }
