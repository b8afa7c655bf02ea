"""Request statistics: per-endpoint counts and a bounded log of recent requests."""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from polysync.clock import Clock
from polysync.emulator.errors import INVALID_PARAMETER_VALUE, error_response

CONTROL_PLANE_PREFIX = "/emulator/"
"""Paths of the emulator's own control plane: never counted, faulted, limited or guarded."""

FAULT_SCOPE_KEY = "polysync.fault"
DETAIL_SCOPE_KEY = "polysync.detail"
"""ASGI scope key where an inner middleware notes the fault it applied (see `note_fault`)."""

DEFAULT_RECENT_LIMIT = 100

_API_PREFIXES = ("/api/2.0/", "/api/2.1/", "/api/2.2/")
_API_PREFIX_LEN = len(_API_PREFIXES[0])


def endpoint_key(path: str) -> str:
    """`/api/2.2/jobs/runs/get` -> `jobs/runs/get`: versions share a key, as they share a limit."""
    if path.startswith(_API_PREFIXES):
        return path[_API_PREFIX_LEN:]
    return path


def note_fault(scope: Scope, label: str, *, answered: bool = True) -> None:
    """Tell `StatsMiddleware` a fault shaped this request; `answered=False`: no HTTP answer left."""
    # The scope dict is shared by every pure-ASGI layer, so a note written inside is read outside.
    scope[FAULT_SCOPE_KEY] = (label, answered)


def note_detail(scope: Scope, detail: str) -> None:
    """What an endpoint did, for the request log (e.g. the tasks a runs/repair reruns)."""
    scope[DETAIL_SCOPE_KEY] = detail


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the client saw it; `status` 0 means the client got no HTTP answer."""

    time_s: float
    method: str
    path: str
    query: str
    status: int
    duration_ms: float
    fault: str | None = None
    detail: str | None = None
    """What the endpoint did, when it says (`note_detail`): "rerun: a, b" for runs/repair."""

    def to_json(self) -> dict[str, Any]:
        return {
            "time_s": self.time_s,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "duration_ms": round(self.duration_ms, 3),
            "fault": self.fault,
            "detail": self.detail,
        }


class RequestStats:
    """Counts by (endpoint, method, status) and the last `max_recent` requests."""

    def __init__(self, max_recent: int = 10_000) -> None:
        if max_recent < 1:
            raise ValueError(f"max_recent must be >= 1, got {max_recent}")
        self._counts: Counter[tuple[str, str, int]] = Counter()
        self._recent: deque[RequestRecord] = deque(maxlen=max_recent)

    def record(self, record: RequestRecord) -> None:
        self._counts[(endpoint_key(record.path), record.method, record.status)] += 1
        self._recent.append(record)

    def count(
        self, endpoint: str | None = None, *, method: str | None = None, status: int | None = None
    ) -> int:
        """Requests seen, optionally only for one endpoint key, method and/or status."""
        return sum(
            n
            for (ep, meth, st), n in self._counts.items()
            if (endpoint is None or ep == endpoint)
            and (method is None or meth == method)
            and (status is None or st == status)
        )

    def summary(self) -> dict[str, Any]:
        """`{"endpoints": {key: {"total", "by_status", "by_method"}}, "total": n}`."""
        endpoints: dict[str, dict[str, Any]] = {}
        for (endpoint, method, status), n in sorted(self._counts.items()):
            entry = endpoints.setdefault(endpoint, {"total": 0, "by_status": {}, "by_method": {}})
            entry["total"] += n
            entry["by_status"][str(status)] = entry["by_status"].get(str(status), 0) + n
            entry["by_method"][method] = entry["by_method"].get(method, 0) + n
        return {"endpoints": endpoints, "total": sum(self._counts.values())}

    def recent(self, limit: int | None = None) -> list[RequestRecord]:
        """The latest `limit` requests (all kept ones if None), most recent last."""
        if limit is None:
            return list(self._recent)
        newest_first = list(itertools.islice(reversed(self._recent), limit))
        newest_first.reverse()
        return newest_first

    def reset(self) -> None:
        self._counts.clear()
        self._recent.clear()


class StatsMiddleware:
    """Pure ASGI: records each request outside the control plane once answered; never buffers."""

    def __init__(self, app: ASGIApp, stats: RequestStats, clock: Clock) -> None:
        self.app = app
        self.stats = stats
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PLANE_PREFIX):
            await self.app(scope, receive, send)
            return
        time_s = self.clock.now()
        started = time.perf_counter()
        status = 0

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            # An app that fails (or returns) before answering gets uvicorn's 500.
            fault: str | None = None
            note = scope.get(FAULT_SCOPE_KEY)
            if note is not None:
                fault, answered = note
                if not answered:
                    status = 0
            elif status == 0:
                status = 500
            self.stats.record(
                RequestRecord(
                    time_s=time_s,
                    method=scope["method"],
                    path=scope["path"],
                    query=scope["query_string"].decode("latin-1"),
                    status=status,
                    duration_ms=(time.perf_counter() - started) * 1000.0,
                    fault=fault,
                    detail=scope.get(DETAIL_SCOPE_KEY),
                )
            )


def stats_routes(stats: RequestStats) -> list[Route]:
    """`GET /emulator/stats`, `GET /emulator/requests?limit=N`, `POST /emulator/stats/reset`."""

    async def get_stats(request: Request) -> Response:
        return JSONResponse(stats.summary())

    async def get_requests(request: Request) -> Response:
        raw = request.query_params.get("limit", str(DEFAULT_RECENT_LIMIT))
        if not (raw.isascii() and raw.isdigit()):
            return error_response(
                400, INVALID_PARAMETER_VALUE, f"limit must be a non-negative integer, got {raw!r}."
            )
        return JSONResponse({"requests": [r.to_json() for r in stats.recent(int(raw))]})

    async def reset_stats(request: Request) -> Response:
        stats.reset()
        return JSONResponse({})

    return [
        Route("/emulator/stats", get_stats, methods=["GET"]),
        Route("/emulator/requests", get_requests, methods=["GET"]),
        Route("/emulator/stats/reset", reset_stats, methods=["POST"]),
    ]
