"""Real clients, unchanged, get tokens from the emulator over a socket; the guard accepts them."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from databricks.sdk import WorkspaceClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from polysync.clock import SystemClock
from polysync.emulator.auth import (
    DATABRICKS_ENTRA_SCOPE,
    AuthConfig,
    BearerAuthMiddleware,
    EntraServicePrincipal,
    ManagedIdentity,
    OAuthClient,
    TokenIssuer,
)
from polysync.emulator.identity import identity_routes
from polysync.emulator.serving import run_in_thread
from polysync.emulator.tls import TlsFiles, make_self_signed_cert

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SP_ID, SP_SECRET = "5b2f1a1e-0c5d-4a4e-9c3a-7d1c1b2e3f40", "entra-secret-value"
M2M_ID, M2M_SECRET = "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e", "oauth-secret-value"
MI_HEADER = "identity-header-value"


async def list_jobs(request: Request) -> Response:
    return JSONResponse({"jobs": [{"job_id": 11, "settings": {"name": "nightly"}}]})


def emulator() -> BearerAuthMiddleware:
    config = AuthConfig(
        service_principals=[
            EntraServicePrincipal(tenant_id=TENANT, client_id=SP_ID, client_secret=SP_SECRET)
        ],
        oauth_clients=[OAuthClient(client_id=M2M_ID, client_secret=M2M_SECRET)],
        managed_identity=ManagedIdentity(identity_header=MI_HEADER),
    )
    # Real time: MSAL turns App Service's `expires_on` into a lifetime with time.time().
    issuer = TokenIssuer(SystemClock())
    inner = Starlette(
        routes=[Route("/api/2.2/jobs/list", list_jobs), *identity_routes(config, issuer)]
    )
    return BearerAuthMiddleware(inner, config, issuer)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "DATABRICKS_", "ARM_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", "/nonexistent/.databrickscfg")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def https_url(tls: TlsFiles) -> Iterator[str]:
    base_url, stop = run_in_thread(emulator(), tls=tls)
    try:
        yield base_url
    finally:
        stop()


@pytest.fixture
def http_url() -> Iterator[str]:
    base_url, stop = run_in_thread(emulator())
    try:
        yield base_url
    finally:
        stop()


def jobs_status(base_url: str, token: str, tls: TlsFiles | None = None) -> int:
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(tls.ca_path)) if tls else True
    )
    with httpx.Client(verify=verify) as http:
        answer = http.get(
            f"{base_url}/api/2.2/jobs/list", headers={"Authorization": f"Bearer {token}"}
        )
    return answer.status_code


def test_azure_identity_client_secret_credential(https_url: str, tls: TlsFiles) -> None:
    # MSAL sends instance discovery for any authority host it does not know to
    # login.microsoftonline.com itself, so it must be off; tenant discovery comes to the emulator.
    credential = ClientSecretCredential(
        TENANT,
        SP_ID,
        SP_SECRET,
        authority=https_url,
        disable_instance_discovery=True,
        connection_verify=str(tls.ca_path),
    )
    with credential:
        token = credential.get_token(DATABRICKS_ENTRA_SCOPE)
    assert jobs_status(https_url, token.token, tls) == 200
    assert jobs_status(https_url, token.token + "x", tls) == 403


def test_azure_identity_reports_a_wrong_secret(https_url: str, tls: TlsFiles) -> None:
    credential = ClientSecretCredential(
        TENANT,
        SP_ID,
        "not-the-secret",
        authority=https_url,
        disable_instance_discovery=True,
        connection_verify=str(tls.ca_path),
    )
    with credential, pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        credential.get_token(DATABRICKS_ENTRA_SCOPE)


def test_managed_identity_on_app_service(http_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{http_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", MI_HEADER)
    with ManagedIdentityCredential() as credential:
        token = credential.get_token(DATABRICKS_ENTRA_SCOPE)
    assert jobs_status(http_url, token.token) == 200


def test_managed_identity_with_a_wrong_identity_header(
    http_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{http_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "stale-header")
    with ManagedIdentityCredential() as credential, pytest.raises(ClientAuthenticationError):
        credential.get_token(DATABRICKS_ENTRA_SCOPE)


def test_managed_identity_through_imds(http_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # azure-identity and msal send IMDS requests to AZURE_POD_IDENTITY_AUTHORITY_HOST when set.
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", http_url)
    with ManagedIdentityCredential() as credential:
        token = credential.get_token(DATABRICKS_ENTRA_SCOPE)
    assert jobs_status(http_url, token.token) == 200


def test_databricks_sdk_oauth_m2m(
    https_url: str, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_path))
    client = WorkspaceClient(
        host=https_url, client_id=M2M_ID, client_secret=M2M_SECRET, auth_type="oauth-m2m"
    )
    assert [job.settings.name for job in client.jobs.list() if job.settings] == ["nightly"]
