"""ASGI middleware around the API and the web UI: request body cap, work cancelled when the
client goes away, security headers on every response (docs/security.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from polysync.api.problems import status_of, title_of
from polysync.clock import Clock, SystemClock
from polysync.domain.limits import MAX_BODY_BYTES
from polysync.errors import PolysyncError

log = logging.getLogger(__name__)
T = TypeVar("T")

BODY_TIMEOUT_S = 30.0
"""The longest a request body may take to arrive in full (1 MiB at 35 KB/s)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""No inline script, style or handler, nothing from another origin, never framed."""
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response (pages, fragments, JSON, errors, files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {name.lower() for name, _ in message.get("headers", ())}
                message["headers"] = [
                    *message.get("headers", ()),
                    *((name, value) for name, value in SECURITY_HEADERS if name not in present),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except PolysyncError as exc:  # raised outside the routes (a middleware): its status
            if started:
                raise
            status, slug = status_of(exc)
            log.warning("%s %s: %s", scope.get("method"), scope.get("path"), exc)
            await _problem(send_with_headers, status, slug, title_of(status), str(exc))
        except Exception:
            if started:
                raise  # too late for another answer: the server closes the connection
            # A bug: answered here, so the 500 carries the headers too (Starlette's own error
            # answer is sent outside every middleware). The traceback goes to the log only.
            log.exception("%s %s: unexpected error", scope.get("method"), scope.get("path"))
            await _problem(
                send_with_headers,
                500,
                "internal",
                "Internal Server Error",
                "Polysync hit an unexpected error; the server log has the details.",
            )


Admits = Callable[[Scope], Awaitable[bool]]
"""Whether a request's credentials (headers only) allow reading its body."""


class _TooLarge(Exception):
    pass


class RequestGuard:
    """Reads a request's whole body before the app sees it, and cancels the app's work when the
    client disconnects.

    A body over `max_body_bytes` (by Content-Length, or counted as it arrives when chunked) is
    answered 413 at once: nothing parses it. A body not received in full within
    `body_timeout_s` (on `clock`) is answered 408: a client trickling a byte at a time cannot hold
    a request open. With `admits`, a request it refuses (no valid API key in its headers) never
    has its body read: the app sees an empty one and answers 401 itself. The app then runs as
    its own task while this middleware listens for `http.disconnect`; a client that gives up
    (closes the connection) cancels it, so an import of many jobs stops calling Databricks. A
    disconnect after the response is complete cancels nothing.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        body_timeout_s: float = BODY_TIMEOUT_S,
        clock: Clock | None = None,
        admits: Admits | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.clock: Clock = clock or SystemClock()
        self.admits = admits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(send)
            return
        if self.admits is not None and _may_have_body(scope) and not await self.admits(scope):
            body = b""  # the app refuses it by its headers; its body is never read
        else:
            try:
                read = await _within(self._read_body(receive), self.clock, self.body_timeout_s)
            except _TooLarge:
                await self._too_large(send)
                return
            except TimeoutError:
                log.info(
                    "%s %s: the request body did not arrive within %g s",
                    scope.get("method"),
                    scope.get("path"),
                    self.body_timeout_s,
                )
                await _problem(
                    send,
                    408,
                    "request-timeout",
                    "Request Timeout",
                    f"The request body did not arrive within {self.body_timeout_s:g} s.",
                )
                return
            if read is None:
                return  # gone before it finished sending: nothing to do
            body = read
        disconnected = asyncio.Event()
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        responded = False

        async def send_tracked(message: Message) -> None:
            nonlocal responded
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                responded = True

        app_task = asyncio.ensure_future(self.app(scope, replay, send_tracked))
        watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait({app_task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            app_task.cancel()
            watcher.cancel()
            raise
        if app_task.done() or responded:
            # Done, or only cleaning up after a complete response (servers report a
            # disconnect once the response is sent): let it finish.
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await app_task  # re-raises what the app raised
            return
        disconnected.set()
        app_task.cancel()
        log.info(
            "%s %s: the client disconnected; its request's work was cancelled",
            scope.get("method"),
            scope.get("path"),
        )
        with contextlib.suppress(asyncio.CancelledError):
            await app_task

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body; None if the client disconnected first; _TooLarge past the cap."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, send: Send) -> None:
        await _problem(
            send,
            413,
            "payload-too-large",
            "Content Too Large",
            f"The request body is larger than {self.max_body_bytes:,} bytes, the limit of "
            "this server; send less per request (see docs/security.md).",
        )


async def _problem(send: Send, status: int, slug: str, title: str, detail: str) -> None:
    """An RFC 7807 answer sent before the app ran; the connection is closed after it."""
    body = json.dumps(
        {
            "type": f"https://polysync.dev/problems/{slug}",
            "title": title,
            "status": status,
            "detail": detail,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _within(work: Awaitable[T], clock: Clock, seconds: float) -> T:
    """`work`'s result, or TimeoutError once `seconds` of `clock` have passed (work cancelled)."""
    task = asyncio.ensure_future(work)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise TimeoutError
    return task.result()


def _may_have_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        lowered = name.lower()
        if lowered == b"transfer-encoding" or (lowered == b"content-length" and value != b"0"):
            return True
    return False


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None
