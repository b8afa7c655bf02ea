"""Typed dependencies of the routes: the app's context (services, settings) and the caller's key."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from polysync.api.keys import key_hint, verify_api_key
from polysync.api.ports import ApiStore
from polysync.api.problems import ApiProblem
from polysync.api.throttle import (
    STREAM_RETRY_AFTER_S,
    FailureLimiter,
    StreamLimitError,
    StreamSlots,
)
from polysync.domain.access import ApiKey, Role
from polysync.errors import PolysyncError
from polysync.services import Services


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """How the API behaves; times are on the services' clock."""

    live_poll_s: float = 1.0
    """How often the SSE stream and a long poll look at the store for a change."""
    max_wait_s: float = 60.0
    """The longest a long poll (`?wait=`) may hold a request."""


@dataclass(frozen=True, slots=True)
class ApiContext:
    services: Services
    store: ApiStore
    """The services' store, seen through the API's protocol (keys, health, metrics)."""
    settings: ApiSettings
    limiter: FailureLimiter
    """Refused API keys and failed sign-ins per source address (shared with the web UI)."""
    streams: StreamSlots = field(default_factory=StreamSlots)
    """Event streams and long polls open, per API key and in all."""

    def stream_slot(self, key: ApiKey) -> AbstractContextManager[None]:
        """A slot for one open stream of `key`, or ApiProblem 429 with Retry-After."""
        try:
            self.streams.acquire(key.prefix)
        except StreamLimitError as exc:
            raise ApiProblem(
                429,
                "too-many-streams",
                str(exc),
                headers={"Retry-After": str(STREAM_RETRY_AFTER_S)},
            ) from None
        return _Releasing(self.streams, key.prefix)


class _Releasing(AbstractContextManager[None]):
    def __init__(self, slots: StreamSlots, key: str) -> None:
        self._slots, self._key = slots, key

    def __exit__(self, *exc: object) -> None:
        self._slots.release(self._key)


def get_context(request: Request) -> ApiContext:
    context = request.app.state.polysync_api
    assert isinstance(context, ApiContext)
    return context


Context = Annotated[ApiContext, Depends(get_context)]


def get_services(context: Context) -> Services:
    return context.services


ServicesDep = Annotated[Services, Depends(get_services)]

# Documented in the OpenAPI spec as two schemes; either one authenticates a request.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer psk_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: psk_...`")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="polysync"'}


def source_address(request: Request) -> str:
    """The client's address as the server sees it (the proxy's, unless `trusted_proxies` names
    it: then the one it forwarded), as it may be logged (`loggable_address`)."""
    return loggable_address(request.client.host if request.client else None)


def loggable_address(host: str | None) -> str:
    """An IP address in its canonical form; anything else (a forwarded header's free text)
    quoted, cut short and with control characters made visible: it cannot forge a log line."""
    if not host:
        return "unknown"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return "invalid " + (repr(host[:64]) + ("..." if len(host) > 64 else ""))


async def authenticate(
    request: Request,
    context: Context,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_header)],
) -> ApiKey:
    """The caller's active API key; 401 without one or with a key that is not valid, 429 (with
    Retry-After) once its address has had too many keys refused (FailureLimiter)."""
    sent = header or (bearer.credentials if bearer is not None else None)
    if not sent:
        raise ApiProblem(
            401,
            "unauthenticated",
            "An API key is required: send `Authorization: Bearer psk_...` or `X-API-Key: "
            "psk_...`. `polysync apikey create --role viewer` makes one.",
            headers=_CHALLENGE,
        )
    # A valid key always passes: others' failures from the same address (a shared proxy or
    # NAT) never lock out a client that has the right key. Keys are 256-bit random, so checking
    # one is no guessing aid; only invalid keys are counted, and slowed down (docs/security.md).
    key = await verify_api_key(context.store, sent)
    if key is not None:
        return key
    source = source_address(request)
    wait_s = context.limiter.retry_after_s(source)
    if wait_s is not None:
        context.limiter.refused(source, "API key", wait_s)
        raise ApiProblem(
            429,
            "too-many-failures",
            f"Too many invalid API keys from {source}; try again in {math.ceil(wait_s)} s.",
            headers={"Retry-After": str(math.ceil(wait_s))},
        )
    context.limiter.failed(source, f"API key {key_hint(sent)}")
    raise ApiProblem(
        401,
        "invalid-api-key",
        "The API key is not valid: it is unknown, mistyped or revoked.",
        headers=_CHALLENGE,
    )


def api_key_admits(store: ApiStore) -> Callable[[MutableMapping[str, Any]], Awaitable[bool]]:
    """For RequestGuard: whether an /api/ request's headers carry a valid API key, so that its
    body is read at all (M2). Other paths (the web UI's forms, sign-in) are always read."""

    async def admits(scope: MutableMapping[str, Any]) -> bool:
        if not str(scope.get("path", "")).startswith("/api/"):
            return True
        sent = _key_in_headers(scope.get("headers", ()))
        if sent is None:
            return False
        try:
            return await verify_api_key(store, sent) is not None
        except PolysyncError:
            return True  # the database cannot say now: the route answers (503), as it would

    return admits


def _key_in_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        lowered = name.lower()
        text = value.decode("latin-1").strip()
        if lowered == b"x-api-key" and text:
            return text
        if lowered == b"authorization" and text[:7].lower() == "bearer ":
            return text[7:].strip()
    return None


def require(role: Role) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that lets through keys whose role includes `role` (403 otherwise)."""

    async def check(key: Annotated[ApiKey, Depends(authenticate)]) -> ApiKey:
        if not key.role.allows(role):
            raise ApiProblem(
                403,
                "forbidden",
                f"This needs the {role.value} role; the API key {key.prefix}... "
                f"({key.name!r}) has the {key.role.value} role.",
            )
        return key

    return check


Viewer = Annotated[ApiKey, Depends(require(Role.VIEWER))]
Operator = Annotated[ApiKey, Depends(require(Role.OPERATOR))]
Admin = Annotated[ApiKey, Depends(require(Role.ADMIN))]
