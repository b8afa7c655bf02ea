"""The identity endpoints that issue access tokens to the emulator's clients (reference §9).

Microsoft Entra ID (v1, v2, tenant discovery), managed identity (App Service and IMDS) and
Databricks OAuth M2M; the tokens come from `auth.TokenIssuer`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from polysync.clock import Clock
from polysync.emulator.auth import (
    AUDIENCES,
    DATABRICKS_OAUTH_SCOPE,
    AuthConfig,
    TokenIssuer,
    secret_equals,
)

APP_SERVICE_API_VERSION = "2019-08-01"
# OpenID scopes MSAL may add to any request; they say nothing about the resource asked for.
_OIDC_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})


async def _form(request: Request) -> dict[str, str]:
    # Token requests are application/x-www-form-urlencoded; parsed here so the emulator does not
    # need python-multipart, which Starlette's request.form() requires.
    body = (await request.body()).decode("utf-8", "replace")
    return {key: values[0] for key, values in parse_qs(body, keep_blank_values=True).items()}


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str | None]:
    """client_id and client_secret from HTTP Basic (client_secret_basic) or the form (_post)."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic" and encoded:
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "", None
        client_id, sep, secret = decoded.partition(":")
        return client_id, secret if sep else None
    return form.get("client_id", ""), form.get("client_secret")


def _scope(form: dict[str, str]) -> str:
    """The one resource scope of a checked v2 token request (OpenID scopes left out)."""
    return next(s for s in form.get("scope", "").split() if s not in _OIDC_RESERVED_SCOPES)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _entra_error(
    status: int, error: str, aadsts: int, description: str, clock: Clock
) -> JSONResponse:
    """Microsoft Entra ID's error body (OAuth 2.0 `error` plus its AADSTS details)."""
    timestamp = dt.datetime.fromtimestamp(clock.now(), dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    return JSONResponse(
        {
            "error": error,
            "error_description": (
                f"AADSTS{aadsts}: {description} Trace ID: {trace_id} "
                f"Correlation ID: {correlation_id} Timestamp: {timestamp}"
            ),
            "error_codes": [aadsts],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
        },
        status_code=status,
    )


def _resource_not_found(resource: str, tenant: str) -> str:
    return (
        f"The resource principal named {resource} was not found in the tenant named {tenant}. "
        "This can happen if the application has not been installed by the administrator of the "
        "tenant or consented to by any user in the tenant. You might have sent your "
        "authentication request to the wrong tenant."
    )


def identity_routes(config: AuthConfig, issuer: TokenIssuer) -> list[Route]:
    """Token endpoints of Entra ID (v1, v2, discovery), managed identity and Databricks OAuth."""
    clock = issuer.clock

    def entra_lifetime_s() -> int:
        # Entra answers "expires_in": 3599 for its one-hour tokens.
        return config.token_lifetime_s - 1

    def entra_scope_problem(form: dict[str, str]) -> Response | None:
        scopes = [s for s in form.get("scope", "").split() if s not in _OIDC_RESERVED_SCOPES]
        if not scopes:
            return _entra_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
                clock,
            )
        for scope in scopes:
            if not scope.endswith("/.default"):
                return _entra_error(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {scope} is not valid. Client credential flows "
                    "must have a scope value with /.default suffixed to the resource identifier "
                    "(application ID URI).",
                    clock,
                )
        if len(scopes) != 1 or scopes[0] not in AUDIENCES:
            return _entra_error(
                400,
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not valid. The scope "
                f"'{' '.join(scopes)}' is not valid: this emulator issues tokens only for "
                f"{' and '.join(AUDIENCES)} (AzureDatabricks, Azure Key Vault).",
                clock,
            )
        return None

    async def entra_token(request: Request, *, v1: bool) -> Response:
        tenant = request.path_params["tenant"]
        form = await _form(request)
        grant_type = form.get("grant_type", "")
        if grant_type != "client_credentials":
            return _entra_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'; this emulator "
                "supports client_credentials.",
                clock,
            )
        client_id, client_secret = _client_credentials(request, form)
        if not client_id:
            return _entra_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
                clock,
            )
        if v1:
            resource = form.get("resource", "")
            audience = resource.rstrip("/")
            if audience not in AUDIENCES.values():
                return _entra_error(
                    400, "invalid_resource", 500011, _resource_not_found(resource, tenant), clock
                )
        else:
            problem = entra_scope_problem(form)
            if problem is not None:
                return problem
            audience = AUDIENCES[_scope(form)]
        principal = next(
            (
                sp
                for sp in config.service_principals
                if sp.client_id == client_id and sp.tenant_id.lower() == tenant.lower()
            ),
            None,
        )
        if principal is None:
            return _entra_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant. You may "
                "have sent your authentication request to the wrong tenant.",
                clock,
            )
        if not client_secret:
            return _entra_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
                clock,
            )
        if not secret_equals(client_secret, principal.client_secret):
            return _entra_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{client_id}'.",
                clock,
            )
        lifetime_s = entra_lifetime_s()
        issued = issuer.issue(f"entra:{tenant}/{client_id}", lifetime_s, audience)
        if v1:
            # The v1 endpoint answers numbers as strings, and says which resource and when.
            return JSONResponse(
                {
                    "token_type": "Bearer",
                    "expires_in": str(lifetime_s),
                    "ext_expires_in": str(lifetime_s),
                    "expires_on": str(int(issued.expires_at_s)),
                    "not_before": str(int(issued.issued_at_s)),
                    "resource": audience,
                    "access_token": issued.access_token,
                }
            )
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": lifetime_s,
                "ext_expires_in": lifetime_s,
                "access_token": issued.access_token,
            }
        )

    async def entra_token_v2(request: Request) -> Response:
        return await entra_token(request, v1=False)

    async def entra_token_v1(request: Request) -> Response:
        return await entra_token(request, v1=True)

    async def entra_openid_configuration(request: Request) -> Response:
        # MSAL's tenant discovery: `<authority>/v2.0/.well-known/openid-configuration`; it reads
        # token_endpoint and authorization_endpoint. An unknown tenant fails discovery, as in Entra.
        tenant = request.path_params["tenant"]
        if not any(sp.tenant_id.lower() == tenant.lower() for sp in config.service_principals):
            return _entra_error(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud.",
                clock,
            )
        root = f"{_base_url(request)}/{tenant}"
        return JSONResponse(
            {
                "issuer": f"{root}/v2.0",
                "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                "token_endpoint": f"{root}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
                "jwks_uri": f"{root}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "response_modes_supported": ["query", "fragment", "form_post"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "request_uri_parameter_supported": False,
                "tenant_region_scope": None,
                "cloud_instance_name": "microsoftonline.com",
            }
        )

    def managed_identity_problem(request: Request) -> str | None:
        """Why the request does not name the configured managed identity, or None."""
        identity = config.managed_identity
        if identity is None:
            return "No managed identity is assigned to this host."
        params = request.query_params
        if any(key in params for key in ("mi_res_id", "msi_res_id", "object_id", "principal_id")):
            return "This emulator selects a managed identity by client_id only."
        if params.get("client_id") != identity.client_id:
            return "No managed identity found for the specified client_id."
        return None

    async def app_service_token(request: Request) -> Response:
        # App Service / Functions protocol, as msal's _obtain_token_on_app_service sends it
        # (azure-identity ManagedIdentityCredential with IDENTITY_ENDPOINT + IDENTITY_HEADER).
        def failure(status: int, message: str) -> JSONResponse:
            return JSONResponse(
                {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())},
                status_code=status,
            )

        identity = config.managed_identity
        if identity is None:
            return failure(400, "No managed identity is assigned to this host.")
        if not secret_equals(
            request.headers.get("x-identity-header", ""), identity.identity_header
        ):
            return failure(401, "The X-IDENTITY-HEADER header is missing or not valid.")
        if request.query_params.get("api-version") != APP_SERVICE_API_VERSION:
            return failure(400, f"api-version must be {APP_SERVICE_API_VERSION}.")
        resource = request.query_params.get("resource", "")
        if resource.rstrip("/") not in AUDIENCES.values():
            return failure(
                400,
                f"This emulator issues tokens only for {' and '.join(AUDIENCES.values())}.",
            )
        problem = managed_identity_problem(request)
        if problem is not None:
            return failure(400, problem)
        issued = issuer.issue(
            f"managed-identity:{identity.client_id}", entra_lifetime_s(), resource.rstrip("/")
        )
        body: dict[str, Any] = {
            "access_token": issued.access_token,
            # Epoch seconds as a string; msal derives expires_in from it with the real clock.
            "expires_on": str(int(issued.expires_at_s)),
            "resource": resource,
            "token_type": "Bearer",
        }
        if identity.client_id is not None:
            body["client_id"] = identity.client_id
        return JSONResponse(body)

    async def imds_token(request: Request) -> Response:
        # Azure Instance Metadata Service (§9.3): no secret, only `Metadata: true`.
        def failure(error: str, description: str) -> JSONResponse:
            return JSONResponse({"error": error, "error_description": description}, status_code=400)

        if request.headers.get("metadata", "").lower() != "true":
            return failure("invalid_request", "Required metadata header not specified")
        if "api-version" not in request.query_params:
            return failure("invalid_request", "Required query variable 'api-version' is missing")
        if managed_identity_problem(request) is not None:
            return failure("invalid_request", "Identity not found")
        resource = request.query_params.get("resource", "")
        if resource.rstrip("/") not in AUDIENCES.values():
            return failure(
                "invalid_resource", f"AADSTS500011: {_resource_not_found(resource, 'host')}"
            )
        identity = config.managed_identity
        assert identity is not None  # managed_identity_problem checked it
        lifetime_s = entra_lifetime_s()
        issued = issuer.issue(
            f"managed-identity:{identity.client_id}", lifetime_s, resource.rstrip("/")
        )
        body: dict[str, Any] = {
            "access_token": issued.access_token,
            "refresh_token": "",
            "expires_in": str(lifetime_s),
            "expires_on": str(int(issued.expires_at_s)),
            "ext_expires_in": str(lifetime_s),
            "not_before": str(int(issued.issued_at_s)),
            "resource": resource,
            "token_type": "Bearer",
        }
        if identity.client_id is not None:
            body["client_id"] = identity.client_id
        return JSONResponse(body)

    async def databricks_config(request: Request) -> Response:
        # databricks-sdk-py (0.162) probes this at Config() and takes its OAuth discovery URL from
        # `oidc_endpoint`; without it, M2M needs an explicit discovery_url. The real document's
        # other fields (workspace_id, cloud, ...) are UNCONFIRMED and left out.
        return JSONResponse({"oidc_endpoint": f"{_base_url(request)}/oidc"})

    async def oauth_server_metadata(request: Request) -> Response:
        oidc = f"{_base_url(request)}/oidc"
        return JSONResponse(
            {
                "issuer": oidc,
                "authorization_endpoint": f"{oidc}/v1/authorize",
                "token_endpoint": f"{oidc}/v1/token",
                "jwks_uri": f"{oidc}/jwks.json",
                "grant_types_supported": [
                    "client_credentials",
                    "authorization_code",
                    "refresh_token",
                ],
                "scopes_supported": [DATABRICKS_OAUTH_SCOPE, "offline_access", "openid", "email"],
                "response_types_supported": ["code", "id_token"],
                "response_modes_supported": ["query", "fragment", "form_post"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                    "none",
                ],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "request_uri_parameter_supported": False,
            }
        )

    async def oauth_token(request: Request) -> Response:
        def failure(status: int, error: str, description: str) -> JSONResponse:
            return JSONResponse(
                {"error": error, "error_description": description}, status_code=status
            )

        form = await _form(request)
        if form.get("grant_type") != "client_credentials":
            return failure(
                400, "unsupported_grant_type", "This emulator supports client_credentials only."
            )
        client_id, client_secret = _client_credentials(request, form)
        client = next((c for c in config.oauth_clients if c.client_id == client_id), None)
        if (
            client is None
            or client_secret is None
            or not secret_equals(client_secret, client.client_secret)
        ):
            return failure(401, "invalid_client", "Client authentication failed")
        if DATABRICKS_OAUTH_SCOPE not in form.get("scope", "").split():
            return failure(
                400,
                "invalid_scope",
                f"The requested scope is invalid: this emulator grants '{DATABRICKS_OAUTH_SCOPE}'.",
            )
        issued = issuer.issue(f"oauth:{client_id}", config.token_lifetime_s)
        return JSONResponse(
            {
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": config.token_lifetime_s,
                "scope": DATABRICKS_OAUTH_SCOPE,
            }
        )

    async def expire_tokens(request: Request) -> Response:
        return JSONResponse({"expired": issuer.expire_all()})

    return [
        Route("/{tenant}/oauth2/v2.0/token", entra_token_v2, methods=["POST"]),
        Route("/{tenant}/oauth2/token", entra_token_v1, methods=["POST"]),
        Route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            entra_openid_configuration,
            methods=["GET"],
        ),
        Route("/msi/token", app_service_token, methods=["GET"]),
        Route("/metadata/identity/oauth2/token", imds_token, methods=["GET"]),
        Route("/.well-known/databricks-config", databricks_config, methods=["GET"]),
        Route(
            "/oidc/.well-known/oauth-authorization-server", oauth_server_metadata, methods=["GET"]
        ),
        Route("/oidc/v1/token", oauth_token, methods=["POST"]),
        Route("/emulator/tokens/expire", expire_tokens, methods=["POST"]),
    ]
