"""Who may call `/api/`: the auth settings, the access-token issuer and the bearer guard (§9).

`identity` serves the endpoints that issue the tokens.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from polysync.clock import Clock
from polysync.emulator.bodies import jetty_html_response
from polysync.emulator.errors import error_response

# The AzureDatabricks first-party application: the resource every Entra token must be for (§9.2).
DATABRICKS_RESOURCE_ID = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"
DATABRICKS_ENTRA_SCOPE = f"{DATABRICKS_RESOURCE_ID}/.default"
DATABRICKS_OAUTH_SCOPE = "all-apis"
# Azure Key Vault's audience (azure-keyvault-secrets asks for `<resource>/.default` after the
# vault's 401 challenge names `resource="https://vault.azure.net"`).
KEYVAULT_RESOURCE = "https://vault.azure.net"
KEYVAULT_SCOPE = f"{KEYVAULT_RESOURCE}/.default"
# The audiences this emulator issues tokens for: scope (v2) -> resource (v1, managed identity).
AUDIENCES = {DATABRICKS_ENTRA_SCOPE: DATABRICKS_RESOURCE_ID, KEYVAULT_SCOPE: KEYVAULT_RESOURCE}
# The error_code string of a 401 is UNCONFIRMED (reference §7 table); sdk-py maps on the status.
UNAUTHENTICATED = "UNAUTHENTICATED"


class EntraServicePrincipal(BaseModel):
    """A Microsoft Entra ID application that may use the client-credentials grant."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str
    client_id: str
    client_secret: SecretStr


class OAuthClient(BaseModel):
    """A Databricks-managed service principal with an OAuth secret (M2M, §9.5)."""

    model_config = ConfigDict(extra="forbid")

    client_id: str
    client_secret: SecretStr


class ManagedIdentity(BaseModel):
    """The host's managed identity: system-assigned if `client_id` is None, else user-assigned."""

    model_config = ConfigDict(extra="forbid")

    client_id: str | None = None
    # The value App Service puts in IDENTITY_HEADER; callers echo it as X-IDENTITY-HEADER.
    identity_header: SecretStr


class AuthConfig(BaseModel):
    """Who may call `/api/`: personal access tokens, and the principals that can obtain tokens."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # Plain strings so callers can append at run time; kept out of repr so they never get logged.
    tokens: list[str] = Field(default_factory=list, repr=False)
    service_principals: list[EntraServicePrincipal] = Field(default_factory=list)
    oauth_clients: list[OAuthClient] = Field(default_factory=list)
    managed_identity: ManagedIdentity | None = None
    token_lifetime_s: int = Field(3600, ge=2)


class TokenState(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An access token handed out by an identity endpoint; times are on the issuer's clock."""

    access_token: str = field(repr=False)
    subject: str
    issued_at_s: float
    expires_at_s: float
    audience: str = DATABRICKS_RESOURCE_ID


@dataclass(slots=True)
class _Grant:
    subject: str
    audience: str
    expires_at_s: float


class TokenIssuer:
    """Issues opaque access tokens for one audience that expire on `clock`; keeps only their
    SHA-256 digests. A token is good only for the audience it was issued for."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._grants: dict[bytes, _Grant] = {}

    def issue(
        self, subject: str, lifetime_s: float, audience: str = DATABRICKS_RESOURCE_ID
    ) -> IssuedToken:
        token = secrets.token_urlsafe(32)
        now_s = self.clock.now()
        self._grants[_digest(token)] = _Grant(subject, audience, now_s + lifetime_s)
        return IssuedToken(token, subject, now_s, now_s + lifetime_s, audience)

    def check(self, token: str, audience: str = DATABRICKS_RESOURCE_ID) -> TokenState:
        """VALID, EXPIRED, or UNKNOWN (never issued, or issued for another audience)."""
        # Looked up by digest, so the time taken does not depend on how much of a guess is right.
        grant = self._grants.get(_digest(token))
        if grant is None or grant.audience != audience:
            return TokenState.UNKNOWN
        return TokenState.VALID if self.clock.now() < grant.expires_at_s else TokenState.EXPIRED

    def subject_of(self, token: str) -> tuple[str, str] | None:
        """(subject, audience) of an issued token, expired or not; None if never issued."""
        grant = self._grants.get(_digest(token))
        return None if grant is None else (grant.subject, grant.audience)

    def expire_all(self) -> int:
        """Make every issued token expired (not unknown: clients must see "Token is expired")."""
        now_s = self.clock.now()
        for grant in self._grants.values():
            grant.expires_at_s = min(grant.expires_at_s, now_s)
        return len(self._grants)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def secret_equals(given: str, expected: SecretStr | str) -> bool:
    """Whether a presented secret equals the expected one, compared in constant time."""
    if isinstance(expected, SecretStr):
        expected = expected.get_secret_value()
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _authorization(scope: Scope) -> tuple[str | None, str | None]:
    """(scheme, credentials) of the Authorization header, (None, None) if there is none."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
            return scheme, credentials.strip()
    return None, None


class BearerAuthMiddleware:
    """Pure ASGI: `/api/` requests need `Authorization: Bearer` with a PAT or a live issued one."""

    def __init__(self, app: ASGIApp, config: AuthConfig, issuer: TokenIssuer) -> None:
        self.app = app
        self.config = config
        self.issuer = issuer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.config.enabled
            or not scope["path"].startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        scheme, token = _authorization(scope)
        if scheme is None:
            return error_response(
                401,
                UNAUTHENTICATED,
                "No credentials were sent: send the header 'Authorization: Bearer <token>'.",
            )
        if scheme.lower() != "bearer" or not token:
            return error_response(
                401,
                UNAUTHENTICATED,
                "Only 'Authorization: Bearer <token>' is accepted by this workspace.",
            )
        if any(secret_equals(token, pat) for pat in self.config.tokens):
            return None
        state = self.issuer.check(token)
        if state is TokenState.VALID:
            return None
        if state is TokenState.EXPIRED:
            # Since Dec 2025 Azure answers an expired Entra token with 401 "Token is expired" (§7).
            return error_response(401, UNAUTHENTICATED, "Token is expired")
        # An unknown token is refused by the workspace front end, as a Jetty page (§7).
        return jetty_html_response(403, "Invalid access token.", scope["path"])
