"""A Secret Vault's connection: vault URL, how to sign in, challenge check, CA bundle, cache TTL."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from polysync.databricks.policy import is_loopback
from polysync.databricks.settings import (
    PUBLIC_AUTHORITY_HOST,
    Identifier,
    OptionalIdentifier,
    check_ca_bundle,
)
from polysync.domain.limits import MAX_URL_CHARS, single_line
from polysync.errors import SecretReferenceError
from polysync.secrets import SecretReference

KEY_VAULT_DNS_SUFFIXES = (
    "vault.azure.net",
    "vault.azure.cn",
    "vault.usgovcloudapi.net",
    "vault.microsoftazure.de",
    "managedhsm.azure.net",
)
"""Where Azure Key Vault answers: the public cloud and the sovereign ones."""
DEFAULT_CACHE_TTL_S = 60.0
MAX_CACHE_TTL_S = 3600.0


def _local_reference(value: str) -> str:
    """A vault's own client secret comes from `env:`/`file:`: a vault cannot unlock itself."""
    try:
        reference = SecretReference.parse(value)
    except SecretReferenceError as exc:
        raise ValueError(exc.message) from exc
    if reference.scheme == "vault":
        raise ValueError(
            "a Secret Vault's client secret must be an `env:NAME` or `file:PATH` reference: it "
            "is what opens a vault, so it cannot be read from one"
        )
    return str(reference)


LocalSecretRef = Annotated[str, AfterValidator(_local_reference)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class VaultServicePrincipal(_Model):
    """A Microsoft Entra ID service principal with a client secret given by reference."""

    method: Literal["entra_service_principal"] = "entra_service_principal"
    tenant_id: Identifier
    client_id: Identifier
    client_secret: LocalSecretRef
    authority_host: str = Field(PUBLIC_AUTHORITY_HOST, max_length=MAX_URL_CHARS)
    disable_instance_discovery: bool = False

    @field_validator("authority_host")
    @classmethod
    def _https_authority(cls, value: str) -> str:
        single_line(value)
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"authority_host is not a URL: {exc}") from exc
        if url.scheme != "https" or not url.host:
            raise ValueError(
                "authority_host must be an https:// URL (azure-identity refuses others)"
            )
        return value.rstrip("/")


class VaultManagedIdentity(_Model):
    """The host's managed identity (user-assigned when client_id is given)."""

    method: Literal["managed_identity"] = "managed_identity"
    client_id: OptionalIdentifier = None


class VaultDefaultCredential(_Model):
    """azure-identity's DefaultAzureCredential (environment, workload identity, managed identity, CLI)."""

    method: Literal["azure_default"] = "azure_default"
    managed_identity_client_id: OptionalIdentifier = None


VaultAuth = Annotated[
    VaultServicePrincipal | VaultManagedIdentity | VaultDefaultCredential,
    Field(discriminator="method"),
]


class KeyVaultSettings(_Model):
    """How to read one Azure Key Vault (D15).

    `verify_challenge_resource`: whether the Key Vault client checks that the 401 challenge's
    resource matches the vault's host (azure-keyvault-secrets' default). None: on for every vault
    except one on loopback (the emulator, whose URL is not `*.vault.azure.net`).
    `cache_ttl_s`: how long a secret read is reused (0-3600 s): a rotation is used at the first
    read after it.
    """

    url: str = Field(max_length=MAX_URL_CHARS)
    auth: VaultAuth
    verify_challenge_resource: bool | None = None
    tls_ca_bundle: Path | None = None
    cache_ttl_s: float = Field(DEFAULT_CACHE_TTL_S, ge=0, le=MAX_CACHE_TTL_S)

    @field_validator("url")
    @classmethod
    def _vault_url(cls, value: str) -> str:
        single_line(value)
        try:
            url = httpx.URL(value.strip())
        except httpx.InvalidURL as exc:
            raise ValueError(f"vault url {value[:200]!r} is not a URL: {exc}") from exc
        if url.scheme != "https" or not url.host:
            raise ValueError(
                f"vault url {value[:200]!r} must be https://<vault-name>.vault.azure.net (Key "
                "Vault clients send their token over https only)"
            )
        if url.userinfo or url.query or url.fragment or url.path not in ("", "/"):
            raise ValueError(
                f"vault url {value[:200]!r} must have no user, path, query or fragment"
            )
        return f"https://{url.netloc.decode('ascii')}"

    @field_validator("tls_ca_bundle")
    @classmethod
    def _pem_bundle(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_ca_bundle(value)
        return value

    @property
    def host(self) -> str:
        return httpx.URL(self.url).host

    @property
    def verifies_challenge(self) -> bool:
        if self.verify_challenge_resource is not None:
            return self.verify_challenge_resource
        return not is_loopback(self.host)

    @property
    def is_key_vault_host(self) -> bool:
        host = self.host.rstrip(".").lower()
        return any(host.endswith("." + suffix) for suffix in KEY_VAULT_DNS_SUFFIXES)


def settings_of(vault_url: str, auth: object, options: object) -> KeyVaultSettings:
    """A vault record's settings (pydantic ValidationError when they are not valid)."""
    extra = dict(options) if isinstance(options, Mapping) else {}
    return KeyVaultSettings.model_validate({"url": vault_url, "auth": auth, **extra})
