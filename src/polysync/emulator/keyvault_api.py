"""The Azure Key Vault secrets REST API of the emulated vault (`keyvault.Vault`).

It is served at the emulator's own base URL (so the vault URL of the emulated vault is the
emulator's URL), with Entra bearer auth for the Key Vault audience.

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
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from polysync.emulator.auth import KEYVAULT_RESOURCE, TokenIssuer, TokenState
from polysync.emulator.keyvault import (
    KeyVaultError,
    Secret,
    SecretVersion,
    Vault,
    bad_parameter,
)

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
DEFAULT_PAGE = 25
MAX_PAGE = 25  # `maxresults` is 1..25 for secrets (Key Vault REST reference)


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
        raise bad_parameter("The api-version query parameter is missing.")
    if version not in SUPPORTED_API_VERSIONS:
        raise bad_parameter(
            f"The specified version ({version[:40]}) is not recognized. Consider using the latest "
            f"supported version ({SUPPORTED_API_VERSIONS[-1]})."
        )
    return version


def _page(request: Request, items: list[dict[str, Any]], base: str, version: str) -> dict[str, Any]:
    raw_max = request.query_params.get("maxresults")
    size = DEFAULT_PAGE
    if raw_max is not None:
        if not raw_max.isdigit() or not 1 <= int(raw_max) <= MAX_PAGE:
            raise bad_parameter(f"maxresults must be an integer between 1 and {MAX_PAGE}.")
        size = int(raw_max)
    skip_raw = request.query_params.get("$skiptoken", "0")
    if not skip_raw.isdigit():
        raise bad_parameter("Invalid $skiptoken.")
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
        raise bad_parameter(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise bad_parameter("The request body must be a JSON object.")
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
            raise bad_parameter("Property 'value' is required and must be a string.")
        tags = body.get("tags") or {}
        attributes = body.get("attributes") or {}
        content_type = body.get("contentType")
        if not isinstance(tags, dict) or not isinstance(attributes, dict):
            raise bad_parameter("'tags' and 'attributes' must be JSON objects.")
        if content_type is not None and not isinstance(content_type, str):
            raise bad_parameter("'contentType' must be a string.")
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
