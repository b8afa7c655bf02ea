"""Bearer tokens for a workspace: PAT, Entra ID, managed identity, Databricks OAuth M2M."""

from __future__ import annotations

import abc
import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, assert_never

import httpx
from pydantic import SecretStr

from polysync.clock import Clock
from polysync.databricks.errors import error_from_response, redact
from polysync.databricks.metrics import ClientMetrics
from polysync.databricks.settings import (
    AZURE_DATABRICKS_SCOPE,
    PUBLIC_AUTHORITY_HOST,
    AzureDefaultCredentialAuthSettings,
    DatabricksOAuthM2MAuthSettings,
    EntraServicePrincipalAuthSettings,
    ManagedIdentityAuthSettings,
    PatAuthSettings,
    WorkspaceSettings,
)
from polysync.domain.limits import replace_unencodable
from polysync.errors import ConfigError, DatabricksAuthError, DatabricksTransportError
from polysync.secrets import UNRESTRICTED, SecretReference, SecretScope

_log = logging.getLogger(__name__)

DEFAULT_REFRESH_LEAD_S = 300.0
OIDC_TOKEN_PATH = "/oidc/v1/token"  # noqa: S105 - a URL path, not a password

Secret = SecretStr | SecretReference
"""A secret given directly (kept in a SecretStr) or by reference, resolved at each token fetch."""


def _reveal_blocking(secret: Secret) -> SecretStr:
    """The secret's value; a `file:` reference is read here: call it off the event loop."""
    return secret.resolve() if isinstance(secret, SecretReference) else secret


async def _reveal(secret: Secret) -> SecretStr:
    """The secret's value, a `file:` reference read in a worker thread (never on the loop)."""
    return await secret.resolve_async() if isinstance(secret, SecretReference) else secret


class TokenProvider(Protocol):
    """The bearer token for every request; the client asks for a new one once on rejection."""

    @property
    def description(self) -> str:
        """What authenticates, for messages and Test connectivity (never the secret)."""
        ...

    async def token(self) -> SecretStr:
        """A token valid for a while yet (cached; renewed ahead of expiry)."""
        ...

    async def refresh(self, rejected: SecretStr | None = None) -> SecretStr:
        """A new token after Databricks said `rejected` expired (no-op if already replaced)."""
        ...

    async def aclose(self) -> None: ...


def rereads_secret(secret: Secret) -> bool:
    """Whether `secret` is re-read at each use (a `vault://` reference, through its vault's
    short cache), so a rotation reaches the next call (D15)."""
    return isinstance(secret, SecretReference) and secret.scheme == "vault"


class PatAuth:
    """A personal access token. Refresh re-reads the reference, so a rotated PAT is picked up.

    A `vault://` token is asked of its vault at every call (the vault's cache answers within its
    TTL), and a refresh after Databricks refused it (401 or 403) skips that cache (D15)."""

    description = "personal access token"

    def __init__(self, token: Secret, *, metrics: ClientMetrics | None = None) -> None:
        self._secret = token
        self._metrics = metrics or ClientMetrics()
        self._current: SecretStr | None = None
        self.refresh_on_refusal = rereads_secret(token)

    async def token(self) -> SecretStr:
        if self._current is None or self.refresh_on_refusal:
            value = await _reveal(self._secret)
            if self._current is None or not _same(self._current, value):
                self._metrics.token_fetches += 1
            self._current = value
        return self._current

    async def refresh(self, rejected: SecretStr | None = None) -> SecretStr:
        if self._current is not None and not _same(self._current, rejected):
            return self._current
        if isinstance(self._secret, SecretReference):
            self._current = await self._secret.resolve_async(fresh=True)
        else:
            self._current = self._secret
        self._metrics.token_fetches += 1
        self._metrics.token_refreshes += 1
        return self._current

    async def aclose(self) -> None:
        self._current = None


def _same(current: SecretStr, rejected: SecretStr | None) -> bool:
    return rejected is None or current.get_secret_value() == rejected.get_secret_value()


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A token and its validity on the client's clock."""

    value: SecretStr
    issued_at_s: float
    expires_at_s: float


class ExpiringTokenAuth(abc.ABC):
    """Caches a short-lived token and renews it `refresh_lead_s` before expiry, one fetch at a time.

    The lead is capped at half the token's lifetime, so an unusually short-lived token is not
    refetched on every request.
    """

    description = "access token"

    def __init__(
        self,
        *,
        clock: Clock,
        refresh_lead_s: float = DEFAULT_REFRESH_LEAD_S,
        metrics: ClientMetrics | None = None,
    ) -> None:
        self._clock = clock
        self._refresh_lead_s = refresh_lead_s
        self._metrics = metrics or ClientMetrics()
        self._cached: AccessToken | None = None
        self._lock = asyncio.Lock()

    @abc.abstractmethod
    async def _fetch(self, *, force: bool) -> tuple[SecretStr, float]:
        """A new token and its lifetime in seconds; `force` skips the provider's cache."""

    def _due(self, cached: AccessToken) -> bool:
        lifetime_s = cached.expires_at_s - cached.issued_at_s
        lead_s = min(self._refresh_lead_s, max(lifetime_s, 0.0) / 2.0)
        return self._clock.now() >= cached.expires_at_s - lead_s

    async def token(self) -> SecretStr:
        cached = self._cached
        if cached is not None and not self._due(cached):
            return cached.value
        async with self._lock:
            cached = self._cached
            if cached is None or self._due(cached):
                cached = await self._renew(force=False)
            return cached.value

    async def refresh(self, rejected: SecretStr | None = None) -> SecretStr:
        async with self._lock:
            cached = self._cached
            if cached is not None and not _same(cached.value, rejected):
                return cached.value  # another caller already replaced the rejected token
            return (await self._renew(force=True)).value

    async def _renew(self, *, force: bool) -> AccessToken:
        replacing = self._cached is not None
        value, lifetime_s = await self._fetch(force=force)
        now_s = self._clock.now()
        self._cached = AccessToken(value, now_s, now_s + lifetime_s)
        self._metrics.token_fetches += 1
        if replacing:
            self._metrics.token_refreshes += 1
        _log.debug("%s: new token valid for %.0f s", self.description, lifetime_s)
        return self._cached

    async def aclose(self) -> None:
        self._cached = None


class _TokenCredential(Protocol):
    """The part of azure-identity's sync credentials used here."""

    def get_token(self, *scopes: str) -> Any: ...

    def close(self) -> None: ...


class AzureIdentityAuth(ExpiringTokenAuth):
    """A token from an azure-identity credential, for the AzureDatabricks scope.

    azure-identity's sync credentials run in a worker thread (the aio ones need aiohttp). A forced
    refresh builds a new credential: the old one would hand back its cached token.
    """

    def __init__(
        self,
        make_credential: Callable[[], _TokenCredential],
        *,
        description: str,
        clock: Clock,
        scope: str = AZURE_DATABRICKS_SCOPE,
        refresh_lead_s: float = DEFAULT_REFRESH_LEAD_S,
        metrics: ClientMetrics | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock=clock, refresh_lead_s=refresh_lead_s, metrics=metrics)
        self.description = description
        self._make_credential = make_credential
        self._scope = scope
        # azure-identity stamps expires_on with time.time(); convert it to a lifetime for our clock.
        self._wall_clock = wall_clock
        self._credential: _TokenCredential | None = None

    async def _fetch(self, *, force: bool) -> tuple[SecretStr, float]:
        from azure.core.exceptions import AzureError, ClientAuthenticationError, ServiceRequestError
        from azure.identity import CredentialUnavailableError

        if force or self._credential is None:
            self._close_credential()
            try:
                # In a worker thread: building it may read a `file:` secret reference.
                self._credential = await asyncio.to_thread(self._make_credential)
            except ValueError as exc:  # azure-identity validates tenant ids and authority URLs
                raise ConfigError(f"{self.description}: {_first_line(exc)}") from exc
        credential = self._credential
        try:
            token = await asyncio.to_thread(credential.get_token, self._scope)
        except CredentialUnavailableError as exc:
            raise DatabricksAuthError(
                f"{self.description} is not available here: {_first_line(exc)}"
            ) from exc
        except ClientAuthenticationError as exc:
            raise DatabricksAuthError(
                f"Microsoft Entra ID refused the {self.description}: {_first_line(exc)}"
            ) from exc
        except ServiceRequestError as exc:
            raise DatabricksTransportError(
                f"could not reach Microsoft Entra ID for the {self.description}: {_first_line(exc)}"
            ) from exc
        except AzureError as exc:
            raise DatabricksAuthError(
                f"no token for the {self.description}: {_first_line(exc)}"
            ) from exc
        return SecretStr(str(token.token)), float(token.expires_on) - self._wall_clock()

    def _close_credential(self) -> None:
        if self._credential is not None:
            self._credential.close()
            self._credential = None

    async def aclose(self) -> None:
        self._close_credential()
        await super().aclose()


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)


def _azure_transport_options(ca_bundle: Path | None) -> dict[str, Any]:
    return {"connection_verify": str(ca_bundle)} if ca_bundle else {}


class EntraServicePrincipalAuth(AzureIdentityAuth):
    """A Microsoft Entra ID service principal with a client secret (reference §9.2)."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: Secret,
        *,
        clock: Clock,
        authority_host: str = PUBLIC_AUTHORITY_HOST,
        disable_instance_discovery: bool = False,
        ca_bundle: Path | None = None,
        refresh_lead_s: float = DEFAULT_REFRESH_LEAD_S,
        metrics: ClientMetrics | None = None,
    ) -> None:
        revealed: list[SecretStr] = []

        def make_credential() -> _TokenCredential:
            from azure.identity import ClientSecretCredential

            # A `vault://` secret was read on the loop just before (`_fetch`); others here.
            value = revealed.pop() if revealed else _reveal_blocking(client_secret)
            credential: _TokenCredential = ClientSecretCredential(
                tenant_id,
                client_id,
                value.get_secret_value(),
                authority=authority_host,
                disable_instance_discovery=disable_instance_discovery,
                **_azure_transport_options(ca_bundle),
            )
            return credential

        super().__init__(
            make_credential,
            description=f"Entra ID service principal {client_id}",
            clock=clock,
            refresh_lead_s=refresh_lead_s,
            metrics=metrics,
        )
        self._client_secret = client_secret
        self._revealed = revealed

    async def _fetch(self, *, force: bool) -> tuple[SecretStr, float]:
        if rereads_secret(self._client_secret) and (force or self._credential is None):
            assert isinstance(self._client_secret, SecretReference)
            self._revealed[:] = [await self._client_secret.resolve_async(fresh=force)]
        return await super()._fetch(force=force)


class ManagedIdentityAuth(AzureIdentityAuth):
    """The host's Azure managed identity: IMDS or App Service's IDENTITY_ENDPOINT (§9.3)."""

    def __init__(
        self,
        client_id: str | None = None,
        *,
        clock: Clock,
        ca_bundle: Path | None = None,
        refresh_lead_s: float = DEFAULT_REFRESH_LEAD_S,
        metrics: ClientMetrics | None = None,
    ) -> None:
        def make_credential() -> _TokenCredential:
            from azure.identity import ManagedIdentityCredential

            credential: _TokenCredential = ManagedIdentityCredential(
                client_id=client_id, **_azure_transport_options(ca_bundle)
            )
            return credential

        which = f"user-assigned managed identity {client_id}" if client_id else "managed identity"
        super().__init__(
            make_credential,
            description=which,
            clock=clock,
            refresh_lead_s=refresh_lead_s,
            metrics=metrics,
        )


class AzureDefaultCredentialAuth(AzureIdentityAuth):
    """azure-identity's DefaultAzureCredential: environment, workload or managed identity, CLI."""

    def __init__(
        self,
        *,
        clock: Clock,
        managed_identity_client_id: str | None = None,
        ca_bundle: Path | None = None,
        refresh_lead_s: float = DEFAULT_REFRESH_LEAD_S,
        metrics: ClientMetrics | None = None,
    ) -> None:
        def make_credential() -> _TokenCredential:
            from azure.identity import DefaultAzureCredential

            credential: _TokenCredential = DefaultAzureCredential(
                managed_identity_client_id=managed_identity_client_id,
                **_azure_transport_options(ca_bundle),
            )
            return credential

        super().__init__(
            make_credential,
            description="default Azure credential",
            clock=clock,
            refresh_lead_s=refresh_lead_s,
            metrics=metrics,
        )


class DatabricksOAuthM2MAuth(ExpiringTokenAuth):
    """A Databricks-managed service principal: client credentials at /oidc/v1/token (§9.5)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        token_url: str,
        client_id: str,
        client_secret: Secret,
        *,
        clock: Clock,
        scope: str = "all-apis",
        refresh_lead_s: float = DEFAULT_REFRESH_LEAD_S,
        metrics: ClientMetrics | None = None,
    ) -> None:
        super().__init__(clock=clock, refresh_lead_s=refresh_lead_s, metrics=metrics)
        self.description = f"Databricks OAuth service principal {client_id}"
        self._http = http
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope

    async def _fetch(self, *, force: bool) -> tuple[SecretStr, float]:
        secret = (await _reveal(self._client_secret)).get_secret_value()
        try:
            response = await self._http.post(
                self._token_url,
                data={"grant_type": "client_credentials", "scope": self._scope},
                auth=httpx.BasicAuth(self._client_id, secret),
                headers={"Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise DatabricksTransportError(
                f"could not reach the Databricks token endpoint {self._token_url}: "
                f"{type(exc).__name__}: {redact(str(exc), secret)}"
            ) from exc
        path = httpx.URL(self._token_url).path
        if response.status_code != 200:
            error = error_from_response(
                response.status_code,
                response.headers,
                response.content,
                method="POST",
                path=path,
                secrets=(secret,),
            )
            if error.retryable:
                raise error
            raise DatabricksAuthError(
                f"the Databricks token endpoint refused the {self.description}: {error.message}",
                http_status=error.http_status,
                error_code=error.error_code,
                method="POST",
                path=path,
            )
        try:
            answer = response.json()
            access_token = answer["access_token"]
            lifetime_s = float(answer.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as exc:
            raise DatabricksAuthError(
                f"the Databricks token endpoint {self._token_url} answered without an access_token"
            ) from exc
        if not isinstance(access_token, str) or not access_token:
            raise DatabricksAuthError(
                f"the Databricks token endpoint {self._token_url} answered without an access_token"
            )
        return SecretStr(access_token), lifetime_s


def token_principal(token: SecretStr) -> str | None:
    """Who a JWT access token names (user, app id...), read without verifying it; None for a PAT."""
    parts = token.get_secret_value().split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(claims, dict):
        return None
    for claim in (
        "upn",
        "unique_name",
        "preferred_username",
        "email",
        "appid",
        "azp",
        "client_id",
        "sub",
    ):
        value = claims.get(claim)
        if isinstance(value, str) and value:
            return replace_unencodable(value)  # a token's text enters here too
    return None


async def check_secret_references(
    settings: WorkspaceSettings, scope: SecretScope = UNRESTRICTED
) -> None:
    """Resolve every secret reference the workspace's auth names, now, and forget the values:
    SecretReferenceError if one cannot be read (an unset `env:` variable, a missing file, a
    vault secret that cannot be read). Used before a run is recorded, so a command that cannot
    authenticate leaves no run to start. `scope` carries the Secret Vaults (D15)."""
    auth = settings.auth
    references: list[str] = []
    if isinstance(auth, PatAuthSettings):
        references.append(auth.token)
    elif isinstance(auth, EntraServicePrincipalAuthSettings | DatabricksOAuthM2MAuthSettings):
        references.append(auth.client_secret)
    for reference in references:
        await SecretReference.parse(reference, scope).resolve_async()


def build_auth(
    settings: WorkspaceSettings,
    *,
    http: httpx.AsyncClient,
    clock: Clock,
    metrics: ClientMetrics | None = None,
    secret_scope: SecretScope = UNRESTRICTED,
) -> TokenProvider:
    """The token provider a workspace's settings describe; its secret references must be within
    `secret_scope` (SecretReferenceError otherwise, docs/security.md)."""
    auth = settings.auth
    lead_s = settings.token_refresh_lead_s
    ca_bundle = settings.tls_ca_bundle
    if isinstance(auth, PatAuthSettings):
        return PatAuth(SecretReference.parse(auth.token, secret_scope), metrics=metrics)
    if isinstance(auth, EntraServicePrincipalAuthSettings):
        return EntraServicePrincipalAuth(
            auth.tenant_id,
            auth.client_id,
            SecretReference.parse(auth.client_secret, secret_scope),
            clock=clock,
            authority_host=auth.authority_host,
            disable_instance_discovery=auth.disable_instance_discovery,
            ca_bundle=ca_bundle,
            refresh_lead_s=lead_s,
            metrics=metrics,
        )
    if isinstance(auth, ManagedIdentityAuthSettings):
        return ManagedIdentityAuth(
            auth.client_id, clock=clock, ca_bundle=ca_bundle, refresh_lead_s=lead_s, metrics=metrics
        )
    if isinstance(auth, AzureDefaultCredentialAuthSettings):
        return AzureDefaultCredentialAuth(
            clock=clock,
            managed_identity_client_id=auth.managed_identity_client_id,
            ca_bundle=ca_bundle,
            refresh_lead_s=lead_s,
            metrics=metrics,
        )
    if isinstance(auth, DatabricksOAuthM2MAuthSettings):
        return DatabricksOAuthM2MAuth(
            http,
            settings.url + OIDC_TOKEN_PATH,
            auth.client_id,
            SecretReference.parse(auth.client_secret, secret_scope),
            clock=clock,
            scope=auth.scope,
            refresh_lead_s=lead_s,
            metrics=metrics,
        )
    assert_never(auth)
