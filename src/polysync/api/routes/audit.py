"""The audit trail (admin): who changed which platform or job, newest first."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from polysync.api.deps import Admin, Context
from polysync.api.problems import Problem
from polysync.api.schemas import AuditEventOut

router = APIRouter(prefix="/api/v1/audit-events", tags=["audit"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (401, 403, 422, 429)
}
MAX_LIMIT = 1000


@router.get("", response_model=list[AuditEventOut], responses=_ERRORS)
async def list_audit_events(
    context: Context,
    caller: Admin,
    subject_type: Annotated[
        Literal["platform", "job", "contention_profile"] | None, Query()
    ] = None,
    subject_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> list[AuditEventOut]:
    """Platform and job changes with the API key, web user or CLI user that made them. Who
    executed and who cancelled each run is on the run (`executed_by`, `cancelled_by`)."""
    events = await context.store.list_audit_events(
        subject_type=subject_type, subject_id=subject_id, limit=limit
    )
    return [AuditEventOut.of(event) for event in events]
