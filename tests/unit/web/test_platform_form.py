"""The platform editor's form: secrets only as references, inline errors that never echo them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from polysync.web.platform_form import PlatformForm

URL = "https://adb-1234567890123456.7.azuredatabricks.net"


def form(**fields: str) -> PlatformForm:
    return PlatformForm.from_form({"name": "prod", "workspace_url": URL, **fields})


def test_a_pat_reference_makes_the_auth_mapping() -> None:
    filled = form(auth_method="pat", pat_token=" env:DATABRICKS_TOKEN ")
    assert filled.validate()
    assert filled.auth() == {"method": "pat", "token": "env:DATABRICKS_TOKEN"}


def test_only_the_chosen_methods_fields_are_kept() -> None:
    filled = form(
        auth_method="entra_service_principal",
        sp_tenant_id="t",
        sp_client_id="c",
        sp_client_secret="file:/run/secrets/sp",
        pat_token="env:IGNORED",
    )
    assert filled.validate()
    assert filled.auth() == {
        "method": "entra_service_principal",
        "tenant_id": "t",
        "client_id": "c",
        "client_secret": "file:/run/secrets/sp",
    }


def test_managed_identity_needs_nothing() -> None:
    filled = form(auth_method="managed_identity")
    assert filled.validate()
    assert filled.auth() == {"method": "managed_identity"}


def test_missing_fields_and_a_bad_url_are_named() -> None:
    filled = PlatformForm.from_form(
        {"name": "", "workspace_url": "ftp://x", "auth_method": "databricks_oauth_m2m"}
    )
    assert not filled.validate()
    assert set(filled.errors) == {"name", "m2m_client_id", "m2m_client_secret"}
    url_only = form(workspace_url="ftp://x", auth_method="pat", pat_token="env:T")
    assert not url_only.validate()
    assert "workspace url" in url_only.errors["workspace_url"].lower()


SECRET_CHARACTERS = st.characters(categories=["L", "N"], include_characters="-_.~+/=")


@given(st.text(SECRET_CHARACTERS, min_size=12, max_size=80))
def test_a_secret_value_is_refused_and_never_echoed(secret: str) -> None:
    filled = form(auth_method="databricks_oauth_m2m", m2m_client_id="c", m2m_client_secret=secret)
    assert not filled.validate()
    assert filled.values["m2m_client_secret"] == ""
    assert "reference" in filled.errors["m2m_client_secret"]
    assert all(secret not in message for message in filled.errors.values())


def test_fields_over_their_limits_or_with_control_characters_are_marked() -> None:
    form = PlatformForm.from_form(
        {
            "name": "prod\x1b[2J",
            "workspace_url": "https://adb-1.2.azuredatabricks.net",
            "cluster_id": "c" * 201,
            "description": "line one\nline two",
            "auth_method": "pat",
            "pat_token": "env:DATABRICKS_TOKEN",
        }
    )
    assert not form.validate()
    assert "ESC" in form.errors["name"]
    assert "limit is 200" in form.errors["cluster_id"]
    assert "description" not in form.errors  # line breaks are fine in a description
