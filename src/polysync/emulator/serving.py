"""Serve an ASGI app for tests and tools: uvicorn on a free port (loop or thread), or in-process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import uvicorn
from starlette.types import ASGIApp

from polysync.emulator.faults import ConnectionDropped
from polysync.emulator.tls import TlsFiles

READY_TIMEOUT_S = 10.0
_READY_POLL_S = 0.01


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its SIGINT/SIGTERM handlers: the host process (pytest, a CLI) owns them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Closing TLS waits for the peer's close_notify, which an idle pooled client never sends,
        # so a graceful stop would sit out its whole timeout: idle connections are aborted first.
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            transport = getattr(connection, "transport", None)
            if transport is not None and (cycle is None or cycle.response_complete):
                transport.abort()
        await super().shutdown(sockets)


def _make_server(app: ASGIApp, tls: TlsFiles | None, host: str) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=0,
        log_level="warning",
        access_log=False,
        lifespan="auto",
        timeout_graceful_shutdown=5,
        ssl_certfile=str(tls.cert_path) if tls else None,
        ssl_keyfile=str(tls.key_path) if tls else None,
    )
    return _EmbeddedServer(config)


async def _serve(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit as exc:
        # uvicorn reports a failed start (e.g. the address cannot be bound) with sys.exit(), which
        # would otherwise escape the event loop and end the whole process.
        raise RuntimeError(f"uvicorn could not start (exit status {exc.code})") from exc


async def _start(server: uvicorn.Server) -> tuple[asyncio.Task[None], int]:
    """Start `server` as a task of this loop; wait (bounded) until it listens; return its port."""
    task = asyncio.create_task(_serve(server))
    for _ in range(int(READY_TIMEOUT_S / _READY_POLL_S)):
        if server.started or task.done():
            break
        await asyncio.sleep(_READY_POLL_S)  # polling for readiness, not waiting for time to pass
    if not server.started:
        if task.done():
            await task  # raises why it stopped
            raise RuntimeError("uvicorn stopped before it was ready")
        server.should_exit = True
        await task
        raise RuntimeError(f"uvicorn did not start within {READY_TIMEOUT_S} s")
    port: int = server.servers[0].sockets[0].getsockname()[1]
    return task, port


def _base_url(host: str, port: int, tls: TlsFiles | None) -> str:
    scheme = "https" if tls else "http"
    netloc = f"[{host}]" if ":" in host else host  # an IPv6 literal
    return f"{scheme}://{netloc}:{port}"


@contextlib.asynccontextmanager
async def running_server(
    app: ASGIApp, tls: TlsFiles | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """`async with running_server(app) as base_url:` uvicorn serving `app` in this event loop."""
    server = _make_server(app, tls, host)
    task, port = await _start(server)
    try:
        yield _base_url(host, port, tls)
    finally:
        server.should_exit = True
        await task


def run_in_thread(
    app: ASGIApp, tls: TlsFiles | None = None, host: str = "127.0.0.1"
) -> tuple[str, Callable[[], None]]:
    """uvicorn serving `app` in its own thread, for clients that block; returns (base_url, stop)."""
    server = _make_server(app, tls, host)
    started: concurrent.futures.Future[int] = concurrent.futures.Future()

    async def serve() -> None:
        try:
            task, port = await _start(server)
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(port)
        await task

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="uvicorn", daemon=True)
    thread.start()
    try:
        port = started.result(timeout=READY_TIMEOUT_S + 5.0)
    except concurrent.futures.TimeoutError as exc:
        server.should_exit = True
        raise RuntimeError(f"uvicorn did not start within {READY_TIMEOUT_S} s") from exc

    def stop() -> None:
        server.should_exit = True
        thread.join(READY_TIMEOUT_S)
        if thread.is_alive():
            server.force_exit = True  # stop waiting for connections that will not close
            thread.join(READY_TIMEOUT_S)

    return _base_url(host, port, tls), stop


class InProcessTransport(httpx.ASGITransport):
    """httpx's ASGITransport; a dropped connection surfaces as on a socket (RemoteProtocolError)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except ConnectionDropped as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from exc
