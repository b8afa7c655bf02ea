"""An emulated Azure Key Vault: secrets with versions, soft delete and access policies.

Also the `vault:` entry of a workspace file and Key Vault's error shape; `keyvault_api` serves it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from starlette.responses import JSONResponse, Response

SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
MAX_SECRET_BYTES = 25 * 1024  # Key Vault's limit on a secret value (service limits page)
SecretPermission = Literal["get", "list", "set", "delete", "recover", "purge", "backup", "restore"]
ALL_PERMISSIONS: tuple[SecretPermission, ...] = (
    "get",
    "list",
    "set",
    "delete",
    "recover",
    "purge",
    "backup",
    "restore",
)


class VaultSecretEntry(BaseModel):
    """A secret of the workspace file's vault (its first version)."""

    model_config = ConfigDict(extra="forbid")

    value: SecretStr
    content_type: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True


class VaultAccessPolicy(BaseModel):
    """Secret permissions of one principal (Entra application or managed identity client id)."""

    model_config = ConfigDict(extra="forbid")

    client_id: str
    permissions: list[SecretPermission] = Field(default_factory=lambda: list(ALL_PERMISSIONS))


class VaultEntry(BaseModel):
    """The emulated vault of a workspace file (`vault:`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "demo-kv"
    tenant_id: str
    location: str = "westeurope"
    secrets: dict[str, VaultSecretEntry] = Field(default_factory=dict)
    # None: every principal the emulator issues tokens to may do everything.
    access_policies: list[VaultAccessPolicy] | None = None
    soft_delete_retention_days: int = Field(90, ge=7, le=90)

    @field_validator("secrets")
    @classmethod
    def _names(cls, value: dict[str, VaultSecretEntry]) -> dict[str, VaultSecretEntry]:
        for name in value:
            if not SECRET_NAME.match(name):
                raise ValueError(f"secret name {name!r} must be 1-127 letters, digits and '-'")
        return value


class KeyVaultError(Exception):
    """An error answer of Key Vault: status, `error.code`, `error.message`, optional inner code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        inner: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.inner, self.headers = inner, headers or {}

    def to_response(self) -> Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner is not None:
            error["innererror"] = {"code": self.inner}
        return JSONResponse({"error": error}, status_code=self.status, headers=self.headers)


def _secret_not_found(name: str) -> KeyVaultError:
    return KeyVaultError(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {name} was not found in this key vault. If you recently deleted "
        "this secret you may be able to recover it using the correct recovery command. For help "
        "resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def bad_parameter(message: str) -> KeyVaultError:
    """400 `BadParameter`, Key Vault's answer to a malformed request."""
    return KeyVaultError(400, "BadParameter", message)


@dataclass(slots=True)
class SecretVersion:
    version: str
    value: str = field(repr=False)
    content_type: str | None
    tags: dict[str, str]
    enabled: bool
    created_s: int
    updated_s: int


@dataclass(slots=True)
class Secret:
    name: str
    versions: list[SecretVersion] = field(default_factory=list)  # oldest first
    deleted_s: int | None = None

    @property
    def latest(self) -> SecretVersion:
        return self.versions[-1]


class Vault:
    """The secrets of one vault: versions, soft delete, access policies."""

    def __init__(self, entry: VaultEntry, now_s: Callable[[], float], *, seed: int) -> None:
        self.name = entry.name
        self.tenant_id = entry.tenant_id
        self.location = entry.location
        self.retention_days = entry.soft_delete_retention_days
        self.policies = (
            None
            if entry.access_policies is None
            else {p.client_id: set(p.permissions) for p in entry.access_policies}
        )
        self._now_s = now_s
        self._rng = random.Random(seed ^ 0xCAFE)
        self.secrets: dict[str, Secret] = {}
        for name, secret in entry.secrets.items():
            self.set(
                name,
                secret.value.get_secret_value(),
                content_type=secret.content_type,
                tags=dict(secret.tags),
                enabled=secret.enabled,
            )

    def _now(self) -> int:
        return int(self._now_s())

    def set(
        self,
        name: str,
        value: str,
        *,
        content_type: str | None = None,
        tags: dict[str, str] | None = None,
        enabled: bool = True,
    ) -> tuple[Secret, SecretVersion]:
        """A new version of `name` (creating it); a soft-deleted name is a 409 Conflict."""
        if not SECRET_NAME.match(name):
            raise bad_parameter(
                f"The request URI contains an invalid name: {name[:130]}. Secret names may contain "
                "only 1-127 letters, digits and dashes."
            )
        if len(value.encode("utf-8")) > MAX_SECRET_BYTES:
            raise bad_parameter(
                f"The secret value exceeds the maximum of {MAX_SECRET_BYTES} bytes."
            )
        secret = self.secrets.get(name)
        if secret is not None and secret.deleted_s is not None:
            raise KeyVaultError(
                409,
                "Conflict",
                f"Secret {name} is currently in a deleted but recoverable state, and its name "
                "cannot be reused; in this state, the secret can only be recovered or purged.",
                inner="ObjectIsDeletedButRecoverable",
            )
        if secret is None:
            secret = self.secrets[name] = Secret(name)
        now = self._now()
        version = SecretVersion(
            version=f"{self._rng.getrandbits(128):032x}",
            value=value,
            content_type=content_type,
            tags=dict(tags or {}),
            enabled=enabled,
            created_s=now,
            updated_s=now,
        )
        secret.versions.append(version)
        return secret, version

    def live(self, name: str) -> Secret:
        secret = self.secrets.get(name)
        if secret is None or secret.deleted_s is not None:
            raise _secret_not_found(name)
        return secret

    def version(self, name: str, version: str | None) -> tuple[Secret, SecretVersion]:
        secret = self.live(name)
        if not version:
            return secret, secret.latest
        for candidate in secret.versions:
            if candidate.version == version:
                return secret, candidate
        raise _secret_not_found(f"{name}/{version}")

    def deleted(self, name: str) -> Secret:
        secret = self.secrets.get(name)
        if secret is None or secret.deleted_s is None:
            raise KeyVaultError(
                404,
                "SecretNotFound",
                f"Deleted Secret not found: {name}",
            )
        return secret

    def delete(self, name: str) -> Secret:
        secret = self.live(name)
        secret.deleted_s = self._now()
        return secret

    def recover(self, name: str) -> Secret:
        secret = self.deleted(name)
        secret.deleted_s = None
        return secret

    def purge(self, name: str) -> None:
        self.deleted(name)
        del self.secrets[name]

    def allows(self, client_id: str, permission: str) -> bool:
        if self.policies is None:
            return True
        return permission in self.policies.get(client_id, set())
