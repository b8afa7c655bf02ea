"""The bearer guard and the identity endpoints, in-process, token lifetimes on a manual clock."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Scope

from polysync.clock import ManualClock
from polysync.emulator.auth import (
    DATABRICKS_ENTRA_SCOPE,
    DATABRICKS_RESOURCE_ID,
    AuthConfig,
    BearerAuthMiddleware,
    EntraServicePrincipal,
    ManagedIdentity,
    OAuthClient,
    TokenIssuer,
    TokenState,
)
from polysync.emulator.identity import identity_routes

BASE_URL = "https://adb-1234567890123456.7.azuredatabricks.net"
PAT = "dapi-unit-test-pat"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SP_ID, SP_SECRET = "5b2f1a1e-0c5d-4a4e-9c3a-7d1c1b2e3f40", "entra-secret-value"
M2M_ID, M2M_SECRET = "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e", "oauth-secret-value"
MI_HEADER = "identity-header-value"


def make_config(**overrides: Any) -> AuthConfig:
    data: dict[str, Any] = {
        "tokens": [PAT],
        "service_principals": [
            EntraServicePrincipal(tenant_id=TENANT, client_id=SP_ID, client_secret=SP_SECRET)
        ],
        "oauth_clients": [OAuthClient(client_id=M2M_ID, client_secret=M2M_SECRET)],
        "managed_identity": ManagedIdentity(identity_header=MI_HEADER),
    }
    data.update(overrides)
    return AuthConfig.model_validate(data)


async def list_jobs(request: Request) -> Response:
    return JSONResponse({"jobs": []})


class Harness:
    def __init__(self, config: AuthConfig | None = None) -> None:
        self.clock = ManualClock()
        self.config = config or make_config()
        self.issuer = TokenIssuer(self.clock)
        inner = Starlette(
            routes=[
                Route("/api/2.2/jobs/list", list_jobs),
                *identity_routes(self.config, self.issuer),
            ]
        )
        self.app = BearerAuthMiddleware(inner, self.config, self.issuer)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE_URL)


@pytest.fixture
def harness() -> Harness:
    return Harness()


async def jobs_status(http: httpx.AsyncClient, token: str) -> int:
    answer = await http.get("/api/2.2/jobs/list", headers={"Authorization": f"Bearer {token}"})
    return answer.status_code


def entra_form(**overrides: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": SP_ID,
        "client_secret": SP_SECRET,
        "scope": DATABRICKS_ENTRA_SCOPE,
        **overrides,
    }


def basic(client_id: str, secret: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


# --- the guard -----------------------------------------------------------------------------------


async def test_a_personal_access_token_is_accepted(harness: Harness) -> None:
    async with harness.client() as http:
        assert await jobs_status(http, PAT) == 200


async def test_a_missing_header_is_401_unauthenticated(harness: Harness) -> None:
    async with harness.client() as http:
        answer = await http.get("/api/2.2/jobs/list")
    assert answer.status_code == 401
    assert answer.json()["error_code"] == "UNAUTHENTICATED"
    assert "Authorization: Bearer" in answer.json()["message"]


async def test_another_scheme_is_401(harness: Harness) -> None:
    async with harness.client() as http:
        answer = await http.get("/api/2.2/jobs/list", headers=basic("user", PAT))
    assert answer.status_code == 401
    assert answer.json()["error_code"] == "UNAUTHENTICATED"


async def test_an_unknown_token_is_the_jetty_403_page(harness: Harness) -> None:
    async with harness.client() as http:
        answer = await http.get(
            "/api/2.2/jobs/list", headers={"Authorization": "Bearer dapi-not-a-real-token"}
        )
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("text/html")
    assert "<title>Error 403 Invalid access token.</title>" in answer.text
    assert "<pre>Invalid access token.</pre>" in answer.text
    assert "dapi-not-a-real-token" not in answer.text


async def test_only_api_paths_are_guarded() -> None:
    harness = Harness()
    async with harness.client() as http:
        assert (await http.get("/oidc/.well-known/oauth-authorization-server")).status_code == 200


async def test_disabled_auth_lets_anyone_in() -> None:
    harness = Harness(make_config(enabled=False))
    async with harness.client() as http:
        assert (await http.get("/api/2.2/jobs/list")).status_code == 200


def run_guard(authorization: str) -> int:
    """The status the guard answers for one Authorization header (200 = let through)."""
    harness = Harness()
    sent: list[Message] = []
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/2.2/jobs/list",
        "query_string": b"",
        "headers": [(b"authorization", authorization.encode("latin-1"))],
        "root_path": "",
        "scheme": "https",
        "server": ("emulator.test", 443),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(harness.app(scope, receive, send))
    return int(sent[0]["status"])


PRINTABLE = st.characters(min_codepoint=32, max_codepoint=126)
NEAR_MISSES = st.builds(
    "{}{}{}".format,
    st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", ""]),
    st.sampled_from([" ", "  ", ""]),
    st.sampled_from([PAT, PAT.upper(), PAT[:-1], PAT + "x", f" {PAT} "]),
)


@given(st.one_of(st.text(alphabet=PRINTABLE), NEAR_MISSES))
def test_nothing_but_a_known_bearer_token_gets_through(authorization: str) -> None:
    scheme, _, token = authorization.strip().partition(" ")
    expected_ok = scheme.lower() == "bearer" and token.strip() == PAT
    assert (run_guard(authorization) == 200) == expected_ok


# --- the issuer -----------------------------------------------------------------------------------


def test_issued_tokens_expire_on_the_clock() -> None:
    clock = ManualClock()
    issuer = TokenIssuer(clock)
    issued = issuer.issue("someone", 60)
    assert issued.expires_at_s == clock.now() + 60
    assert issuer.check(issued.access_token) is TokenState.VALID
    clock.advance(59.9)
    assert issuer.check(issued.access_token) is TokenState.VALID
    clock.advance(0.1)
    assert issuer.check(issued.access_token) is TokenState.EXPIRED
    assert issuer.check("never-issued") is TokenState.UNKNOWN
    assert issued.access_token not in repr(issued)


def test_expire_all_expires_without_forgetting() -> None:
    issuer = TokenIssuer(ManualClock())
    tokens = [issuer.issue("a", 3600).access_token, issuer.issue("b", 3600).access_token]
    assert issuer.expire_all() == 2
    assert [issuer.check(t) for t in tokens] == [TokenState.EXPIRED, TokenState.EXPIRED]


def test_secrets_stay_out_of_the_config_repr() -> None:
    text = repr(make_config())
    for secret in (PAT, SP_SECRET, M2M_SECRET, MI_HEADER):
        assert secret not in text


# --- Microsoft Entra ID ---------------------------------------------------------------------------


async def test_entra_v2_client_credentials_token_works_until_it_expires(harness: Harness) -> None:
    async with harness.client() as http:
        answer = await http.post(f"/{TENANT}/oauth2/v2.0/token", data=entra_form())
        assert answer.status_code == 200
        body = answer.json()
        assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
        assert (body["token_type"], body["expires_in"], body["ext_expires_in"]) == (
            "Bearer",
            3599,
            3599,
        )
        assert await jobs_status(http, body["access_token"]) == 200
        harness.clock.advance(3599)
        expired = await http.get(
            "/api/2.2/jobs/list", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
    assert expired.status_code == 401
    assert expired.json()["error_code"] == "UNAUTHENTICATED"
    assert "Token is expired" in expired.json()["message"]


async def test_entra_accepts_client_secret_basic(harness: Harness) -> None:
    form = entra_form()
    del form["client_id"], form["client_secret"]
    async with harness.client() as http:
        answer = await http.post(
            f"/{TENANT}/oauth2/v2.0/token", data=form, headers=basic(SP_ID, SP_SECRET)
        )
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("tenant", "form", "expected"),
    [
        (TENANT, entra_form(client_secret="wrong-secret"), (401, "invalid_client", 7000215)),
        (TENANT, entra_form(client_secret=""), (401, "invalid_client", 7000218)),
        (TENANT, entra_form(client_id="someone-else"), (400, "unauthorized_client", 700016)),
        ("other-tenant", entra_form(), (400, "unauthorized_client", 700016)),
        (TENANT, entra_form(client_id=""), (400, "invalid_request", 900144)),
        (TENANT, entra_form(grant_type="password"), (400, "unsupported_grant_type", 70003)),
        (TENANT, entra_form(scope=""), (400, "invalid_request", 900144)),
        (TENANT, entra_form(scope=DATABRICKS_RESOURCE_ID), (400, "invalid_scope", 1002012)),
        (
            TENANT,
            entra_form(scope="https://management.core.windows.net//.default"),
            (400, "invalid_scope", 70011),
        ),
    ],
)
async def test_entra_v2_refusals(
    harness: Harness, tenant: str, form: dict[str, str], expected: tuple[int, str, int]
) -> None:
    status, error, aadsts = expected
    async with harness.client() as http:
        answer = await http.post(f"/{tenant}/oauth2/v2.0/token", data=form)
    assert answer.status_code == status
    body = answer.json()
    assert body["error"] == error
    assert body["error_codes"] == [aadsts]
    assert body["error_description"].startswith(f"AADSTS{aadsts}: ")
    assert "Trace ID: " in body["error_description"]
    assert "wrong-secret" not in answer.text
    assert SP_SECRET not in answer.text


async def test_entra_v1_endpoint_takes_a_resource(harness: Harness) -> None:
    form = entra_form(resource=DATABRICKS_RESOURCE_ID)
    del form["scope"]
    now_s = int(harness.clock.now())
    async with harness.client() as http:
        answer = await http.post(f"/{TENANT}/oauth2/token", data=form)
        body = answer.json()
        assert answer.status_code == 200
        assert body["expires_in"] == "3599"
        assert body["expires_on"] == str(now_s + 3599)
        assert body["not_before"] == str(now_s)
        assert body["resource"] == DATABRICKS_RESOURCE_ID
        assert await jobs_status(http, body["access_token"]) == 200
        wrong = await http.post(
            f"/{TENANT}/oauth2/token", data={**form, "resource": "https://graph.microsoft.com"}
        )
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_resource"


async def test_entra_tenant_discovery(harness: Harness) -> None:
    async with harness.client() as http:
        known = await http.get(f"/{TENANT}/v2.0/.well-known/openid-configuration")
        unknown = await http.get("/not-a-tenant/v2.0/.well-known/openid-configuration")
    assert known.json()["token_endpoint"] == f"{BASE_URL}/{TENANT}/oauth2/v2.0/token"
    assert known.json()["authorization_endpoint"] == f"{BASE_URL}/{TENANT}/oauth2/v2.0/authorize"
    assert known.json()["issuer"] == f"{BASE_URL}/{TENANT}/v2.0"
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_tenant"


# --- managed identity -----------------------------------------------------------------------------

APP_SERVICE_QUERY = {"api-version": "2019-08-01", "resource": DATABRICKS_RESOURCE_ID}


async def test_app_service_managed_identity(harness: Harness) -> None:
    async with harness.client() as http:
        answer = await http.get(
            "/msi/token", params=APP_SERVICE_QUERY, headers={"X-IDENTITY-HEADER": MI_HEADER}
        )
        body = answer.json()
        assert answer.status_code == 200
        assert body["expires_on"] == str(int(harness.clock.now()) + 3599)
        assert (body["resource"], body["token_type"]) == (DATABRICKS_RESOURCE_ID, "Bearer")
        assert "client_id" not in body  # system-assigned
        assert await jobs_status(http, body["access_token"]) == 200


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ({}, APP_SERVICE_QUERY, 401),
        ({"X-IDENTITY-HEADER": "guess"}, APP_SERVICE_QUERY, 401),
        ({"X-IDENTITY-HEADER": MI_HEADER}, {**APP_SERVICE_QUERY, "api-version": "2017-09-01"}, 400),
        ({"X-IDENTITY-HEADER": MI_HEADER}, {**APP_SERVICE_QUERY, "resource": "https://x/"}, 400),
        ({"X-IDENTITY-HEADER": MI_HEADER}, {**APP_SERVICE_QUERY, "client_id": "user-mi"}, 400),
    ],
)
async def test_app_service_refusals(
    harness: Harness, headers: dict[str, str], query: dict[str, str], status: int
) -> None:
    async with harness.client() as http:
        answer = await http.get("/msi/token", params=query, headers=headers)
    assert answer.status_code == status
    assert answer.json()["statusCode"] == status
    assert MI_HEADER not in answer.text


async def test_a_user_assigned_identity_must_be_named() -> None:
    harness = Harness(
        make_config(managed_identity=ManagedIdentity(client_id="user-mi", identity_header="h"))
    )
    headers = {"X-IDENTITY-HEADER": "h"}
    async with harness.client() as http:
        unnamed = await http.get("/msi/token", params=APP_SERVICE_QUERY, headers=headers)
        named = await http.get(
            "/msi/token", params={**APP_SERVICE_QUERY, "client_id": "user-mi"}, headers=headers
        )
    assert unnamed.status_code == 400
    assert named.status_code == 200
    assert named.json()["client_id"] == "user-mi"


async def test_imds_managed_identity(harness: Harness) -> None:
    query = {"api-version": "2018-02-01", "resource": DATABRICKS_RESOURCE_ID}
    async with harness.client() as http:
        answer = await http.get(
            "/metadata/identity/oauth2/token", params=query, headers={"Metadata": "true"}
        )
        body = answer.json()
        assert answer.status_code == 200
        assert (body["expires_in"], body["token_type"]) == ("3599", "Bearer")
        assert await jobs_status(http, body["access_token"]) == 200
        no_header = await http.get("/metadata/identity/oauth2/token", params=query)
    assert no_header.status_code == 400
    assert no_header.json() == {
        "error": "invalid_request",
        "error_description": "Required metadata header not specified",
    }


async def test_imds_without_an_identity() -> None:
    harness = Harness(make_config(managed_identity=None))
    query = {"api-version": "2018-02-01", "resource": DATABRICKS_RESOURCE_ID}
    async with harness.client() as http:
        answer = await http.get(
            "/metadata/identity/oauth2/token", params=query, headers={"Metadata": "true"}
        )
    assert answer.status_code == 400
    assert answer.json()["error_description"] == "Identity not found"


# --- Databricks OAuth M2M -------------------------------------------------------------------------


async def test_oauth_discovery_documents(harness: Harness) -> None:
    async with harness.client() as http:
        metadata = (await http.get("/oidc/.well-known/oauth-authorization-server")).json()
        config = (await http.get("/.well-known/databricks-config")).json()
    assert metadata["token_endpoint"] == f"{BASE_URL}/oidc/v1/token"
    assert metadata["authorization_endpoint"] == f"{BASE_URL}/oidc/v1/authorize"
    assert config == {"oidc_endpoint": f"{BASE_URL}/oidc"}


@pytest.mark.parametrize("how", ["basic", "form"])
async def test_oauth_m2m_token(harness: Harness, how: str) -> None:
    form = {"grant_type": "client_credentials", "scope": "all-apis"}
    headers: dict[str, str] = {}
    if how == "basic":
        headers = basic(M2M_ID, M2M_SECRET)
    else:
        form |= {"client_id": M2M_ID, "client_secret": M2M_SECRET}
    async with harness.client() as http:
        answer = await http.post("/oidc/v1/token", data=form, headers=headers)
        body = answer.json()
        assert answer.status_code == 200
        assert {k: v for k, v in body.items() if k != "access_token"} == {
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "all-apis",
        }
        assert await jobs_status(http, body["access_token"]) == 200
        harness.clock.advance(3600)
        assert await jobs_status(http, body["access_token"]) == 401


M2M_FORM = {"grant_type": "client_credentials", "scope": "all-apis"}


@pytest.mark.parametrize(
    ("form", "headers", "status", "error"),
    [
        (M2M_FORM, basic(M2M_ID, "nope"), 401, "invalid_client"),
        (M2M_FORM, basic("who", M2M_SECRET), 401, "invalid_client"),
        (M2M_FORM, {}, 401, "invalid_client"),
        (M2M_FORM | {"scope": "sql"}, basic(M2M_ID, M2M_SECRET), 400, "invalid_scope"),
        (M2M_FORM | {"grant_type": "pw"}, basic(M2M_ID, M2M_SECRET), 400, "unsupported_grant_type"),
    ],
)
async def test_oauth_m2m_refusals(
    harness: Harness, form: dict[str, str], headers: dict[str, str], status: int, error: str
) -> None:
    async with harness.client() as http:
        answer = await http.post("/oidc/v1/token", data=form, headers=headers)
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert M2M_SECRET not in answer.text


async def test_control_plane_expires_every_issued_token(harness: Harness) -> None:
    async with harness.client() as http:
        token = (
            await http.post(
                "/oidc/v1/token",
                data={"grant_type": "client_credentials", "scope": "all-apis"},
                headers=basic(M2M_ID, M2M_SECRET),
            )
        ).json()["access_token"]
        assert (await http.post("/emulator/tokens/expire")).json() == {"expired": 1}
        assert await jobs_status(http, token) == 401
        assert await jobs_status(http, PAT) == 200  # personal access tokens do not expire
