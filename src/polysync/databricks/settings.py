"""A workspace connection: URL, auth, API version per endpoint, rate limits, retries, timeouts."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Literal

import httpx
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from polysync.databricks.endpoints import Endpoint
from polysync.domain.limits import (
    MAX_FIELD_CHARS,
    MAX_PATH_CHARS,
    MAX_URL_CHARS,
    refused_character,
    single_line,
)
from polysync.errors import SecretReferenceError
from polysync.secrets import SecretReference, read_regular_file

ApiVersion = Literal["2.0", "2.1", "2.2"]

# The AzureDatabricks first-party application: Entra tokens are issued for its `.default` scope
# (reference §9.2).
AZURE_DATABRICKS_RESOURCE_ID = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"
AZURE_DATABRICKS_SCOPE = f"{AZURE_DATABRICKS_RESOURCE_ID}/.default"
PUBLIC_AUTHORITY_HOST = "https://login.microsoftonline.com"


def _check_reference(value: str) -> str:
    try:
        return str(SecretReference.parse(value))
    except SecretReferenceError as exc:
        raise ValueError(exc.message) from exc


SecretRef = Annotated[str, AfterValidator(_check_reference)]
"""A validated secret reference (`env:NAME` or `file:PATH`), never the secret itself."""


Identifier = Annotated[
    str, Field(min_length=1, max_length=MAX_FIELD_CHARS), BeforeValidator(single_line)
]
"""A tenant id, client id or scope: one line, at most MAX_FIELD_CHARS."""


OptionalIdentifier = Annotated[
    str | None, Field(max_length=MAX_FIELD_CHARS), BeforeValidator(single_line)
]

# Bounds of the client options (docs/security.md "Limits"): a platform edit cannot make the
# server wait for hours, retry for ever, or open thousands of connections.
Rate = Annotated[float, Field(gt=0, le=10_000)]
"""Requests per second, at most 10,000 (an emulator benchmark; Databricks allows 20-100)."""
MAX_CA_BUNDLE_BYTES = 1024 * 1024


class _Model(BaseModel):
    # hide_input_in_errors: a secret pasted where a reference belongs must not be echoed back.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class PatAuthSettings(_Model):
    """A Databricks personal access token."""

    method: Literal["pat"] = "pat"
    token: SecretRef


class EntraServicePrincipalAuthSettings(_Model):
    """A Microsoft Entra ID service principal with a client secret (client-credentials flow)."""

    method: Literal["entra_service_principal"] = "entra_service_principal"
    tenant_id: Identifier
    client_id: Identifier
    client_secret: SecretRef
    # Sovereign clouds: https://login.microsoftonline.us, https://login.chinacloudapi.cn (§9.2).
    authority_host: str = Field(PUBLIC_AUTHORITY_HOST, max_length=MAX_URL_CHARS)
    # Needed for authority hosts Microsoft does not know (Azure Stack, the emulator): otherwise MSAL
    # validates the host against login.microsoftonline.com first.
    disable_instance_discovery: bool = False

    @field_validator("authority_host")
    @classmethod
    def _https_authority(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError(
                "authority_host must be an https:// URL (azure-identity refuses others)"
            )
        single_line(value)
        try:
            if not httpx.URL(value).host:
                raise ValueError("authority_host names no host")
        except httpx.InvalidURL as exc:
            raise ValueError(f"authority_host is not a URL: {exc}") from exc
        return value.rstrip("/")


class ManagedIdentityAuthSettings(_Model):
    """An Azure managed identity (system-assigned, or user-assigned when client_id is given)."""

    method: Literal["managed_identity"] = "managed_identity"
    client_id: OptionalIdentifier = None


class AzureDefaultCredentialAuthSettings(_Model):
    """Whatever Azure identity the host offers (environment, workload or managed identity, CLI)."""

    method: Literal["azure_default"] = "azure_default"
    managed_identity_client_id: OptionalIdentifier = None


class DatabricksOAuthM2MAuthSettings(_Model):
    """A Databricks-managed service principal with an OAuth secret (/oidc/v1/token, §9.5)."""

    method: Literal["databricks_oauth_m2m"] = "databricks_oauth_m2m"
    client_id: Identifier
    client_secret: SecretRef
    scope: Identifier = "all-apis"


AuthSettings = Annotated[
    PatAuthSettings
    | EntraServicePrincipalAuthSettings
    | ManagedIdentityAuthSettings
    | AzureDefaultCredentialAuthSettings
    | DatabricksOAuthM2MAuthSettings,
    Field(discriminator="method"),
]


class ApiVersions(_Model):
    """Jobs API version per endpoint: the specification's 2.1, except jobs/list (D5).

    jobs/list defaults to 2.2, measured (benchmarks/discovery_import.py): 2.0 pages by offset,
    capped at 1,000, so it cannot list past 1,100 jobs; 2.1 drops the tasks of jobs over 100 tasks
    (one jobs/get each); 2.2 pages by token and its 100 tasks + has_more suffice to classify.
    """

    jobs_list: ApiVersion = "2.2"
    jobs_get: ApiVersion = "2.1"
    jobs_create: ApiVersion = "2.1"
    jobs_delete: ApiVersion = "2.1"
    run_now: ApiVersion = "2.1"
    runs_get: ApiVersion = "2.1"
    runs_get_output: ApiVersion = "2.1"
    runs_list: ApiVersion = "2.1"
    runs_cancel: ApiVersion = "2.1"
    runs_cancel_all: ApiVersion = "2.1"
    runs_submit: ApiVersion = "2.1"
    runs_repair: ApiVersion = "2.1"
    # The Workspace and Pipelines APIs exist in 2.0 only.
    workspace_list: ApiVersion = "2.0"
    workspace_get_status: ApiVersion = "2.0"
    workspace_export: ApiVersion = "2.0"
    pipelines_list: ApiVersion = "2.0"
    pipelines_get: ApiVersion = "2.0"
    pipelines_start_update: ApiVersion = "2.0"
    pipelines_list_updates: ApiVersion = "2.0"
    pipelines_get_update: ApiVersion = "2.0"
    pipelines_stop: ApiVersion = "2.0"
    pipelines_events: ApiVersion = "2.0"

    def for_endpoint(self, endpoint: Endpoint) -> ApiVersion:
        version: ApiVersion = getattr(self, endpoint.key)
        return version


class RateLimits(_Model):
    """Requests per second per endpoint, shared by every caller of one workspace (reference §8)."""

    jobs_list: Rate = 20.0
    jobs_get: Rate = 20.0
    jobs_create: Rate = 20.0
    # Reference §8 lists jobs/delete at 10 rps, below the 30 rps used for unlisted endpoints.
    jobs_delete: Rate = 10.0
    run_now: Rate = 20.0
    runs_get: Rate = 100.0
    runs_get_output: Rate = 30.0
    runs_list: Rate = 30.0
    runs_cancel: Rate = 30.0
    runs_cancel_all: Rate = 30.0
    runs_submit: Rate = 20.0  # as run-now
    runs_repair: Rate = 20.0  # as run-now: it starts task runs
    # Unlisted in reference §8: the 30 rps Databricks applies to endpoints without their own.
    workspace_list: Rate = 30.0
    workspace_get_status: Rate = 30.0
    workspace_export: Rate = 30.0
    pipelines_list: Rate = 30.0
    pipelines_get: Rate = 30.0
    pipelines_start_update: Rate = 30.0
    pipelines_list_updates: Rate = 30.0
    pipelines_get_update: Rate = 30.0
    pipelines_stop: Rate = 30.0
    pipelines_events: Rate = 30.0

    def for_endpoint(self, endpoint: Endpoint) -> float:
        rate: float = getattr(self, endpoint.key)
        return rate


class RetrySettings(_Model):
    """How long one call may keep retrying (D8; the official SDKs allow 300 s, reference §7)."""

    deadline_s: float = Field(300.0, gt=0, le=3600)
    max_attempts: int = Field(10, ge=1, le=100)
    backoff_base_s: float = Field(1.0, gt=0, le=60)
    backoff_max_s: float = Field(30.0, gt=0, le=600)
    # Databricks sends Retry-After in integer seconds; the SDK waits 1 s when it is missing (§7).
    default_retry_after_s: float = Field(1.0, gt=0, le=300)


class WorkspaceSettings(_Model):
    """How to reach and authenticate to one Azure Databricks workspace."""

    url: str = Field(max_length=MAX_URL_CHARS)
    auth: AuthSettings
    api_versions: ApiVersions = ApiVersions()
    rate_limits: RateLimits = RateLimits()
    retry: RetrySettings = RetrySettings()
    # The SDKs use 60 s per request (reference §7).
    # At least 1 s: below it every call times out (a run-now then never confirms).
    request_timeout_s: float = Field(60.0, ge=1, le=600)
    connect_timeout_s: float = Field(10.0, ge=0.5, le=120)
    # The backend refuses tokens 30 s before they expire (reference §7, §9): renew >= 5 min early.
    token_refresh_lead_s: float = Field(300.0, ge=300.0, le=3600)
    # CA bundle for a TLS proxy or the emulator's self-signed certificate (azure-identity too).
    tls_ca_bundle: Path | None = None
    max_connections: int = Field(100, ge=1, le=1000)

    @field_validator("tls_ca_bundle")
    @classmethod
    def _pem_bundle(cls, value: Path | None) -> Path | None:
        """A readable regular file of at most 1 MiB holding PEM certificates that load."""
        if value is None:
            return None
        check_ca_bundle(value)
        return value

    @field_validator("url")
    @classmethod
    def _workspace_url(cls, value: str) -> str:
        single_line(value)
        try:
            url = httpx.URL(value.strip())
        except httpx.InvalidURL as exc:
            raise ValueError(f"workspace url {value!r} is not a URL: {exc}") from exc
        if url.scheme not in ("https", "http") or not url.host:
            raise ValueError(
                f"workspace url {value!r} must look like https://adb-<workspace-id>.<n>.azuredatabricks.net"
            )
        if url.query or url.fragment or url.path not in ("", "/"):
            raise ValueError(f"workspace url {value!r} must have no path, query or fragment")
        return f"{url.scheme}://{url.netloc.decode('ascii')}"


def check_ca_bundle(path: Path) -> None:
    """ValueError unless `path` is a readable regular file of at most 1 MiB of PEM certificates
    that `ssl` loads (a FIFO or a device is refused without blocking)."""
    text = str(path)
    if len(text) > MAX_PATH_CHARS or refused_character(text) is not None:
        raise ValueError("tls_ca_bundle is not a usable path")
    try:
        data = read_regular_file(path, max_bytes=MAX_CA_BUNDLE_BYTES)
    except OSError as exc:
        raise ValueError(
            f"tls_ca_bundle {path} cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    except ValueError as exc:
        raise ValueError(f"tls_ca_bundle {path} {exc}") from None
    pem = data.decode("ascii", errors="replace")
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError(
            f"tls_ca_bundle {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"tls_ca_bundle {path} is not a valid PEM CA bundle: {exc}") from None
