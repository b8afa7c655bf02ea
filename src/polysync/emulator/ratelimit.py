"""Per-endpoint token buckets on `/api/`, answering 429 REQUEST_LIMIT_EXCEEDED (reference §8)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, TypeAdapter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from polysync.clock import Clock
from polysync.emulator.control_io import read_body_as
from polysync.emulator.errors import REQUEST_LIMIT_EXCEEDED, ApiError, error_response
from polysync.emulator.stats import endpoint_key

# Requests per second per workspace, reference §8. These values are secondary sources themselves
# (UNCONFIRMED against the limits page); every other endpoint falls back to `default_rps`.
DEFAULT_PER_ENDPOINT_RPS: dict[str, float] = {
    "jobs/create": 20.0,
    "jobs/get": 20.0,
    "jobs/list": 20.0,
    "jobs/reset": 20.0,
    "jobs/run-now": 20.0,
    "jobs/delete": 10.0,
    "jobs/update": 10.0,
    "jobs/runs/get": 100.0,
}

# Float epoch seconds (~1.7e9) carry ~2.4e-7 s of resolution, so a refill that should give exactly
# one token may fall short by rps * 2.4e-7 of one; this tolerance (in seconds of refill) keeps
# "wait the Retry-After you were given" meaning "you get through".
_CLOCK_RESOLUTION_S = 1e-6


class RateLimitConfig(BaseModel):
    """Limits in requests per second; a bucket holds `rps * burst_s` tokens (at least one)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    per_endpoint_rps: dict[str, PositiveFloat] = Field(
        default_factory=lambda: dict(DEFAULT_PER_ENDPOINT_RPS)
    )
    # runs/list, runs/cancel, runs/cancel-all, runs/get-output have no published limit (reference
    # §8, UNCONFIRMED); 30 is our assumption, after "Databricks WebApp limits 30 calls/sec" (2020).
    default_rps: PositiveFloat = 30.0
    burst_s: PositiveFloat = 1.0

    def rps_for(self, endpoint: str) -> float:
        return self.per_endpoint_rps.get(endpoint, self.default_rps)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_s: float


class RateLimiter:
    """Token buckets per endpoint key, refilled on `clock`; the config can change at run time."""

    def __init__(self, config: RateLimitConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    @property
    def config(self) -> RateLimitConfig:
        return self._config

    def configure(self, config: RateLimitConfig) -> None:
        """Replace the limits; every bucket starts full again under the new capacities."""
        self._config = config
        self._buckets.clear()

    def try_acquire(self, endpoint: str) -> float | None:
        """Take a token: None if the request may go, else the seconds until a token is available."""
        config = self._config
        if not config.enabled:
            return None
        rps = config.rps_for(endpoint)
        capacity = max(1.0, rps * config.burst_s)
        now_s = self._clock.now()
        bucket = self._buckets.get(endpoint)
        if bucket is None:
            bucket = self._buckets[endpoint] = _Bucket(tokens=capacity, updated_s=now_s)
        else:
            elapsed_s = max(0.0, now_s - bucket.updated_s)
            bucket.tokens = min(capacity, bucket.tokens + elapsed_s * rps)
            bucket.updated_s = now_s
        if bucket.tokens >= 1.0 - rps * _CLOCK_RESOLUTION_S:
            bucket.tokens = max(0.0, bucket.tokens - 1.0)
            return None
        return (1.0 - bucket.tokens) / rps


def retry_after_header_s(wait_s: float) -> int:
    """Whole seconds for `Retry-After`: SDKs parse an integer (reference §7); 0 would spin."""
    return max(1, math.ceil(wait_s - _CLOCK_RESOLUTION_S))


class RateLimitMiddleware:
    """Pure ASGI: limits requests under `/api/`, answering 429 with an integer `Retry-After`."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            endpoint = endpoint_key(scope["path"])
            wait_s = self.limiter.try_acquire(endpoint)
            if wait_s is not None:
                retry_after_s = retry_after_header_s(wait_s)
                rps = self.limiter.config.rps_for(endpoint)
                response = error_response(
                    429,
                    REQUEST_LIMIT_EXCEEDED,
                    f"Too many requests to {endpoint}: the workspace limit is {rps:g} requests "
                    f"per second. Retry after {retry_after_s} s.",
                    headers={"Retry-After": str(retry_after_s)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


_CONFIG_ADAPTER = TypeAdapter(RateLimitConfig)


def ratelimit_routes(limiter: RateLimiter) -> list[Route]:
    """`GET /emulator/rate-limits` (the config) and `PUT` (replace it; omitted fields default)."""

    async def get_limits(request: Request) -> Response:
        return JSONResponse(limiter.config.model_dump(mode="json"))

    async def put_limits(request: Request) -> Response:
        try:
            config = await read_body_as(request, _CONFIG_ADAPTER)
        except ApiError as exc:
            return exc.to_response()
        limiter.configure(config)
        return JSONResponse(config.model_dump(mode="json"))

    return [
        Route("/emulator/rate-limits", get_limits, methods=["GET"]),
        Route("/emulator/rate-limits", put_limits, methods=["PUT"]),
    ]
