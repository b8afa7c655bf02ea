"""Fault injection in-process: error shapes, counting rules, latency, drops and lost answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from polysync.clock import ManualClock
from polysync.emulator.faults import (
    ConnectionDropped,
    Fault,
    FaultInjector,
    FaultMiddleware,
    fault_routes,
)
from polysync.emulator.serving import InProcessTransport
from polysync.emulator.stats import RequestStats, StatsMiddleware

BASE_URL = "http://emulator.test"


class Workspace:
    """A stand-in for the Jobs API: counts the runs it started, so side effects are visible."""

    def __init__(self) -> None:
        self.runs_started = 0
        self.slept_s: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept_s.append(seconds)

    def app(self, injector: FaultInjector) -> FaultMiddleware:
        async def run_now(request: Request) -> Response:
            self.runs_started += 1
            return JSONResponse({"run_id": self.runs_started})

        async def get_job(request: Request) -> Response:
            return JSONResponse({"job_id": 1})

        inner = Starlette(
            routes=[
                Route("/api/2.2/jobs/run-now", run_now, methods=["POST"]),
                Route("/api/2.2/jobs/get", get_job, methods=["GET"]),
                *fault_routes(injector),
            ]
        )
        return FaultMiddleware(inner, injector, sleep=self.sleep)


def in_process(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=InProcessTransport(app=app), base_url=BASE_URL)


@pytest.fixture
def workspace() -> Workspace:
    return Workspace()


async def test_status_fault_answers_without_calling_the_app(workspace: Workspace) -> None:
    injector = FaultInjector()
    injector.add(Fault(path="jobs/run-now$", kind="status", status=503, retry_after_s=7))
    async with in_process(workspace.app(injector)) as http:
        answer = await http.post("/api/2.2/jobs/run-now", json={"job_id": 1})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "7"
    assert answer.json() == {
        "error_code": "TEMPORARILY_UNAVAILABLE",
        "message": "The service is temporarily unavailable. Please try again later.",
    }
    assert workspace.runs_started == 0


@pytest.mark.parametrize(
    ("shape", "content_type", "body"),
    [
        ("json", "application/json", b'{"error_code": "PERMISSION_DENIED", "message": "No way."}'),
        ("text", "text/plain", b"PERMISSION_DENIED: No way."),
        ("numeric", "application/json", b'{"error_code": 403, "message": "No way."}'),
        ("empty", None, b""),
    ],
)
async def test_status_fault_body_shapes(
    workspace: Workspace, shape: str, content_type: str | None, body: bytes
) -> None:
    injector = FaultInjector()
    injector.add(
        Fault.model_validate(
            {
                "path": "jobs/get$",
                "kind": "status",
                "status": 403,
                "error_code": "PERMISSION_DENIED",
                "message": "No way.",
                "body": shape,
            }
        )
    )
    async with in_process(workspace.app(injector)) as http:
        answer = await http.get("/api/2.2/jobs/get")
    assert answer.status_code == 403
    assert answer.content == body
    assert (answer.headers.get("content-type") or "").startswith(content_type or "")
    if shape == "numeric":
        assert answer.headers["X-Databricks-Reason-Phrase"] == "No way."


async def test_html_fault_is_a_jetty_page(workspace: Workspace) -> None:
    injector = FaultInjector()
    injector.add(
        Fault(
            path="jobs/get$",
            kind="status",
            status=403,
            message="Invalid access token.",
            body="html",
        )
    )
    async with in_process(workspace.app(injector)) as http:
        answer = await http.get("/api/2.2/jobs/get")
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert "<title>Error 403 Invalid access token.</title>" in page
    assert "<h2>HTTP ERROR 403</h2>" in page
    assert "Problem accessing /api/2.2/jobs/get. Reason:" in page
    assert "<pre>Invalid access token.</pre>" in page


async def test_method_and_path_must_both_match(workspace: Workspace) -> None:
    injector = FaultInjector()
    injector.add(Fault(method="get", path="jobs/run-now$", kind="status", status=500))
    injector.add(Fault(method="POST", path="jobs/get$", kind="status", status=500))
    async with in_process(workspace.app(injector)) as http:
        assert (await http.post("/api/2.2/jobs/run-now")).status_code == 200
        assert (await http.get("/api/2.2/jobs/get")).status_code == 200
    assert [s.matched for s in injector.list()] == [0, 0]


async def test_skip_then_times(workspace: Workspace) -> None:
    injector = FaultInjector()
    fault_id = injector.add(Fault(path="run-now", kind="status", status=500, skip=1, times=2))
    async with in_process(workspace.app(injector)) as http:
        codes = [(await http.post("/api/2.2/jobs/run-now")).status_code for _ in range(5)]
    assert codes == [200, 500, 500, 200, 200]
    [state] = injector.list()
    assert (state.fault_id, state.matched, state.applied) == (fault_id, 3, 2)


async def test_first_installed_fault_wins_and_exhausted_ones_step_aside(
    workspace: Workspace,
) -> None:
    injector = FaultInjector()
    injector.add(Fault(path="jobs/get$", kind="status", status=429, times=1))
    injector.add(Fault(path="jobs/get$", kind="status", status=503))
    async with in_process(workspace.app(injector)) as http:
        codes = [(await http.get("/api/2.2/jobs/get")).status_code for _ in range(3)]
    assert codes == [429, 503, 503]


def test_probability_is_deterministic_for_a_seed() -> None:
    def pattern(seed: int) -> list[bool]:
        injector = FaultInjector(seed=seed)
        injector.add(Fault(path="jobs/get$", kind="status", probability=0.5))
        return [injector.match("GET", "/api/2.2/jobs/get") is not None for _ in range(200)]

    assert pattern(7) == pattern(7)
    assert pattern(7) != pattern(8)
    assert 0 < sum(pattern(7)) < 200


@given(
    times=st.none() | st.integers(min_value=1, max_value=20),
    skip=st.integers(min_value=0, max_value=20),
    requests=st.integers(min_value=0, max_value=50),
)
def test_applied_count_follows_skip_and_times(times: int | None, skip: int, requests: int) -> None:
    injector = FaultInjector()
    injector.add(Fault(path="run-now", kind="drop", times=times, skip=skip))
    applied = sum(
        injector.match("POST", "/api/2.2/jobs/run-now") is not None for _ in range(requests)
    )
    through = max(0, requests - skip)
    assert applied == (through if times is None else min(times, through))
    assert injector.list()[0].applied == applied


async def test_latency_waits_then_proceeds(workspace: Workspace) -> None:
    injector = FaultInjector()
    injector.add(Fault(path="run-now", kind="latency", latency_ms=250))
    async with in_process(workspace.app(injector)) as http:
        answer = await http.post("/api/2.2/jobs/run-now")
    assert answer.json() == {"run_id": 1}
    assert workspace.slept_s == [0.25]


async def test_drop_under_asgi_transport_raises_and_has_no_side_effect(
    workspace: Workspace,
) -> None:
    injector = FaultInjector()
    injector.add(Fault(path="run-now", kind="drop"))
    transport = httpx.ASGITransport(app=workspace.app(injector))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        with pytest.raises(ConnectionDropped):
            await http.post("/api/2.2/jobs/run-now")
    assert workspace.runs_started == 0
    assert issubclass(ConnectionDropped, ConnectionResetError)


async def test_drop_under_in_process_transport_is_a_transport_error(workspace: Workspace) -> None:
    injector = FaultInjector()
    injector.add(Fault(path="run-now", kind="drop", times=1))
    async with in_process(workspace.app(injector)) as http:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await http.post("/api/2.2/jobs/run-now")
        assert (await http.post("/api/2.2/jobs/run-now")).json() == {"run_id": 1}
    assert workspace.runs_started == 1


async def test_lose_response_runs_the_app_then_drops(workspace: Workspace) -> None:
    injector = FaultInjector()
    injector.add(Fault(path="run-now", kind="lose_response", times=1))
    async with in_process(workspace.app(injector)) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/api/2.2/jobs/run-now")
        assert workspace.runs_started == 1  # the run started, the client never heard of it
        assert (await http.post("/api/2.2/jobs/run-now")).json() == {"run_id": 2}


async def test_the_control_plane_is_never_faulted(workspace: Workspace) -> None:
    injector = FaultInjector()
    async with in_process(workspace.app(injector)) as http:
        await http.post("/emulator/faults", json={"path": ".*", "kind": "drop"})
        listed = await http.get("/emulator/faults")
        assert listed.status_code == 200
        assert (await http.delete("/emulator/faults")).json() == {"removed": 1}
        assert (await http.get("/api/2.2/jobs/get")).status_code == 200


async def test_faults_are_recorded_by_the_stats_middleware(workspace: Workspace) -> None:
    injector = FaultInjector()
    stats = RequestStats()
    app = StatsMiddleware(workspace.app(injector), stats, ManualClock())
    injector.add(Fault(method="GET", path="jobs/get$", kind="status", status=503, times=1))
    injector.add(Fault(method="POST", path="run-now", kind="drop", times=1))
    injector.add(Fault(method="POST", path="run-now", kind="lose_response", times=1))
    async with in_process(app) as http:
        await http.get("/api/2.2/jobs/get")
        for _ in range(2):
            with pytest.raises(httpx.RemoteProtocolError):
                await http.post("/api/2.2/jobs/run-now")
        await http.post("/api/2.2/jobs/run-now")
    assert [(r.status, r.fault) for r in stats.recent()] == [
        (503, "status 503"),
        (0, "drop"),
        (0, "lose_response (app answered 200)"),
        (200, None),
    ]


async def test_fault_routes_add_list_and_remove(workspace: Workspace) -> None:
    injector = FaultInjector()
    async with in_process(workspace.app(injector)) as http:
        one = await http.post(
            "/emulator/faults", json={"path": "jobs/get$", "kind": "status", "status": 500}
        )
        assert one.json() == {"ids": ["fault-1"]}
        two = await http.post(
            "/emulator/faults",
            json=[{"path": "run-now", "kind": "drop"}, {"path": "x", "kind": "lose_response"}],
        )
        assert two.json() == {"ids": ["fault-2", "fault-3"]}
        await http.get("/api/2.2/jobs/get")
        listed = (await http.get("/emulator/faults")).json()["faults"]
        assert [f["id"] for f in listed] == ["fault-1", "fault-2", "fault-3"]
        assert (listed[0]["matched"], listed[0]["applied"]) == (1, 1)
        assert (listed[0]["kind"], listed[0]["status"]) == ("status", 500)
        assert (await http.delete("/emulator/faults/fault-2")).json() == {}
        missing = await http.delete("/emulator/faults/fault-2")
        assert missing.status_code == 404
        assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        assert [s.fault_id for s in injector.list()] == ["fault-1", "fault-3"]
        assert (await http.delete("/emulator/faults")).json() == {"removed": 2}
    assert injector.list() == []


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({"path": "(", "kind": "drop"}, "path"),
        ({"path": "x", "kind": "explode"}, "kind"),
        ({"path": "x", "kind": "latency"}, "latency_ms"),
        ({"path": "x", "kind": "drop", "method": "FETCH"}, "method"),
        ({"path": "x", "kind": "drop", "probabilty": 0.5}, "probabilty"),
        ({"path": "x", "kind": "drop", "times": 0}, "times"),
        ([{"path": "x", "kind": "drop"}, {"kind": "drop"}], "path"),
    ],
)
async def test_fault_routes_refuse_invalid_faults(
    workspace: Workspace, body: Any, mentions: str
) -> None:
    injector = FaultInjector()
    async with in_process(workspace.app(injector)) as http:
        answer = await http.post("/emulator/faults", json=body)
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert mentions in answer.json()["message"]
    assert injector.list() == []


async def test_fault_routes_refuse_a_body_that_is_not_json(workspace: Workspace) -> None:
    async with in_process(workspace.app(FaultInjector())) as http:
        answer = await http.post("/emulator/faults", content=b"kind=drop")
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "MALFORMED_REQUEST"


def test_fault_normalises_the_method_and_describes_itself() -> None:
    assert Fault(method="post", path="x", kind="drop").method == "POST"
    assert Fault(path="x", kind="status", status=429).describe() == "status 429"
    assert Fault(path="x", kind="latency", latency_ms=12.5).describe() == "latency 12.5ms"
    with pytest.raises(ValidationError):
        Fault(path="x", kind="status", status=700)
