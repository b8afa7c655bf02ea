"""Database rows to domain records, and domain values to column values."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from polysync.domain.access import ApiKey, Role
from polysync.domain.models import ImportedJob, RunStatus
from polysync.domain.records import (
    AuditEvent,
    EngineHeartbeat,
    EngineState,
    Job,
    Platform,
    Run,
    RunEvent,
    SecretVault,
)
from polysync.store.codec import (
    parameters_from_json,
    parameters_to_json,
    repair_from_json,
    string_map_from_json,
    string_map_to_json,
    tasks_from_json,
)


def status_values(status: RunStatus) -> dict[str, Any]:
    """The columns that hold a run's status: the terminal flag always moves with it."""
    return {"status": status.value, "terminal": status.is_terminal}


def job_schema_values(job: ImportedJob) -> dict[str, Any]:
    """The columns an import or a Sync Parameters replaces."""
    return {
        "job_type": str(job.kind),
        "name": job.name,
        "description": job.description,
        "tags": string_map_to_json(job.tags),
        "task_count": job.task_count,
        "task_keys": list(job.task_keys),
        "parameters": parameters_to_json(job.parameters),
    }


def platform_from_row(row: Any) -> Platform:
    return Platform(
        id=row.id,
        name=row.name,
        provider=row.provider,
        workspace_url=row.workspace_url,
        auth=dict(row.auth),
        cluster_id=row.cluster_id,
        description=row.description,
        options=dict(row.options),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def job_from_row(row: Any) -> Job:
    return Job(
        id=row.id,
        platform_id=row.platform_id,
        job_type=row.job_type,
        external_id=row.external_id,
        name=row.name,
        description=row.description,
        tags=string_map_from_json(row.tags),
        task_count=row.task_count,
        task_keys=tuple(row.task_keys),
        parameters=parameters_from_json(row.parameters),
        imported_at=row.imported_at,
        synced_at=row.synced_at,
    )


def run_from_row(row: Any) -> Run:
    return Run(
        id=row.id,
        job_id=row.job_id,
        platform_id=row.platform_id,
        key=row.key,
        idempotency_token=row.idempotency_token,
        overrides=string_map_from_json(row.overrides),
        parameters_sent=string_map_from_json(row.parameters_sent),
        run_id=row.run_id,
        status=RunStatus(row.status),
        message=row.message,
        run_page_url=row.run_page_url,
        life_cycle_state=row.life_cycle_state,
        result_state=row.result_state,
        tasks=tasks_from_json(row.tasks),
        created_at=row.created_at,
        submitted_at=row.submitted_at,
        ended_at=row.ended_at,
        updated_at=row.updated_at,
        cancel_requested_at=row.cancel_requested_at,
        next_poll_at=row.next_poll_at,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        submit_attempts=row.submit_attempts,
        lease_token=row.lease_token,
        poll_failures=row.poll_failures,
        executed_by=row.executed_by,
        cancelled_by=row.cancelled_by,
        queued_at=row.queued_at,
        waiting_profile_id=row.waiting_profile_id,
        admitted_at=row.admitted_at,
        repair=repair_from_json(row.repair),
    )


def event_from_row(row: Any) -> RunEvent:
    return RunEvent(
        id=row.id,
        run_id=row.run_id,
        at=row.at,
        status=RunStatus(row.status),
        message=row.message,
        life_cycle_state=row.life_cycle_state,
        result_state=row.result_state,
        source=row.source,
    )


def api_key_from_row(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        prefix=row.prefix,
        secret_hash=row.secret_hash,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def heartbeat_from_row(row: Any) -> EngineHeartbeat:
    return EngineHeartbeat(**(dict(row._mapping) | {"state": EngineState(row.state)}))


def heartbeat_values(beat: EngineHeartbeat) -> dict[str, Any]:
    return asdict(beat) | {"state": beat.state.value}


def audit_event_from_row(row: Any) -> AuditEvent:
    return AuditEvent(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        subject=row.subject,
        detail=row.detail,
    )


def secret_vault_from_row(row: Any) -> SecretVault:
    return SecretVault(
        id=row.id,
        name=row.name,
        provider=row.provider,
        vault_url=row.vault_url,
        auth=dict(row.auth),
        description=row.description,
        options=dict(row.options),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
