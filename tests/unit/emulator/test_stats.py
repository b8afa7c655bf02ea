"""StatsMiddleware and the stats routes, driven in-process on a manual clock."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from polysync.clock import ManualClock
from polysync.emulator.stats import (
    RequestRecord,
    RequestStats,
    StatsMiddleware,
    endpoint_key,
    note_fault,
    stats_routes,
)


async def runs_get(request: Request) -> Response:
    return JSONResponse({"run_id": 1})


async def teapot(request: Request) -> Response:
    return PlainTextResponse("no", status_code=418)


async def crash(request: Request) -> Response:
    raise RuntimeError("the app failed")


def build(stats: RequestStats, clock: ManualClock) -> StatsMiddleware:
    inner = Starlette(
        routes=[
            Route("/api/2.2/jobs/runs/get", runs_get),
            Route("/api/2.1/jobs/runs/get", runs_get),
            Route("/api/2.2/jobs/tea", teapot, methods=["POST"]),
            Route("/api/2.2/jobs/crash", crash),
            *stats_routes(stats),
        ]
    )
    return StatsMiddleware(inner, stats, clock)


def client(app: StatsMiddleware) -> httpx.AsyncClient:
    # raise_app_exceptions=False: the crash route answers 500, as uvicorn would.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://emulator.test")


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/api/2.2/jobs/runs/get", "jobs/runs/get"),
        ("/api/2.1/jobs/run-now", "jobs/run-now"),
        ("/api/2.0/jobs/list", "jobs/list"),
        ("/api/2.3/jobs/list", "/api/2.3/jobs/list"),
        ("/api/2.2", "/api/2.2"),
        ("/oidc/v1/token", "/oidc/v1/token"),
    ],
)
def test_endpoint_key_strips_only_known_api_versions(path: str, key: str) -> None:
    assert endpoint_key(path) == key


@given(version=st.sampled_from(["2.0", "2.1", "2.2"]), rest=st.text(min_size=1))
def test_endpoint_key_is_the_path_after_the_version(version: str, rest: str) -> None:
    assert endpoint_key(f"/api/{version}/{rest}") == rest


@given(path=st.text().filter(lambda p: not p.startswith("/api/")))
def test_endpoint_key_leaves_other_paths_alone(path: str) -> None:
    assert endpoint_key(path) == path


async def test_counts_by_endpoint_status_and_method_across_versions() -> None:
    stats = RequestStats()
    async with client(build(stats, ManualClock())) as http:
        for path in ("/api/2.2/jobs/runs/get", "/api/2.2/jobs/runs/get", "/api/2.1/jobs/runs/get"):
            assert (await http.get(path, params={"run_id": 7})).status_code == 200
        assert (await http.post("/api/2.2/jobs/tea")).status_code == 418
        assert (await http.get("/api/2.2/jobs/crash")).status_code == 500
        summary = (await http.get("/emulator/stats")).json()
    assert summary == {
        "endpoints": {
            "jobs/crash": {"total": 1, "by_status": {"500": 1}, "by_method": {"GET": 1}},
            "jobs/runs/get": {"total": 3, "by_status": {"200": 3}, "by_method": {"GET": 3}},
            "jobs/tea": {"total": 1, "by_status": {"418": 1}, "by_method": {"POST": 1}},
        },
        "total": 5,
    }
    assert stats.count("jobs/runs/get", method="GET", status=200) == 3
    assert stats.count(status=500) == 1
    assert stats.count("jobs/runs/get", method="POST") == 0


async def test_control_plane_requests_are_not_counted() -> None:
    stats = RequestStats()
    async with client(build(stats, ManualClock())) as http:
        await http.get("/api/2.2/jobs/runs/get")
        first = (await http.get("/emulator/stats")).json()
        second = (await http.get("/emulator/stats")).json()
        await http.get("/emulator/requests")
    assert first == second
    assert first["total"] == 1


async def test_recent_log_is_bounded_and_ordered_oldest_first() -> None:
    stats = RequestStats(max_recent=3)
    clock = ManualClock(start_s=1000.0)
    async with client(build(stats, clock)) as http:
        for run_id in range(5):
            await http.get("/api/2.2/jobs/runs/get", params={"run_id": run_id})
            clock.advance(1.0)
    kept = stats.recent()
    assert [r.query for r in kept] == ["run_id=2", "run_id=3", "run_id=4"]
    assert [r.time_s for r in kept] == [1002.0, 1003.0, 1004.0]
    assert {(r.method, r.path, r.status, r.fault) for r in kept} == {
        ("GET", "/api/2.2/jobs/runs/get", 200, None)
    }
    assert stats.count() == 5  # counts outlive the log


async def test_requests_route_returns_the_latest_n_most_recent_last() -> None:
    stats = RequestStats()
    async with client(build(stats, ManualClock())) as http:
        for run_id in range(4):
            await http.get("/api/2.2/jobs/runs/get", params={"run_id": run_id})
        latest = (await http.get("/emulator/requests", params={"limit": 2})).json()["requests"]
        none = (await http.get("/emulator/requests", params={"limit": 0})).json()["requests"]
        bad = await http.get("/emulator/requests", params={"limit": "-1"})
    assert [r["query"] for r in latest] == ["run_id=2", "run_id=3"]
    assert set(latest[0]) == {
        "time_s",
        "method",
        "path",
        "query",
        "status",
        "duration_ms",
        "fault",
        "detail",
    }
    assert latest[0]["detail"] is None  # only endpoints that say what they did fill it
    assert none == []
    assert bad.status_code == 400
    assert bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"


async def test_reset_clears_counts_and_log() -> None:
    stats = RequestStats()
    async with client(build(stats, ManualClock())) as http:
        await http.get("/api/2.2/jobs/runs/get")
        assert (await http.post("/emulator/stats/reset")).status_code == 200
        assert (await http.get("/emulator/stats")).json() == {"endpoints": {}, "total": 0}
    assert stats.recent() == []


async def test_streamed_body_chunks_pass_through_one_by_one() -> None:
    stats = RequestStats()
    forwarded: list[Message] = []

    async def streaming_app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        # Unbuffered: the first chunk has reached the server before the app sends the next one.
        assert [m.get("body") for m in forwarded[1:]] == [b"first"]
        await send({"type": "http.response.body", "body": b"second", "more_body": False})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        forwarded.append(message)

    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/2.2/jobs/runs/get",
        "query_string": b"",
        "headers": [],
    }
    await StatsMiddleware(streaming_app, stats, ManualClock())(scope, receive, send)
    assert [m.get("body") for m in forwarded[1:]] == [b"first", b"second"]
    assert stats.count("jobs/runs/get", status=200) == 1


@pytest.mark.parametrize(("answered", "recorded_status"), [(True, 503), (False, 0)])
async def test_a_noted_fault_is_logged_and_unanswered_requests_count_as_status_0(
    answered: bool, recorded_status: int
) -> None:
    stats = RequestStats()

    async def faulty_app(scope: Scope, receive: Receive, send: Send) -> None:
        note_fault(scope, "some fault", answered=answered)
        await PlainTextResponse("x", status_code=503)(scope, receive, send)

    async with client(StatsMiddleware(faulty_app, stats, ManualClock())) as http:
        await http.get("/api/2.2/jobs/get")
    [record] = stats.recent()
    assert (record.status, record.fault) == (recorded_status, "some fault")


def test_record_json_rounds_duration() -> None:
    record = RequestRecord(1.0, "GET", "/p", "a=1", 200, 1.23456789)
    assert record.to_json()["duration_ms"] == 1.235


def test_max_recent_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_recent"):
        RequestStats(max_recent=0)
