"""GET /health (no authentication) and GET /metrics (Prometheus text, any valid API key)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from polysync.api.deps import Context, Viewer
from polysync.api.metrics import render_metrics
from polysync.api.problems import Problem, problem_response
from polysync.api.schemas import EngineHealthOut, HealthOut
from polysync.domain.records import EngineState, utc

router = APIRouter(tags=["system"])
log = logging.getLogger(__name__)
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": Problem}},
)
async def health(context: Context) -> Any:
    """Liveness and readiness: 200 when the database answers and this process's engine (if it
    runs one) cycles; 503 when the database cannot be reached, or the engine is stopped, crashed
    or stalled (no successful cycle for its `stall_after_s`). Reports the engine's state, last
    cycle and the poll lag."""
    services = context.services
    try:
        await context.store.ping()
        lags_s = [*await context.store.poll_lags_s(services.now()), *services.engine.poll_lags_s()]
    except Exception as exc:  # any driver error means "not ready"; the reason goes to the log
        log.warning("health check: database unreachable: %s", type(exc).__name__)
        return problem_response(503, "unhealthy", "The database cannot be reached.")
    # Reads go on working when writes no longer do (a read-only file, a full disk): checked too.
    unwritable = await context.store.write_problem()
    if unwritable is not None:
        log.warning("health check: %s", unwritable)
        return problem_response(503, "database-unwritable", unwritable)
    engine = services.engine
    now_s = services.clock.now()
    state = engine.health
    engine_out = None
    if state.state is not None:
        engine_out = EngineHealthOut(
            owner=engine.owner,
            state=state.state.value,
            last_cycle_at=utc(state.last_cycle_at_s) if state.last_cycle_at_s else None,
            last_cycle_age_s=(
                round(now_s - state.last_cycle_at_s, 3) if state.last_cycle_at_s else None
            ),
            cycles=state.cycles,
            failures=state.failures,
            last_error=state.last_error,
            restarts=state.restarts,
        )
        stalled = state.is_stalled(now_s, engine.settings.stall_after_s)
        if stalled or state.state in (EngineState.STOPPED, EngineState.CRASHED):
            since = engine_out.last_cycle_age_s
            detail = (
                f"The engine {engine.owner} is {'stalled' if stalled else state.state.value}"
                + (f": its last cycle ended {since:.0f} s ago" if since is not None else "")
                + (f"; last error: {state.last_error}" if state.last_error else "")
                + "."
            )
            return problem_response(503, "engine-unhealthy", detail)
    return HealthOut(
        status="ok",
        database="ok",
        engine=engine_out,
        poll_lag_s=round(max(lags_s, default=0.0), 3),
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {PROMETHEUS_TEXT: {}}},
        401: {"model": Problem},
        403: {"model": Problem},
    },
)
async def metrics(context: Context, caller: Viewer) -> Response:
    """Prometheus text: Databricks calls by endpoint and status, 429s, retries, runs by status,
    poll lag. Any valid API key may scrape (a viewer key is enough)."""
    body = await render_metrics(context.services, context.store)
    return Response(body, media_type=PROMETHEUS_TEXT)
