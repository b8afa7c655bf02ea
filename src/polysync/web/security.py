"""Web sign-in: server-side sessions behind a signed cookie, per-session CSRF tokens, roles."""

from __future__ import annotations

import hmac
import inspect
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from fastapi import HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from polysync.domain.access import Actor, Role
from polysync.errors import PolysyncError

COOKIE_NAME = "polysync_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_MAX_AGE_S = 12 * 3600
MAX_SESSIONS = 10_000


def parse_role(value: object) -> Role:
    """A principal's role; anything unknown gets the least power, never more."""
    try:
        return Role(str(getattr(value, "value", value)).strip().lower())
    except ValueError:
        return Role.VIEWER


class Principal(Protocol):
    """Who an API key belongs to, as the API layer's verify function returns it."""

    @property
    def role(self) -> Any: ...


Authenticate = Callable[[str], Awaitable[Principal | None] | Principal | None]
"""API key -> its principal, or None (or a PolysyncError) when the key is not valid."""


@dataclass(slots=True)
class WebSession:
    sid: str
    csrf: str
    api_key: str
    role: Role
    name: str
    expires_at_s: float
    actor: Actor  # what the audit trail records for this session's changes


@dataclass(frozen=True, slots=True)
class Visitor:
    """The caller of one request: its CSRF token, and its session once signed in."""

    csrf: str
    session: WebSession | None

    @property
    def role(self) -> Role | None:
        return self.session.role if self.session else None

    def can(self, role: Role) -> bool:
        return self.session is not None and self.session.role.allows(role)

    @property
    def actor(self) -> Actor | None:
        """`web:<key name> (<key prefix>)` once signed in: who made a change."""
        return self.session.actor if self.session else None


class SignInRequired(HTTPException):
    """No valid session: the browser goes to the sign-in page. An htmx request (a poll, a button)
    gets HX-Redirect on a 401, since a 303 would be followed by the XHR and its page swapped in."""

    def __init__(self, request: Request) -> None:
        target = "/sign-in"
        if "hx-request" in request.headers:
            super().__init__(
                status_code=401, detail="Sign in first.", headers={"HX-Redirect": target}
            )
            return
        if request.method == "GET":
            target += "?" + urlencode({"next": request.url.path}, safe="/")
        super().__init__(status_code=303, detail="Sign in first.", headers={"Location": target})


class Sessions:
    """Signed-in sessions, kept in this process. The cookie carries only a signed session id and
    the CSRF token: the API key stays in server memory (to re-check it), never in the browser."""

    def __init__(self, authenticate: Authenticate, secret_key: str | None = None) -> None:
        self._authenticate = authenticate
        self._serializer = URLSafeTimedSerializer(
            secret_key or secrets.token_urlsafe(32), salt="polysync-web-session"
        )
        self._sessions: dict[str, WebSession] = {}

    # ------------------------------------------------------------------ requests
    async def visitor(self, request: Request) -> Visitor:
        """Who is calling (memoised per request)."""
        cached = getattr(request.state, "polysync_visitor", None)
        if isinstance(cached, Visitor):
            return cached
        payload = self._cookie(request)
        csrf = payload.get("csrf") if isinstance(payload.get("csrf"), str) else None
        session = await self._live_session(payload.get("sid"))
        if session is not None:
            csrf = session.csrf
        visitor = Visitor(csrf=csrf or secrets.token_urlsafe(24), session=session)
        request.state.polysync_visitor = visitor
        return visitor

    def set_cookie(self, request: Request, response: Response, visitor: Visitor) -> None:
        """Write the cookie when the request did not carry this exact one."""
        value = self._serializer.dumps(
            {"sid": visitor.session.sid if visitor.session else None, "csrf": visitor.csrf}
        )
        if self._cookie(request) == self._serializer.loads(value):
            return
        response.set_cookie(
            COOKIE_NAME,
            value,
            max_age=SESSION_MAX_AGE_S,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )

    async def check_csrf(self, request: Request, visitor: Visitor) -> None:
        sent = request.headers.get(CSRF_HEADER)
        if sent is None:
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
        # compare_digest takes ASCII text only: anything else cannot be our token (not a 500).
        if not sent or not sent.isascii() or not hmac.compare_digest(sent, visitor.csrf):
            raise HTTPException(
                status_code=403,
                detail="The form's security token is missing or out of date: reload the page "
                "and try again.",
            )

    # ------------------------------------------------------------------ sign-in
    async def sign_in(self, api_key: str) -> Visitor | None:
        """A new session (new id and new CSRF token: no fixation) for a valid key; else None."""
        principal = await self._verify(api_key)
        if principal is None:
            return None
        now_s = time.time()
        self._prune(now_s)
        name = _principal_name(principal)
        prefix = getattr(principal, "prefix", None)
        session = WebSession(
            sid=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(24),
            api_key=api_key,
            role=parse_role(principal.role),
            name=name,
            expires_at_s=now_s + SESSION_MAX_AGE_S,
            actor=Actor("web", name, prefix if isinstance(prefix, str) else None),
        )
        self._sessions[session.sid] = session
        return Visitor(csrf=session.csrf, session=session)

    def sign_out(self, visitor: Visitor) -> Visitor:
        if visitor.session is not None:
            self._sessions.pop(visitor.session.sid, None)
        return Visitor(csrf=secrets.token_urlsafe(24), session=None)

    # ------------------------------------------------------------------ internals
    def _cookie(self, request: Request) -> dict[str, Any]:
        raw = request.cookies.get(COOKIE_NAME)
        if not raw:
            return {}
        try:
            payload = self._serializer.loads(raw, max_age=SESSION_MAX_AGE_S)
        except BadSignature:
            return {}
        return payload if isinstance(payload, dict) else {}

    async def _live_session(self, sid: object) -> WebSession | None:
        if not isinstance(sid, str):
            return None
        session = self._sessions.get(sid)
        now_s = time.time()
        if session is None or session.expires_at_s <= now_s:
            self._sessions.pop(sid, None)
            return None
        # The key is checked again on every request (one indexed lookup and a sha256), so a revoked
        # key or a changed role takes effect at once, as it does on the API.
        principal = await self._verify(session.api_key)
        if principal is None:
            self._sessions.pop(sid, None)
            return None
        session.role = parse_role(principal.role)
        return session

    async def _verify(self, api_key: str) -> Principal | None:
        if not api_key:
            return None
        try:
            result = self._authenticate(api_key)
            if inspect.isawaitable(result):
                result = await result
        except PolysyncError:
            return None
        return result

    def _prune(self, now_s: float) -> None:
        for sid in [s for s, sess in self._sessions.items() if sess.expires_at_s <= now_s]:
            del self._sessions[sid]
        while len(self._sessions) >= MAX_SESSIONS:  # the oldest session goes first
            del self._sessions[next(iter(self._sessions))]


def _principal_name(principal: Principal) -> str:
    for attribute in ("name", "key_name", "label"):
        value = getattr(principal, attribute, None)
        if isinstance(value, str) and value:
            return value
    return f"{parse_role(principal.role).value} key"
