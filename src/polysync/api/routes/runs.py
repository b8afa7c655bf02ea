"""Runs: list and read (with long poll), a live event stream (viewer); cancel, repair (operator)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from polysync.api.deps import Context, Operator, ServicesDep, Viewer
from polysync.api.problems import JSONResponse, Problem
from polysync.api.schemas import CancelOut, EventOut, RepairRunOut, RunOut, RunSummary
from polysync.domain.access import Actor
from polysync.domain.models import RunStatus
from polysync.domain.records import RunEvent, RunFilter
from polysync.errors import UsageError
from polysync.services import Services

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])
RunId = Annotated[int, Path(ge=1, le=2**63 - 1)]
_ID = Annotated[int | None, Query(ge=1, le=2**63 - 1)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 409, 422)
}
MAX_LIMIT = 1000


@router.get("", response_model=list[RunSummary], responses=_ERRORS)
async def list_runs(
    services: ServicesDep,
    caller: Viewer,
    job_id: _ID = None,
    platform_id: _ID = None,
    status: Annotated[list[RunStatus] | None, Query(description="Repeat for several.")] = None,
    created_after: Annotated[datetime | None, Query(description="Inclusive, ISO 8601.")] = None,
    created_before: Annotated[datetime | None, Query(description="Exclusive, ISO 8601.")] = None,
    active: Annotated[bool, Query(description="Only runs not yet terminal.")] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> list[RunSummary]:
    """Newest first; the created window is [created_after, created_before)."""
    for moment, name in ((created_after, "created_after"), (created_before, "created_before")):
        if moment is not None and moment.utcoffset() is None:
            raise UsageError(f"{name} needs a time zone, e.g. 2026-01-31T12:00:00Z.")
    where = RunFilter(
        job_id=job_id,
        platform_id=platform_id,
        statuses=tuple(status or ()),
        created_after=created_after,
        created_before=created_before,
        active_only=active,
        limit=limit,
    )
    return [RunSummary.of(run) for run in await services.list_runs(where)]


@router.get("/{run_id}", response_model=RunOut, responses=_ERRORS)
async def read_run(
    run_id: RunId,
    context: Context,
    caller: Viewer,
    wait: Annotated[
        float,
        Query(ge=0, le=60, description="Long poll: hold up to this many seconds for a change."),
    ] = 0,
    since: Annotated[
        int | None,
        Query(ge=0, le=2**63 - 1, description="The `last_event_id` the caller already has."),
    ] = None,
) -> RunOut:
    """The run with its per-task states and status history. With `wait` and `since`, answers
    as soon as the run has an event after `since` (or is terminal), else after `wait` seconds."""
    services = context.services
    run, job, events = await services.run_details(run_id)
    limit_s = min(wait, context.settings.max_wait_s)

    def waiting() -> bool:
        return (
            since is not None
            and not run.is_terminal
            and (not events or events[-1].id <= since)
            and waited_s < limit_s
        )

    waited_s = 0.0
    if waiting():
        with context.stream_slot(caller):  # held open: counted (429 past the caps)
            while waiting():
                step_s = min(context.settings.live_poll_s, limit_s - waited_s)
                await services.clock.sleep(step_s)
                waited_s += step_s
                run, job, events = await services.run_details(run_id)
    return RunOut.of_details(run, job, events)


@router.get(
    "/{run_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
)
async def run_events(
    run_id: RunId,
    context: Context,
    caller: Viewer,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> StreamingResponse:
    """Server-Sent Events: one `status` event per status change (id = the event's id; data = the
    run), then `end` when the run is terminal. Reconnecting with `Last-Event-ID` resumes."""
    await context.services.store.get_run(run_id)  # 404 before the stream starts
    slot = context.stream_slot(caller)  # 429 past the caps, before the stream starts
    stream = _stream(context.services, run_id, last_event_id or 0, context.settings.live_poll_s)
    return _HeldStream(
        slot,
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class _HeldStream(StreamingResponse):
    """A stream that holds its slot for as long as it is being sent, however it ends."""

    def __init__(self, slot: AbstractContextManager[None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self._slot:
            await super().__call__(scope, receive, send)


async def _stream(
    services: Services, run_id: int, after_id: int, poll_s: float
) -> AsyncIterator[str]:
    yield f"retry: {round(poll_s * 1000)}\n\n"
    while True:
        run, job, events = await services.run_details(run_id)
        fresh = [e for e in events if e.id > after_id]
        if fresh:
            data = RunOut.of_details(run, job, events).model_dump(mode="json")
            for event in fresh[:-1]:
                yield _sse("status", event.id, {"id": run.id, "event": _event_json(event)})
            after_id = fresh[-1].id
            yield _sse("status", after_id, data)
        if run.is_terminal:
            yield _sse("end", after_id, {"id": run.id, "status": run.status.value})
            return
        await services.clock.sleep(poll_s)


def _event_json(event: RunEvent) -> dict[str, Any]:
    return EventOut.of(event).model_dump(mode="json")


def _sse(kind: str, event_id: int, data: dict[str, Any]) -> str:
    return f"event: {kind}\nid: {event_id}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.post(
    "/{run_id}/cancel",
    status_code=202,
    response_model=CancelOut,
    responses={**_ERRORS, 409: {"model": Problem}},
)
async def cancel_run(run_id: RunId, services: ServicesDep, caller: Operator) -> JSONResponse:
    """Ask Databricks to cancel (D10): 202 once requested; the final status follows on the run.
    A run already terminal answers 409 (services' ConflictError) and nothing is sent."""
    cancelled = await services.cancel(run_id, actor=Actor.of_key(caller))
    body = CancelOut(
        detail=f"Cancellation of run {cancelled.id} requested; it is {cancelled.status.value} "
        "until Databricks confirms.",
        run=RunSummary.of(cancelled),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=202)


@router.post(
    "/{run_id}/repair",
    status_code=202,
    response_model=RepairRunOut,
    responses={**_ERRORS, 502: {"model": Problem}},
)
async def repair_run(run_id: RunId, services: ServicesDep, caller: Operator) -> JSONResponse:
    """Repair a Failed or Cancelled run (D13): its failed and skipped tasks rerun in the same
    Databricks run (`jobs/runs/repair`). 202 once recorded: the run is Running again, an
    engine sends the repair once and the run follows it to its new end. 409 for any other run
    or a Job Type whose runs cannot be repaired; nothing is recorded then."""
    repaired = await services.repair_run(run_id, actor=Actor.of_key(caller))
    assert repaired.repair is not None
    body = RepairRunOut(
        detail=f"{repaired.repair.describe()}; run {repaired.id} is Running until the repaired "
        "Databricks run ends.",
        run=RunSummary.of(repaired),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=202)
