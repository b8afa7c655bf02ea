"""Token-bucket rate limits: refilled by advancing a manual clock, never by sleeping."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from polysync.clock import ManualClock
from polysync.emulator.ratelimit import (
    RateLimitConfig,
    RateLimiter,
    RateLimitMiddleware,
    ratelimit_routes,
)


async def echo(request: Request) -> Response:
    return JSONResponse({"path": request.url.path})


def build(config: RateLimitConfig, clock: ManualClock) -> tuple[httpx.AsyncClient, RateLimiter]:
    limiter = RateLimiter(config, clock)
    inner = Starlette(
        routes=[
            Route("/api/{rest:path}", echo, methods=["GET", "POST"]),
            Route("/oidc/v1/token", echo, methods=["POST"]),
            *ratelimit_routes(limiter),
        ]
    )
    transport = httpx.ASGITransport(app=RateLimitMiddleware(inner, limiter))
    return httpx.AsyncClient(transport=transport, base_url="http://emulator.test"), limiter


async def statuses(http: httpx.AsyncClient, path: str, n: int) -> list[int]:
    return [(await http.get(path)).status_code for _ in range(n)]


def test_defaults_are_the_reference_limits() -> None:
    config = RateLimitConfig()
    assert config.enabled
    assert config.burst_s == 1.0
    for endpoint in ("jobs/create", "jobs/get", "jobs/list", "jobs/reset", "jobs/run-now"):
        assert config.rps_for(endpoint) == 20
    assert config.rps_for("jobs/delete") == config.rps_for("jobs/update") == 10
    assert config.rps_for("jobs/runs/get") == 100
    for endpoint in ("jobs/runs/list", "jobs/runs/cancel", "jobs/runs/get-output"):
        assert config.rps_for(endpoint) == 30


async def test_bucket_empties_then_refills_with_the_clock() -> None:
    clock = ManualClock()
    http, _ = build(RateLimitConfig(per_endpoint_rps={"jobs/get": 2}), clock)
    async with http:
        assert await statuses(http, "/api/2.2/jobs/get", 2) == [200, 200]
        refused = await http.get("/api/2.2/jobs/get")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert refused.json() == {
            "error_code": "REQUEST_LIMIT_EXCEEDED",
            "message": "Too many requests to jobs/get: the workspace limit is 2 requests per "
            "second. Retry after 1 s.",
        }
        clock.advance(0.5)  # one token at 2 rps
        assert await statuses(http, "/api/2.2/jobs/get", 2) == [200, 429]
        clock.advance(10.0)  # refills only up to the capacity
        assert await statuses(http, "/api/2.2/jobs/get", 3) == [200, 200, 429]


async def test_api_versions_share_one_bucket_and_endpoints_do_not() -> None:
    http, _ = build(
        RateLimitConfig(per_endpoint_rps={"jobs/runs/get": 1, "jobs/list": 1}), ManualClock()
    )
    async with http:
        assert (await http.get("/api/2.1/jobs/runs/get")).status_code == 200
        assert (await http.get("/api/2.2/jobs/runs/get")).status_code == 429
        assert (await http.get("/api/2.0/jobs/list")).status_code == 200


async def test_unlisted_api_endpoints_use_the_default_rate() -> None:
    http, _ = build(RateLimitConfig(default_rps=1), ManualClock())
    async with http:
        assert await statuses(http, "/api/2.2/jobs/runs/list", 2) == [200, 429]
        assert await statuses(http, "/api/2.2/jobs/runs/cancel-all", 2) == [200, 429]


async def test_only_api_paths_are_limited() -> None:
    http, _ = build(RateLimitConfig(per_endpoint_rps={}, default_rps=1), ManualClock())
    async with http:
        assert {(await http.post("/oidc/v1/token")).status_code for _ in range(20)} == {200}
        assert {(await http.get("/emulator/rate-limits")).status_code for _ in range(20)} == {200}


async def test_slow_rates_give_whole_second_retry_after() -> None:
    http, _ = build(RateLimitConfig(per_endpoint_rps={"jobs/get": 0.25}), ManualClock())
    async with http:
        await http.get("/api/2.2/jobs/get")
        refused = await http.get("/api/2.2/jobs/get")
    assert refused.headers["Retry-After"] == "4"
    assert "limit is 0.25 requests per second. Retry after 4 s." in refused.json()["message"]


async def test_burst_sets_the_capacity() -> None:
    http, _ = build(RateLimitConfig(per_endpoint_rps={"jobs/get": 3}, burst_s=2), ManualClock())
    async with http:
        assert await statuses(http, "/api/2.2/jobs/get", 7) == [200] * 6 + [429]


async def test_disabled_limits_let_everything_through() -> None:
    http, _ = build(RateLimitConfig(enabled=False, default_rps=1), ManualClock())
    async with http:
        assert set(await statuses(http, "/api/2.2/jobs/get", 50)) == {200}


async def test_control_plane_reads_and_replaces_the_config() -> None:
    http, limiter = build(RateLimitConfig(), ManualClock())
    async with http:
        assert (await http.get("/emulator/rate-limits")).json() == RateLimitConfig().model_dump()
        assert await statuses(http, "/api/2.2/jobs/get", 2) == [200, 200]
        put = await http.put(
            "/emulator/rate-limits", json={"per_endpoint_rps": {"jobs/get": 1}, "default_rps": 5}
        )
        assert put.status_code == 200
        assert put.json()["per_endpoint_rps"] == {"jobs/get": 1.0}
        # Replaced, not merged: runs/get lost its own limit and now uses the default of 5.
        assert await statuses(http, "/api/2.2/jobs/get", 2) == [200, 429]
        assert await statuses(http, "/api/2.2/jobs/runs/get", 6) == [200] * 5 + [429]
    assert limiter.config.default_rps == 5


@pytest.mark.parametrize(
    ("body", "error_code", "mentions"),
    [
        ({"default_rps": 0}, "INVALID_PARAMETER_VALUE", "default_rps"),
        ({"per_endpoint_rps": {"jobs/get": -1}}, "INVALID_PARAMETER_VALUE", "jobs/get"),
        ({"burst": 2}, "INVALID_PARAMETER_VALUE", "burst"),
        (b"{not json", "MALFORMED_REQUEST", "not valid JSON"),
    ],
)
async def test_control_plane_refuses_bad_configs(
    body: object, error_code: str, mentions: str
) -> None:
    http, limiter = build(RateLimitConfig(), ManualClock())
    async with http:
        if isinstance(body, bytes):
            answer = await http.put("/emulator/rate-limits", content=body)
        else:
            answer = await http.put("/emulator/rate-limits", json=body)
    assert answer.status_code == 400
    assert answer.json()["error_code"] == error_code
    assert mentions in answer.json()["message"]
    assert limiter.config == RateLimitConfig()


@given(
    rps=st.floats(min_value=0.1, max_value=200),
    burst_s=st.floats(min_value=0.1, max_value=5),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=3), st.integers(min_value=0, max_value=30)),
        max_size=30,
    ),
)
def test_never_more_than_capacity_plus_refill(
    rps: float, burst_s: float, steps: list[tuple[float, int]]
) -> None:
    clock = ManualClock()
    limiter = RateLimiter(RateLimitConfig(default_rps=rps, burst_s=burst_s), clock)
    capacity = max(1.0, rps * burst_s)
    elapsed_s = 0.0
    allowed = 0
    for advance_s, requests in steps:
        clock.advance(advance_s)
        elapsed_s += advance_s
        for _ in range(requests):
            wait_s = limiter.try_acquire("jobs/runs/list")
            if wait_s is None:
                allowed += 1
            else:
                assert 0 < wait_s <= 1 / rps + 1e-9
        assert allowed <= capacity + elapsed_s * rps + 1e-3


@given(rps=st.floats(min_value=0.1, max_value=200), drain=st.integers(min_value=1, max_value=500))
def test_a_refused_caller_that_waits_the_given_time_gets_through(rps: float, drain: int) -> None:
    clock = ManualClock()
    limiter = RateLimiter(RateLimitConfig(default_rps=rps), clock)
    wait_s = None
    for _ in range(drain):
        wait_s = limiter.try_acquire("jobs/runs/list")
        if wait_s is not None:
            break
    if wait_s is not None:
        clock.advance(wait_s)
        assert limiter.try_acquire("jobs/runs/list") is None
