"""One JSON shape per resource, shared by the REST API and `polysync ... --json` (issue 10).

Each function gives a record's public fields as a dict of plain Python values (datetimes,
enums): the API's response models are built from it (polysync.api.schemas, pydantic writes the
JSON), and the CLI writes it with `polysync.cli.as_json.jsonable`. The field names are the
API's, its public contract: a run's Databricks RunId is `databricks_run_id`, its status history
`events`. Secret parameter values are masked here, for every interface.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from polysync.domain.models import Parameter, TaskRunState
from polysync.domain.parameters import shown_default, shown_value, shown_values
from polysync.domain.records import Job, Platform, Run, RunEvent
from polysync.jobtypes.base import DiscoveredJob
from polysync.tasks.model import Task, TaskRun
from polysync.tasks.retry import RetryPolicy
from polysync.tasks.schedule import Schedule, next_fire_time, next_fire_times


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


# --- Tasks (issue 12, docs/tasks.md) ---------------------------------------------------------


def schedule_fields(schedule: Schedule, next_fire_at: datetime | None) -> dict[str, Any]:
    """One schedule of a Task; `next_fire_at` is None when it is paused or has ended."""
    return {
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "starts_at": schedule.starts_at,
        "ends_at": schedule.ends_at,
        "paused": schedule.paused,
        "misfire_policy": schedule.misfire_policy,
        "misfire_cap": schedule.misfire_cap,
        "next_fire_at": next_fire_at,
    }


def retry_fields(policy: RetryPolicy) -> dict[str, Any]:
    """A Task's retry policy; `strategy` None takes the Job Type's default."""
    return {
        "enabled": policy.enabled,
        "max_attempts": policy.max_attempts,
        "backoff": policy.backoff,
        "initial_delay_s": policy.initial_delay_s,
        "max_delay_s": policy.max_delay_s,
        "strategy": policy.strategy,
    }


def task_definition_fields(
    task: Task,
    *,
    now: datetime,
    upstream_ids: Mapping[str, int] | None = None,
    job_parameters: Sequence[Parameter] = (),
    last_run: TaskRun | None = None,
) -> dict[str, Any]:
    """A Task as saved, with each schedule's next fire time after `now` and the Task's
    (`next_fire_at`: None when paused or nothing is due). `upstream_ids`: {Task name: id}, for
    each dependency's `upstream_task_id`. A value of one of `job_parameters`' Secret parameters
    shows as its reference or masked (`shown_values`). `last_run`: its latest TaskRun."""
    ids = upstream_ids or {}
    fires = [None if task.paused else next_fire_time(s, now) for s in task.schedules]
    upcoming = [fire for fire in fires if fire is not None]
    return {
        "id": task.id,
        "name": task.name,
        "job_id": task.job_id,
        "parameters": shown_values(job_parameters, task.parameters),
        "paused": task.paused,
        "enabled": task.enabled,
        "description": task.description,
        "tags": dict(task.tags),
        "priority": task.priority,
        "concurrency_cap": task.concurrency_cap,
        "on_overlap": task.on_overlap,
        "timeout_s": task.timeout_s,
        "retry": retry_fields(task.retry),
        "schedules": [
            schedule_fields(s, fire) for s, fire in zip(task.schedules, fires, strict=True)
        ],
        "dependencies": [
            {
                "upstream": edge.upstream,
                "upstream_task_id": ids.get(edge.upstream),
                "condition": edge.condition,
            }
            for edge in task.dependencies
        ],
        "next_fire_at": min(upcoming) if upcoming else None,
        "last_run": task_run_summary_fields(last_run) if last_run is not None else None,
    }


def task_run_summary_fields(task_run: TaskRun) -> dict[str, Any]:
    """A TaskRun as lists show it; `run_id` is the Polysync Run of its latest attempt."""
    latest = task_run.attempts[-1] if task_run.attempts else None
    return {
        "id": task_run.id,
        "task_id": task_run.task_id,
        "trigger": task_run.trigger,
        "scheduled_for": task_run.scheduled_for,
        "status": task_run.status,
        "terminal": task_run.status.is_terminal,
        "priority": task_run.priority,
        "queued_at": task_run.queued_at,
        "started_at": task_run.started_at,
        "ended_at": task_run.ended_at,
        "next_attempt_at": task_run.next_attempt_at,
        "retry_of": task_run.retry_of,
        "message": task_run.message,
        "attempt_count": len(task_run.attempts),
        "run_id": latest.run_id if latest is not None else None,
    }


def task_run_fields(task_run: TaskRun) -> dict[str, Any]:
    """A TaskRun with its attempts (each linked to its Run) and its status history."""
    return {
        **task_run_summary_fields(task_run),
        "attempts": [
            {
                "number": attempt.number,
                "kind": attempt.kind,
                "run_id": attempt.run_id,
                "started_at": attempt.started_at,
                "ended_at": attempt.ended_at,
                "status": attempt.status,
                "message": attempt.message,
            }
            for attempt in task_run.attempts
        ],
        "events": [
            {
                "at": event.at,
                "status": event.status,
                "message": event.message,
                "attempt": event.attempt,
            }
            for event in task_run.history
        ],
    }


def preview_fields(
    task_id: int | None, schedules: Sequence[Schedule], after: datetime, count: int
) -> dict[str, Any]:
    """The next `count` fire times after `after`, per schedule (a paused one as if resumed) and
    merged: two schedules firing at one instant make one TaskRun, so it is listed once."""
    per_schedule = [next_fire_times(s, after, count) for s in schedules]
    merged = sorted({fire for fires in per_schedule for fire in fires})[:count]
    return {
        "task_id": task_id,
        "fire_times": merged,
        "schedules": [
            {
                "position": position,
                "cron": schedule.cron,
                "timezone": schedule.timezone,
                "paused": schedule.paused,
                "fire_times": list(fires),
            }
            for position, (schedule, fires) in enumerate(zip(schedules, per_schedule, strict=True))
        ],
    }
