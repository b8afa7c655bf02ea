"""Faults on a real uvicorn socket: a drop is a transport error for clients, never an HTTP 500."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest, InternalError, PermissionDenied
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from polysync.clock import SystemClock
from polysync.emulator.faults import Fault, FaultInjector, FaultMiddleware, fault_routes
from polysync.emulator.serving import run_in_thread, running_server
from polysync.emulator.stats import RequestStats, StatsMiddleware, stats_routes
from polysync.emulator.tls import TlsFiles, make_self_signed_cert


@dataclass
class Emulator:
    """A Jobs API stand-in behind the stats and fault edges; `runs_started` shows side effects."""

    injector: FaultInjector = field(default_factory=FaultInjector)
    stats: RequestStats = field(default_factory=RequestStats)
    runs_started: int = 0

    def app(self) -> StatsMiddleware:
        async def run_now(request: Request) -> Response:
            await request.body()
            self.runs_started += 1
            return JSONResponse({"run_id": self.runs_started, "number_in_job": self.runs_started})

        async def list_jobs(request: Request) -> Response:
            return JSONResponse({"jobs": []})

        inner = Starlette(
            routes=[
                Route("/api/2.2/jobs/run-now", run_now, methods=["POST"]),
                Route("/api/2.2/jobs/list", list_jobs),
                *fault_routes(self.injector),
                *stats_routes(self.stats),
            ]
        )
        return StatsMiddleware(FaultMiddleware(inner, self.injector), self.stats, SystemClock())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def emulator() -> Emulator:
    return Emulator()


@pytest.fixture(params=["http", "https"])
async def served(
    request: pytest.FixtureRequest, emulator: Emulator, tls_files: TlsFiles
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    tls = tls_files if request.param == "https" else None
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(tls_files.ca_path)) if tls else True
    )
    async with (
        running_server(emulator.app(), tls=tls) as base_url,
        httpx.AsyncClient(base_url=base_url, verify=verify) as http,
    ):
        yield base_url, http


async def test_drop_is_a_transport_error_and_the_app_never_ran(
    emulator: Emulator, served: tuple[str, httpx.AsyncClient]
) -> None:
    _, http = served
    # A kept-alive connection first: the drop must reach a pooled connection too.
    assert (await http.get("/api/2.2/jobs/list")).status_code == 200
    await http.post("/emulator/faults", json={"path": "jobs/run-now$", "kind": "drop", "times": 1})
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await http.post("/api/2.2/jobs/run-now", json={"job_id": 1})
    assert emulator.runs_started == 0
    # The server is fine afterwards: the next call goes through.
    assert (await http.post("/api/2.2/jobs/run-now", json={"job_id": 1})).status_code == 200


async def test_lose_response_runs_the_app_but_the_client_gets_no_answer(
    emulator: Emulator, served: tuple[str, httpx.AsyncClient]
) -> None:
    _, http = served
    emulator.injector.add(Fault(path="jobs/run-now$", kind="lose_response", times=1))
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/api/2.2/jobs/run-now", json={"job_id": 1})
    assert emulator.runs_started == 1
    assert (await http.post("/api/2.2/jobs/run-now", json={"job_id": 1})).json()["run_id"] == 2
    log = (await http.get("/emulator/requests")).json()["requests"]
    assert [(r["status"], r["fault"]) for r in log] == [
        (0, "lose_response (app answered 200)"),
        (200, None),
    ]


async def test_requests_sees_a_connection_error(
    emulator: Emulator, served: tuple[str, httpx.AsyncClient], tls_files: TlsFiles
) -> None:
    base_url, _ = served
    emulator.injector.add(Fault(path="jobs/run-now$", kind="drop"))
    verify = str(tls_files.ca_path) if base_url.startswith("https") else True
    # A dropped connection reads as a close or, when the unread request races the close, a
    # reset: both say no answer came (which one depends on the machine's load).
    with pytest.raises(
        requests.ConnectionError, match=r"Remote end closed connection|Connection reset by peer"
    ):
        # requests blocks: it runs in a thread so the server keeps serving in this loop.
        await asyncio.to_thread(
            requests.post, f"{base_url}/api/2.2/jobs/run-now", json={}, verify=verify, timeout=10
        )
    assert emulator.runs_started == 0


@pytest.fixture
def sdk_client(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkspaceClient]:
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "ARM_", "AZURE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", "/nonexistent/.databrickscfg")
    base_url, stop = run_in_thread(emulator.app())
    try:
        yield WorkspaceClient(host=base_url, token="dapi-unused", auth_type="pat")
    finally:
        stop()


@pytest.mark.parametrize(
    ("shape", "error", "message"),
    [
        (("html", 403, "PERMISSION_DENIED"), PermissionDenied, "Invalid access token."),
        (("text", 400, "INVALID_PARAMETER_VALUE"), BadRequest, "Job 1 does not exist."),
        (("numeric", 403, ""), PermissionDenied, "JWT has expired"),
        (("json", 500, "UNKNOWN"), InternalError, "Unexpected failure."),
        (("empty", 500, ""), InternalError, "Internal Server Error"),
    ],
)
def test_databricks_sdk_parses_every_error_shape(
    emulator: Emulator,
    sdk_client: WorkspaceClient,
    shape: tuple[str, int, str],
    error: type[Exception],
    message: str,
) -> None:
    body, status, error_code = shape
    emulator.injector.add(
        Fault.model_validate(
            {
                "path": "jobs/list$",
                "kind": "status",
                "status": status,
                "error_code": error_code,
                "message": message,
                "body": body,
                "times": 1,
            }
        )
    )
    with pytest.raises(error, match=message):
        list(sdk_client.jobs.list())
