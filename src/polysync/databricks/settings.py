"""A workspace connection: URL, auth, API version per endpoint, rate limits, retries, timeouts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveFloat, field_validator

from polysync.databricks.endpoints import Endpoint
from polysync.errors import SecretReferenceError
from polysync.secrets import SecretReference

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
    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretRef
    # Sovereign clouds: https://login.microsoftonline.us, https://login.chinacloudapi.cn (§9.2).
    authority_host: str = PUBLIC_AUTHORITY_HOST
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
        return value.rstrip("/")


class ManagedIdentityAuthSettings(_Model):
    """An Azure managed identity (system-assigned, or user-assigned when client_id is given)."""

    method: Literal["managed_identity"] = "managed_identity"
    client_id: str | None = None


class AzureDefaultCredentialAuthSettings(_Model):
    """Whatever Azure identity the host offers (environment, workload or managed identity, CLI)."""

    method: Literal["azure_default"] = "azure_default"
    managed_identity_client_id: str | None = None


class DatabricksOAuthM2MAuthSettings(_Model):
    """A Databricks-managed service principal with an OAuth secret (/oidc/v1/token, §9.5)."""

    method: Literal["databricks_oauth_m2m"] = "databricks_oauth_m2m"
    client_id: str = Field(min_length=1)
    client_secret: SecretRef
    scope: str = "all-apis"


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

    def for_endpoint(self, endpoint: Endpoint) -> ApiVersion:
        version: ApiVersion = getattr(self, endpoint.key)
        return version


class RateLimits(_Model):
    """Requests per second per endpoint, shared by every caller of one workspace (reference §8)."""

    jobs_list: PositiveFloat = 20.0
    jobs_get: PositiveFloat = 20.0
    jobs_create: PositiveFloat = 20.0
    # Reference §8 lists jobs/delete at 10 rps, below the 30 rps used for unlisted endpoints.
    jobs_delete: PositiveFloat = 10.0
    run_now: PositiveFloat = 20.0
    runs_get: PositiveFloat = 100.0
    runs_get_output: PositiveFloat = 30.0
    runs_list: PositiveFloat = 30.0
    runs_cancel: PositiveFloat = 30.0
    runs_cancel_all: PositiveFloat = 30.0

    def for_endpoint(self, endpoint: Endpoint) -> float:
        rate: float = getattr(self, endpoint.key)
        return rate


class RetrySettings(_Model):
    """How long one call may keep retrying (D8; the official SDKs allow 300 s, reference §7)."""

    deadline_s: PositiveFloat = 300.0
    max_attempts: int = Field(10, ge=1)
    backoff_base_s: PositiveFloat = 1.0
    backoff_max_s: PositiveFloat = 30.0
    # Databricks sends Retry-After in integer seconds; the SDK waits 1 s when it is missing (§7).
    default_retry_after_s: PositiveFloat = 1.0


class WorkspaceSettings(_Model):
    """How to reach and authenticate to one Azure Databricks workspace."""

    url: str
    auth: AuthSettings
    api_versions: ApiVersions = ApiVersions()
    rate_limits: RateLimits = RateLimits()
    retry: RetrySettings = RetrySettings()
    # The SDKs use 60 s per request (reference §7).
    request_timeout_s: PositiveFloat = 60.0
    connect_timeout_s: PositiveFloat = 10.0
    # The backend refuses tokens 30 s before they expire (reference §7, §9): renew >= 5 min early.
    token_refresh_lead_s: float = Field(300.0, ge=300.0)
    # CA bundle for a TLS proxy or the emulator's self-signed certificate (azure-identity too).
    tls_ca_bundle: Path | None = None
    max_connections: int = Field(100, ge=1)

    @field_validator("url")
    @classmethod
    def _workspace_url(cls, value: str) -> str:
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
