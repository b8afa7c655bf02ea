"""Workspace connection settings: defaults (D5), validation, secrets only by reference."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from polysync.databricks.endpoints import Endpoint
from polysync.databricks.settings import (
    AZURE_DATABRICKS_SCOPE,
    ApiVersions,
    DatabricksOAuthM2MAuthSettings,
    EntraServicePrincipalAuthSettings,
    PatAuthSettings,
    RateLimits,
    WorkspaceSettings,
)

URL = "https://adb-1234567890123456.7.azuredatabricks.net"
PAT = {"method": "pat", "token": "env:DATABRICKS_TOKEN"}


def settings(**overrides: Any) -> WorkspaceSettings:
    return WorkspaceSettings.model_validate({"url": URL, "auth": PAT, **overrides})


def test_api_versions_default_to_the_specification_but_list_on_22_as_measured() -> None:
    versions = ApiVersions()
    assert versions.for_endpoint(Endpoint.JOBS_LIST) == "2.2"  # D5: 2.0 cannot page past 1,100
    jobs_api = [e for e in Endpoint if e.path.startswith("jobs/") and e is not Endpoint.JOBS_LIST]
    assert {versions.for_endpoint(e) for e in jobs_api} == {"2.1"}
    # The Workspace and Pipelines APIs have only 2.0.
    assert {versions.for_endpoint(e) for e in Endpoint if not e.path.startswith("jobs/")} == {"2.0"}


def test_every_endpoint_has_a_version_and_a_rate() -> None:
    for endpoint in Endpoint:
        assert ApiVersions().for_endpoint(endpoint) in ("2.0", "2.1", "2.2")
        assert RateLimits().for_endpoint(endpoint) > 0


def test_rate_limit_defaults() -> None:
    limits = RateLimits()
    assert limits.for_endpoint(Endpoint.RUNS_GET) == 100.0
    assert {
        limits.for_endpoint(e)
        for e in (Endpoint.RUN_NOW, Endpoint.JOBS_GET, Endpoint.JOBS_LIST, Endpoint.JOBS_CREATE)
    } == {20.0}
    assert limits.for_endpoint(Endpoint.RUNS_CANCEL) == 30.0


def test_a_version_is_a_setting() -> None:
    loaded = settings(api_versions={"jobs_list": "2.2", "runs_get": "2.2"})
    assert loaded.api_versions.for_endpoint(Endpoint.JOBS_LIST) == "2.2"
    with pytest.raises(ValidationError):
        settings(api_versions={"jobs_list": "3.0"})
    with pytest.raises(ValidationError):
        settings(api_versions={"jobs/list": "2.1"})


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        (URL, URL),
        (URL + "/", URL),
        ("  https://ADB-1.2.azuredatabricks.net  ", "https://adb-1.2.azuredatabricks.net"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_url_is_normalised(given: str, normalised: str) -> None:
    assert settings(url=given).url == normalised


@pytest.mark.parametrize(
    "bad", ["adb-1.azuredatabricks.net", "ftp://host", URL + "/api/2.1", URL + "?o=1", "https://"]
)
def test_url_must_be_a_workspace_root(bad: str) -> None:
    with pytest.raises(ValidationError, match="workspace url"):
        settings(url=bad)


def test_auth_methods_are_discriminated() -> None:
    assert isinstance(settings().auth, PatAuthSettings)
    entra = settings(
        auth={
            "method": "entra_service_principal",
            "tenant_id": "tenant",
            "client_id": "app",
            "client_secret": "file:/run/secrets/sp",
            "authority_host": "https://login.microsoftonline.us/",
        }
    ).auth
    assert isinstance(entra, EntraServicePrincipalAuthSettings)
    assert entra.authority_host == "https://login.microsoftonline.us"
    m2m = settings(
        auth={"method": "databricks_oauth_m2m", "client_id": "c", "client_secret": "env:S"}
    )
    assert isinstance(m2m.auth, DatabricksOAuthM2MAuthSettings)
    assert m2m.auth.scope == "all-apis"
    assert AZURE_DATABRICKS_SCOPE == "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"


def test_authority_must_be_https() -> None:
    with pytest.raises(ValidationError, match="https"):
        settings(
            auth={
                "method": "entra_service_principal",
                "tenant_id": "t",
                "client_id": "c",
                "client_secret": "env:S",
                "authority_host": "http://login.example",
            }
        )


def test_a_literal_secret_is_refused_and_not_echoed() -> None:
    secret = "dapi0123456789abcdef0123456789abcdef"
    with pytest.raises(ValidationError) as caught:
        settings(auth={"method": "pat", "token": secret})
    assert secret not in str(caught.value)
    assert "dapi01" not in str(caught.value)
    assert "env:NAME" in str(caught.value)


def test_the_refresh_lead_is_at_least_five_minutes() -> None:
    assert settings().token_refresh_lead_s == 300.0
    assert settings(token_refresh_lead_s=900).token_refresh_lead_s == 900.0
    with pytest.raises(ValidationError):
        settings(token_refresh_lead_s=120)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        settings(timeout=5)
    with pytest.raises(ValidationError):
        settings(auth={**PAT, "password": "x"})


def test_settings_repr_shows_references_only() -> None:
    text = repr(settings())
    assert "env:DATABRICKS_TOKEN" in text
