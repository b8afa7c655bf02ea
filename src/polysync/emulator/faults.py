"""Fault injection by method and path: error answers, latency, dropped connections, lost answers."""

from __future__ import annotations

import asyncio
import builtins
import itertools
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from polysync.emulator.bodies import (
    empty_error_response,
    jetty_html_response,
    numeric_error_response,
    text_error_response,
)
from polysync.emulator.control_io import read_body_as
from polysync.emulator.errors import TEMPORARILY_UNAVAILABLE, ApiError, error_response
from polysync.emulator.stats import CONTROL_PLANE_PREFIX, note_fault

FaultKind = Literal["status", "latency", "drop", "lose_response"]
BodyShape = Literal["json", "html", "text", "empty", "numeric"]

_HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class ConnectionDropped(ConnectionResetError):
    """The fault injector dropped the connection (raised only where the server cannot close it)."""


class Fault(BaseModel):
    """A fault for requests whose method and path (regex, `re.search`, no query) match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "*"
    path: str
    kind: FaultKind
    # kind="status": the answer, in one of the body shapes of reference §7.
    status: int = Field(503, ge=100, le=599)
    error_code: str = TEMPORARILY_UNAVAILABLE
    message: str = "The service is temporarily unavailable. Please try again later."
    retry_after_s: int | None = Field(None, ge=0)
    body: BodyShape = "json"
    # kind="latency": real time added before the request proceeds.
    latency_ms: float = Field(0.0, ge=0.0)
    times: int | None = Field(None, ge=1)
    skip: int = Field(0, ge=0)
    probability: float = Field(1.0, ge=0.0, le=1.0)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        method = value.upper()
        if method != "*" and method not in _HTTP_METHODS:
            raise ValueError(f"must be '*' or one of {sorted(_HTTP_METHODS)}, got {value!r}")
        return method

    @field_validator("path")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _latency_has_a_duration(self) -> Fault:
        if self.kind == "latency" and self.latency_ms <= 0:
            raise ValueError("a latency fault needs latency_ms > 0")
        return self

    def describe(self) -> str:
        """A short label for the request log, e.g. `status 503` or `latency 250ms`."""
        if self.kind == "status":
            return f"status {self.status}"
        if self.kind == "latency":
            return f"latency {self.latency_ms:g}ms"
        return self.kind


@dataclass(slots=True)
class _Installed:
    fault_id: str
    fault: Fault
    pattern: re.Pattern[str]
    matched: int = 0
    applied: int = 0


@dataclass(frozen=True, slots=True)
class FaultState:
    """An installed fault and its counters: requests it matched, and those it was applied to."""

    fault_id: str
    fault: Fault
    matched: int
    applied: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.fault_id,
            **self.fault.model_dump(mode="json"),
            "matched": self.matched,
            "applied": self.applied,
        }


class FaultInjector:
    """The installed faults; `match` decides (deterministically for a seed) which one applies."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        # Replaced, never mutated: a request reads one consistent tuple even if a control-plane call
        # (or a test thread, with `run_in_thread`) adds or removes faults meanwhile.
        self._installed: tuple[_Installed, ...] = ()

    def add(self, fault: Fault) -> str:
        fault_id = f"fault-{next(self._ids)}"
        entry = _Installed(fault_id, fault, re.compile(fault.path))
        self._installed = (*self._installed, entry)
        return fault_id

    def remove(self, fault_id: str) -> bool:
        """Uninstall one fault; False if there is no such id."""
        kept = tuple(e for e in self._installed if e.fault_id != fault_id)
        removed = len(kept) != len(self._installed)
        self._installed = kept
        return removed

    def clear(self) -> int:
        """Uninstall every fault; returns how many there were."""
        count = len(self._installed)
        self._installed = ()
        return count

    def match(self, method: str, path: str) -> Fault | None:
        """The first installed fault that applies to this request, counting it as applied."""
        for entry in self._installed:
            fault = entry.fault
            if fault.method not in ("*", method):
                continue
            if fault.times is not None and entry.applied >= fault.times:
                continue
            if entry.pattern.search(path) is None:
                continue
            entry.matched += 1
            if entry.matched <= fault.skip:
                continue
            if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                continue
            entry.applied += 1
            return fault
        return None

    def list(self) -> builtins.list[FaultState]:
        return [FaultState(e.fault_id, e.fault, e.matched, e.applied) for e in self._installed]


def fault_response(fault: Fault, path: str) -> Response:
    """The error answer of a `status` fault, in the fault's body shape."""
    headers = {} if fault.retry_after_s is None else {"Retry-After": str(fault.retry_after_s)}
    if fault.body == "html":
        return jetty_html_response(fault.status, fault.message, path, headers)
    if fault.body == "text":
        return text_error_response(fault.status, fault.error_code, fault.message, headers)
    if fault.body == "empty":
        return empty_error_response(fault.status, headers)
    if fault.body == "numeric":
        return numeric_error_response(fault.status, fault.message, headers)
    return error_response(fault.status, fault.error_code, fault.message, headers)


# ASGI has no message for "close the connection". A header value with CR/LF can never be written,
# so a compliant server must refuse it before putting a byte on the wire; uvicorn (h11 and
# httptools alike) refuses it after marking the response started, so when the app then returns,
# it closes the connection as for any incomplete response: the client sees a disconnect without
# an answer (httpx.RemoteProtocolError, requests.ConnectionError). Checked on a real socket by
# tests/integration/test_emulator_faults_socket.py.
_UNSENDABLE_START: Message = {
    "type": "http.response.start",
    "status": 500,
    "headers": [(b"x-polysync-fault", b"drop\r\n")],
}


async def abort_connection(send: Send) -> None:
    """Close the connection without an HTTP answer; raises `ConnectionDropped` in-process."""
    try:
        await send(_UNSENDABLE_START)
    except Exception:
        # The server refused the start before writing anything; it closes when we return.
        return
    # An in-process transport (httpx.ASGITransport) has no connection to close: raise instead.
    raise ConnectionDropped("connection dropped by the emulator's fault injector")


class FaultMiddleware:
    """Pure ASGI: applies the first matching fault to each request outside the control plane."""

    def __init__(
        self,
        app: ASGIApp,
        injector: FaultInjector,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.app = app
        self.injector = injector
        # Latency is real time (what a client's timeout sees), not the emulator clock.
        self._sleep = sleep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PLANE_PREFIX):
            # Never fault the control plane, or a fault on ".*" could not be removed.
            await self.app(scope, receive, send)
            return
        fault = self.injector.match(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.kind == "status":
            note_fault(scope, fault.describe())
            await fault_response(fault, scope["path"])(scope, receive, send)
        elif fault.kind == "latency":
            note_fault(scope, fault.describe())
            await self._sleep(fault.latency_ms / 1000.0)
            await self.app(scope, receive, send)
        elif fault.kind == "drop":
            note_fault(scope, "drop", answered=False)
            await abort_connection(send)
        else:
            await self._lose_response(scope, receive, send)

    async def _lose_response(self, scope: Scope, receive: Receive, send: Send) -> None:
        app_status = 0

        async def discard(message: Message) -> None:
            nonlocal app_status
            if message["type"] == "http.response.start":
                app_status = message["status"]

        await self.app(scope, receive, discard)
        note_fault(scope, f"lose_response (app answered {app_status})", answered=False)
        await abort_connection(send)


_FAULTS_ADAPTER: TypeAdapter[Fault | list[Fault]] = TypeAdapter(Fault | list[Fault])


def fault_routes(injector: FaultInjector) -> list[Route]:
    """`POST/GET/DELETE /emulator/faults` and `DELETE /emulator/faults/{fault_id}`."""

    async def add_faults(request: Request) -> Response:
        try:
            body = await read_body_as(request, _FAULTS_ADAPTER)
        except ApiError as exc:
            return exc.to_response()
        faults = body if isinstance(body, list) else [body]
        return JSONResponse({"ids": [injector.add(fault) for fault in faults]})

    async def list_faults(request: Request) -> Response:
        return JSONResponse({"faults": [state.to_json() for state in injector.list()]})

    async def clear_faults(request: Request) -> Response:
        return JSONResponse({"removed": injector.clear()})

    async def remove_fault(request: Request) -> Response:
        fault_id = request.path_params["fault_id"]
        if not injector.remove(fault_id):
            return error_response(
                404, "RESOURCE_DOES_NOT_EXIST", f"Fault {fault_id} does not exist."
            )
        return JSONResponse({})

    return [
        Route("/emulator/faults", add_faults, methods=["POST"]),
        Route("/emulator/faults", list_faults, methods=["GET"]),
        Route("/emulator/faults", clear_faults, methods=["DELETE"]),
        Route("/emulator/faults/{fault_id}", remove_fault, methods=["DELETE"]),
    ]
