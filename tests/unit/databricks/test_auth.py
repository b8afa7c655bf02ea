"""Token caching, renewal ahead of expiry, single-flight refresh, and azure-identity translation."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken as AzureAccessToken
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity import CredentialUnavailableError
from pydantic import SecretStr

from polysync.clock import ManualClock
from polysync.databricks.auth import (
    AzureDefaultCredentialAuth,
    AzureIdentityAuth,
    DatabricksOAuthM2MAuth,
    EntraServicePrincipalAuth,
    ExpiringTokenAuth,
    ManagedIdentityAuth,
    PatAuth,
    build_auth,
    token_principal,
)
from polysync.databricks.metrics import ClientMetrics
from polysync.databricks.settings import WorkspaceSettings
from polysync.errors import (
    ConfigError,
    DatabricksAuthError,
    DatabricksTransportError,
    SecretReferenceError,
)
from polysync.secrets import SecretReference

HOUR_S = 3600.0


class ScriptedAuth(ExpiringTokenAuth):
    """Hands out token-1, token-2, ... each valid `lifetime_s`; counts fetches."""

    def __init__(self, clock: ManualClock, lifetime_s: float = HOUR_S, **kwargs: Any) -> None:
        super().__init__(clock=clock, **kwargs)
        self.lifetime_s = lifetime_s
        self.fetches: list[bool] = []
        self.gate: asyncio.Event | None = None

    async def _fetch(self, *, force: bool) -> tuple[SecretStr, float]:
        self.fetches.append(force)
        if self.gate is not None:
            await self.gate.wait()
        return SecretStr(f"token-{len(self.fetches)}"), self.lifetime_s


async def test_token_is_cached_until_the_refresh_lead() -> None:
    clock = ManualClock()
    metrics = ClientMetrics()
    auth = ScriptedAuth(clock, refresh_lead_s=300.0, metrics=metrics)
    assert (await auth.token()).get_secret_value() == "token-1"
    clock.advance(HOUR_S - 300.0 - 1.0)
    assert (await auth.token()).get_secret_value() == "token-1"
    clock.advance(1.0)  # 5 minutes before expiry: renewed, well before the backend's 30 s cut-off
    assert (await auth.token()).get_secret_value() == "token-2"
    assert auth.fetches == [False, False]
    assert (metrics.token_fetches, metrics.token_refreshes) == (2, 1)


async def test_the_lead_is_capped_at_half_a_short_lifetime() -> None:
    clock = ManualClock()
    auth = ScriptedAuth(clock, lifetime_s=120.0, refresh_lead_s=300.0)
    await auth.token()
    clock.advance(59.0)
    assert (await auth.token()).get_secret_value() == "token-1"
    clock.advance(1.0)
    assert (await auth.token()).get_secret_value() == "token-2"


async def test_concurrent_callers_share_one_fetch() -> None:
    clock = ManualClock()
    auth = ScriptedAuth(clock)
    auth.gate = asyncio.Event()
    callers = [asyncio.create_task(auth.token()) for _ in range(20)]
    for _ in range(5):
        await asyncio.sleep(0)
    auth.gate.set()
    tokens = await asyncio.gather(*callers)
    assert {t.get_secret_value() for t in tokens} == {"token-1"}
    assert len(auth.fetches) == 1


async def test_refresh_replaces_the_rejected_token_once() -> None:
    clock = ManualClock()
    auth = ScriptedAuth(clock)
    first = await auth.token()
    # Many requests failed with the same expired token: only the first refresh fetches.
    refreshed = await asyncio.gather(*(auth.refresh(first) for _ in range(5)))
    assert {t.get_secret_value() for t in refreshed} == {"token-2"}
    assert auth.fetches == [False, True]
    # A refresh for a token that is still current does fetch.
    assert (await auth.refresh(refreshed[0])).get_secret_value() == "token-3"


async def test_pat_is_read_from_its_reference_and_reread_on_refresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLYSYNC_TEST_PAT", "dapi-one")
    metrics = ClientMetrics()
    auth = PatAuth(SecretReference.parse("env:POLYSYNC_TEST_PAT"), metrics=metrics)
    assert auth.description == "personal access token"
    first = await auth.token()
    assert first.get_secret_value() == "dapi-one"
    monkeypatch.setenv("POLYSYNC_TEST_PAT", "dapi-two")  # rotated
    assert (await auth.token()).get_secret_value() == "dapi-one"  # cached
    assert (await auth.refresh(first)).get_secret_value() == "dapi-two"
    assert (await auth.refresh(first)).get_secret_value() == "dapi-two"  # already replaced
    assert (metrics.token_fetches, metrics.token_refreshes) == (2, 1)


async def test_pat_given_directly() -> None:
    auth = PatAuth(SecretStr("dapi-direct"))
    assert (await auth.token()).get_secret_value() == "dapi-direct"


async def test_a_missing_secret_is_a_config_error_without_the_value() -> None:
    auth = PatAuth(SecretReference("env", "POLYSYNC_TEST_SURELY_UNSET_VARIABLE"))
    with pytest.raises(SecretReferenceError, match="POLYSYNC_TEST_SURELY_UNSET_VARIABLE"):
        await auth.token()


class FakeCredential:
    """Stands in for an azure-identity credential (the HTTP side is tested against the emulator)."""

    made: list[FakeCredential] = []

    def __init__(self, outcome: Any, expires_on: float) -> None:
        self.outcome = outcome
        self.expires_on = expires_on
        self.scopes: list[tuple[str, ...]] = []
        self.closed = False
        FakeCredential.made.append(self)

    def get_token(self, *scopes: str) -> AzureAccessToken:
        self.scopes.append(scopes)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return AzureAccessToken(f"{self.outcome}-{len(FakeCredential.made)}", int(self.expires_on))

    def close(self) -> None:
        self.closed = True


def azure_auth(outcome: Any, *, wall_now: float, expires_on: float) -> AzureIdentityAuth:
    FakeCredential.made = []
    return AzureIdentityAuth(
        lambda: FakeCredential(outcome, expires_on),
        description="Entra ID service principal app-1",
        clock=ManualClock(),
        wall_clock=lambda: wall_now,
    )


async def test_azure_expiry_is_converted_to_the_client_clock() -> None:
    # azure-identity stamps expires_on with the real wall clock; our clock may be a ManualClock.
    auth = azure_auth("aad", wall_now=2_000_000_000.0, expires_on=2_000_000_000.0 + HOUR_S)
    token = await auth.token()
    assert token.get_secret_value() == "aad-1"
    cached = auth._cached
    assert cached is not None
    assert cached.expires_at_s - cached.issued_at_s == pytest.approx(HOUR_S)
    assert FakeCredential.made[0].scopes == [("2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default",)]


async def test_azure_forced_refresh_uses_a_new_credential() -> None:
    auth = azure_auth("aad", wall_now=0.0, expires_on=HOUR_S)
    first = await auth.token()
    second = await auth.refresh(first)
    assert second.get_secret_value() == "aad-2"
    assert len(FakeCredential.made) == 2
    assert FakeCredential.made[0].closed
    await auth.aclose()
    assert FakeCredential.made[1].closed


@pytest.mark.parametrize(
    ("failure", "error_type", "text"),
    [
        (
            ClientAuthenticationError("AADSTS7000215: Invalid client secret provided.\ntrace"),
            DatabricksAuthError,
            "Microsoft Entra ID refused the Entra ID service principal app-1: AADSTS7000215",
        ),
        (
            CredentialUnavailableError("ManagedIdentityCredential authentication unavailable"),
            DatabricksAuthError,
            "is not available here: ManagedIdentityCredential authentication unavailable",
        ),
        (
            ServiceRequestError("Connection refused"),
            DatabricksTransportError,
            "could not reach Microsoft Entra ID",
        ),
    ],
)
async def test_azure_failures_are_translated(
    failure: Exception, error_type: type[Exception], text: str
) -> None:
    auth = azure_auth(failure, wall_now=0.0, expires_on=HOUR_S)
    with pytest.raises(error_type, match=text) as caught:
        await auth.token()
    assert caught.value.__cause__ is failure
    assert "\n" not in str(caught.value)


async def test_an_unusable_credential_setting_is_a_config_error() -> None:
    def refuse() -> FakeCredential:
        raise ValueError("Invalid tenant ID provided. You can locate your tenant ID by ...")

    auth = AzureIdentityAuth(
        refuse, description="Entra ID service principal app-1", clock=ManualClock()
    )
    with pytest.raises(ConfigError, match="app-1: Invalid tenant ID provided"):
        await auth.token()


def _jwt(claims: dict[str, Any]) -> SecretStr:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return SecretStr(f"{part({'alg': 'RS256'})}.{part(claims)}.signature")


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (_jwt({"upn": "someone@contoso.com", "appid": "x"}), "someone@contoso.com"),
        (_jwt({"appid": "11111111-2222", "sub": "s"}), "11111111-2222"),
        (_jwt({"sub": "only-sub"}), "only-sub"),
        (_jwt({"upn": "mallory\ud800\x00@contoso.com"}), "mallory\ufffd\ufffd@contoso.com"),
        (_jwt({"nothing": 1}), None),
        (SecretStr("dapi0123456789abcdef"), None),
        (SecretStr("a.!!!.c"), None),
        (SecretStr("a.W10.c"), None),  # a JSON list, not claims
    ],
)
def test_token_principal(token: SecretStr, expected: str | None) -> None:
    assert token_principal(token) == expected


@pytest.mark.parametrize(
    ("auth", "provider", "description"),
    [
        ({"method": "pat", "token": "env:PAT"}, PatAuth, "personal access token"),
        (
            {
                "method": "entra_service_principal",
                "tenant_id": "t",
                "client_id": "app-1",
                "client_secret": "env:SECRET",
            },
            EntraServicePrincipalAuth,
            "Entra ID service principal app-1",
        ),
        ({"method": "managed_identity"}, ManagedIdentityAuth, "managed identity"),
        (
            {"method": "managed_identity", "client_id": "mi-1"},
            ManagedIdentityAuth,
            "user-assigned managed identity mi-1",
        ),
        ({"method": "azure_default"}, AzureDefaultCredentialAuth, "default Azure credential"),
        (
            {"method": "databricks_oauth_m2m", "client_id": "sp-1", "client_secret": "file:/s"},
            DatabricksOAuthM2MAuth,
            "Databricks OAuth service principal sp-1",
        ),
    ],
)
async def test_build_auth_per_method(
    auth: dict[str, Any], provider: type[Any], description: str
) -> None:
    settings = WorkspaceSettings.model_validate(
        {"url": "https://adb-1.2.azuredatabricks.net", "auth": auth}
    )
    async with httpx.AsyncClient() as http:
        built = build_auth(settings, http=http, clock=ManualClock())
        assert isinstance(built, provider)
        assert built.description == description
        await built.aclose()
