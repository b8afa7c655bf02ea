"""GET /health (no authentication) and GET /metrics (Prometheus text, any valid API key)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from polysync.api.deps import Context, Viewer
from polysync.api.metrics import render_metrics
from polysync.api.problems import Problem, problem_response
from polysync.api.schemas import HealthOut

router = APIRouter(tags=["system"])
log = logging.getLogger(__name__)
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": Problem}},
)
async def health(context: Context) -> Any:
    """Liveness and readiness: answers 200 when the database answers, 503 otherwise."""
    try:
        await context.store.ping()
    except Exception as exc:  # any driver error means "not ready"; the reason goes to the log
        log.warning("health check: database unreachable: %s", type(exc).__name__)
        return problem_response(503, "unhealthy", "The database cannot be reached.")
    return HealthOut(status="ok", database="ok")


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
