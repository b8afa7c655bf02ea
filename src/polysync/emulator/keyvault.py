"""The Azure Key Vault secrets REST API, served at the emulator's own base URL (so the vault URL of
the emulated vault is the emulator's URL), with Entra bearer auth for the Key Vault audience.

Paths and shapes follow the client azure-keyvault-secrets 4.12 sends and parses
(`_generated/_operations/_operations.py`: `PUT /secrets/{name}`, `GET /secrets/{name}/{version}`
(an empty version, `/secrets/{name}/`, is the latest), `GET /secrets`, `GET /secrets/{name}/versions`,
`DELETE /secrets/{name}`, `GET|DELETE /deletedsecrets/{name}`, `POST /deletedsecrets/{name}/recover`,
`GET /deletedsecrets`; `?api-version=` on each), and the Key Vault REST reference (SecretBundle:
`value`, `id`, `contentType`, `tags`, `attributes` {`enabled`, `created`, `updated` (epoch s),
`recoveryLevel`, `recoverableDays`}; lists: `{"value": [...], "nextLink": ...}`; errors:
`{"error": {"code", "message"[, "innererror"]}}`).

Authentication is Key Vault's challenge protocol (azure-keyvault-secrets
`_shared/challenge_auth_policy.py`, `http_challenge.py`): a request without a bearer token gets 401
with `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
resource="https://vault.azure.net"`; the client reads the tenant from the path of `authorization`
and asks its credential for `https://vault.azure.net/.default`. Because that resource does not end
the emulator's host name, clients pass `verify_challenge_resource=False` (the documented switch).
"""

from __future__ import annotations

import json
import random
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from polysync.emulator.auth import KEYVAULT_RESOURCE, TokenIssuer, TokenState

SUPPORTED_API_VERSIONS = (
    "2016-10-01",
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-07-01",
    "2026-04-01",
)
SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
MAX_SECRET_BYTES = 25 * 1024  # Key Vault's limit on a secret value (service limits page)
DEFAULT_PAGE = 25
MAX_PAGE = 25  # `maxresults` is 1..25 for secrets (Key Vault REST reference)
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


def _bad_parameter(message: str) -> KeyVaultError:
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
            raise _bad_parameter(
                f"The request URI contains an invalid name: {name[:130]}. Secret names may contain "
                "only 1-127 letters, digits and dashes."
            )
        if len(value.encode("utf-8")) > MAX_SECRET_BYTES:
            raise _bad_parameter(
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


# ---------------------------------------------------------------------- rendering
def _attributes(vault: Vault, version: SecretVersion) -> dict[str, Any]:
    return {
        "enabled": version.enabled,
        "created": version.created_s,
        "updated": version.updated_s,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": vault.retention_days,
    }


def _item(
    base: str, vault: Vault, secret: Secret, version: SecretVersion, *, versioned: bool
) -> dict[str, Any]:
    """A SecretItem of the list calls (no value)."""
    path = f"{base}/secrets/{secret.name}" + (f"/{version.version}" if versioned else "")
    body: dict[str, Any] = {
        "id": path,
        "attributes": _attributes(vault, version),
        "tags": version.tags,
    }
    if version.content_type is not None:
        body["contentType"] = version.content_type
    return body


def _bundle(base: str, vault: Vault, secret: Secret, version: SecretVersion) -> dict[str, Any]:
    """A SecretBundle (get, set, recover)."""
    body = _item(base, vault, secret, version, versioned=True)
    body["value"] = version.value
    return body


def _deleted_bundle(base: str, vault: Vault, secret: Secret) -> dict[str, Any]:
    assert secret.deleted_s is not None
    body = _bundle(base, vault, secret, secret.latest)
    body["recoveryId"] = f"{base}/deletedsecrets/{secret.name}"
    body["deletedDate"] = secret.deleted_s
    body["scheduledPurgeDate"] = secret.deleted_s + vault.retention_days * 86_400
    return body


# ---------------------------------------------------------------------- HTTP
@dataclass(slots=True)
class KeyVaultService:
    """The vault plus what its routes need: the token issuer and the vault's base URL."""

    vault: Vault | None
    issuer: TokenIssuer
    host: str | None = None

    def base_url(self, request: Request) -> str:
        return (self.host or f"{request.url.scheme}://{request.url.netloc}").rstrip("/")


def _challenge(vault: Vault) -> dict[str, str]:
    return {
        "WWW-Authenticate": (
            f'Bearer authorization="https://login.microsoftonline.com/{vault.tenant_id}", '
            f'resource="{KEYVAULT_RESOURCE}"'
        )
    }


def _authorize(service: KeyVaultService, vault: Vault, request: Request, permission: str) -> None:
    """Key Vault's bearer check: 401 with the challenge, or 403 without the permission."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    challenge = _challenge(vault)
    if scheme.lower() != "bearer" or not token:
        raise KeyVaultError(
            401,
            "Unauthorized",
            "AKV10000: Request is missing a Bearer or PoP token.",
            headers=challenge,
        )
    state = service.issuer.check(token, KEYVAULT_RESOURCE)
    granted = service.issuer.subject_of(token)
    if state is TokenState.EXPIRED:
        raise KeyVaultError(
            401,
            "Unauthorized",
            "[TokenExpired] Error validating token: 'S2S12086'.",
            headers=challenge,
        )
    if state is TokenState.UNKNOWN or granted is None:
        if granted is not None:  # issued, but for another audience
            raise KeyVaultError(
                401,
                "Unauthorized",
                f"AKV10022: Invalid audience. Expected {KEYVAULT_RESOURCE}, found: {granted[1]}.",
                headers=challenge,
            )
        raise KeyVaultError(
            401,
            "Unauthorized",
            "[BearerReadAccessTokenFailed] Error validating token: 'S2S12005'.",
            headers=challenge,
        )
    subject = granted[0]
    tenant, client_id = _principal(subject)
    if tenant is not None and tenant.lower() != vault.tenant_id.lower():
        raise KeyVaultError(
            401,
            "Unauthorized",
            f"AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{vault.tenant_id}/, "
            f"found https://sts.windows.net/{tenant}/.",
            headers=challenge,
        )
    if not vault.allows(client_id, permission):
        raise KeyVaultError(
            403,
            "Forbidden",
            f"The user, group or application 'appid={client_id};iss=https://sts.windows.net/"
            f"{vault.tenant_id}/' does not have secrets {permission} permission on key vault "
            f"'{vault.name};location={vault.location}'. For help resolving this issue, please see "
            "https://go.microsoft.com/fwlink/?linkid=2125287",
            inner="AccessDenied",
        )


def _principal(subject: str) -> tuple[str | None, str]:
    """(tenant, client id) from an issued token's subject (`entra:<tenant>/<client>`,
    `managed-identity:<client>`)."""
    kind, _, rest = subject.partition(":")
    if kind == "entra":
        tenant, _, client_id = rest.partition("/")
        return tenant, client_id
    return None, rest


def _api_version(request: Request) -> str:
    version = request.query_params.get("api-version")
    if not version:
        raise _bad_parameter("The api-version query parameter is missing.")
    if version not in SUPPORTED_API_VERSIONS:
        raise _bad_parameter(
            f"The specified version ({version[:40]}) is not recognized. Consider using the latest "
            f"supported version ({SUPPORTED_API_VERSIONS[-1]})."
        )
    return version


def _page(request: Request, items: list[dict[str, Any]], base: str, version: str) -> dict[str, Any]:
    raw_max = request.query_params.get("maxresults")
    size = DEFAULT_PAGE
    if raw_max is not None:
        if not raw_max.isdigit() or not 1 <= int(raw_max) <= MAX_PAGE:
            raise _bad_parameter(f"maxresults must be an integer between 1 and {MAX_PAGE}.")
        size = int(raw_max)
    skip_raw = request.query_params.get("$skiptoken", "0")
    if not skip_raw.isdigit():
        raise _bad_parameter("Invalid $skiptoken.")
    skip = int(skip_raw)
    body: dict[str, Any] = {"value": items[skip : skip + size], "nextLink": None}
    if skip + size < len(items):
        query = urllib.parse.urlencode(
            {"api-version": version, "$skiptoken": str(skip + size), "maxresults": str(size)}
        )
        body["nextLink"] = f"{base}{request.url.path}?{query}"
    return body


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad_parameter(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _bad_parameter("The request body must be a JSON object.")
    return data


def keyvault_routes(service: KeyVaultService) -> list[Route]:
    """The data-plane routes of the vault (no `/api/` prefix: a vault URL has none)."""

    def endpoint(
        permission: str,
        handle: Callable[[Request, Vault, str, str], Any],
    ) -> Callable[[Request], Any]:
        async def serve(request: Request) -> Response:
            vault = service.vault
            try:
                if vault is None:
                    raise KeyVaultError(
                        404, "NotFound", "This emulated workspace has no vault (add `vault:`)."
                    )
                _authorize(service, vault, request, permission)
                version = _api_version(request)
                result = await handle(request, vault, service.base_url(request), version)
                return JSONResponse(result)
            except KeyVaultError as exc:
                return exc.to_response()

        return serve

    async def get_secret(request: Request, vault: Vault, base: str, api: str) -> dict[str, Any]:
        name = request.path_params["name"]
        secret, version = vault.version(name, request.path_params.get("version"))
        if not version.enabled:
            raise KeyVaultError(
                403,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
                inner="SecretDisabled",
            )
        return _bundle(base, vault, secret, version)

    async def set_secret(request: Request, vault: Vault, base: str, api: str) -> dict[str, Any]:
        body = await _json_object(request)
        value = body.get("value")
        if not isinstance(value, str):
            raise _bad_parameter("Property 'value' is required and must be a string.")
        tags = body.get("tags") or {}
        attributes = body.get("attributes") or {}
        content_type = body.get("contentType")
        if not isinstance(tags, dict) or not isinstance(attributes, dict):
            raise _bad_parameter("'tags' and 'attributes' must be JSON objects.")
        if content_type is not None and not isinstance(content_type, str):
            raise _bad_parameter("'contentType' must be a string.")
        secret, version = vault.set(
            request.path_params["name"],
            value,
            content_type=content_type,
            tags={str(k): str(v) for k, v in tags.items()},
            enabled=bool(attributes.get("enabled", True)),
        )
        return _bundle(base, vault, secret, version)

    async def list_secrets(request: Request, vault: Vault, base: str, api: str) -> dict[str, Any]:
        items = [
            _item(base, vault, s, s.latest, versioned=False)
            for s in sorted(vault.secrets.values(), key=lambda s: s.name)
            if s.deleted_s is None
        ]
        return _page(request, items, base, api)

    async def list_versions(request: Request, vault: Vault, base: str, api: str) -> dict[str, Any]:
        secret = vault.live(request.path_params["name"])
        items = [_item(base, vault, secret, v, versioned=True) for v in secret.versions]
        return _page(request, items, base, api)

    async def delete_secret(request: Request, vault: Vault, base: str, api: str) -> dict[str, Any]:
        return _deleted_bundle(base, vault, vault.delete(request.path_params["name"]))

    async def get_deleted(request: Request, vault: Vault, base: str, api: str) -> dict[str, Any]:
        return _deleted_bundle(base, vault, vault.deleted(request.path_params["name"]))

    async def list_deleted(request: Request, vault: Vault, base: str, api: str) -> dict[str, Any]:
        items = []
        for secret in sorted(vault.secrets.values(), key=lambda s: s.name):
            if secret.deleted_s is not None:
                item = _deleted_bundle(base, vault, secret)
                del item["value"]
                item["id"] = f"{base}/secrets/{secret.name}"
                items.append(item)
        return _page(request, items, base, api)

    async def recover(request: Request, vault: Vault, base: str, api: str) -> dict[str, Any]:
        secret = vault.recover(request.path_params["name"])
        return _bundle(base, vault, secret, secret.latest)

    async def purge(request: Request, vault: Vault, base: str, api: str) -> dict[str, Any]:
        vault.purge(request.path_params["name"])
        return {}

    def purge_endpoint() -> Callable[[Request], Any]:
        inner = endpoint("purge", purge)

        async def serve(request: Request) -> Response:
            answer: Response = await inner(request)
            # Purge answers 204 No Content.
            return Response(status_code=204) if answer.status_code == 200 else answer

        return serve

    async def dispatch_secret(request: Request) -> Response:
        handler = (
            endpoint("set", set_secret)
            if request.method == "PUT"
            else endpoint("delete", delete_secret)
        )
        if request.method == "GET":
            handler = endpoint("get", get_secret)
        answer: Response = await handler(request)
        return answer

    return [
        Route("/secrets", endpoint("list", list_secrets), methods=["GET"]),
        Route("/secrets/{name}/versions", endpoint("list", list_versions), methods=["GET"]),
        Route("/secrets/{name}", dispatch_secret, methods=["GET", "PUT", "DELETE"]),
        Route("/secrets/{name}/", endpoint("get", get_secret), methods=["GET"]),
        Route("/secrets/{name}/{version}", endpoint("get", get_secret), methods=["GET"]),
        Route("/deletedsecrets", endpoint("list", list_deleted), methods=["GET"]),
        Route("/deletedsecrets/{name}", endpoint("get", get_deleted), methods=["GET"]),
        Route("/deletedsecrets/{name}", purge_endpoint(), methods=["DELETE"]),
        Route("/deletedsecrets/{name}/recover", endpoint("recover", recover), methods=["POST"]),
    ]
