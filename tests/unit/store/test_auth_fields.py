"""The secrets guard: secret-named auth fields must be `env:`/`file:` references, never values."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from polysync.errors import UsageError
from polysync.secrets import TOKEN_SHAPES
from polysync.store.auth_fields import checked_auth, is_secret_field

secret_names = st.sampled_from(
    ["token", "client_secret", "password", "refresh_token", "Client_Secret", "DB_PASSWORD"]
)


def refusal(auth: dict[str, Any]) -> str:
    with pytest.raises(UsageError) as caught:
        checked_auth(auth)
    return caught.value.message


def is_reference(value: str) -> bool:
    scheme, sep, target = value.strip().partition(":")
    return bool(sep) and scheme in ("env", "file") and bool(target.strip())


@given(name=secret_names, value=st.text())
def test_a_secret_value_is_refused_with_a_message_that_does_not_depend_on_it(
    name: str, value: str
) -> None:
    assume(not is_reference(value))
    message = refusal({"method": "pat", name: value})
    assert message == refusal({"method": "pat", name: "dapi0123456789abcdef"})
    assert repr(name) in message
    assert "env:NAME" in message
    assert "file:PATH" in message


# What a well-formed reference names: an environment variable, or a path without control characters.
env_targets = (
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,40}", fullmatch=True)
    .filter(lambda t: re.search(TOKEN_SHAPES, t) is None)
    .map(lambda t: ("env", t))
)
file_targets = (
    st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=200)
    .filter(lambda t: t.strip() != "")
    .map(lambda t: ("file", t))
)


@given(name=secret_names, reference=st.one_of(env_targets, file_targets))
def test_references_are_kept_in_normal_form(name: str, reference: tuple[str, str]) -> None:
    scheme, target = reference
    checked = checked_auth({"method": "pat", name: f"  {scheme}:{target} "})
    assert checked == {"method": "pat", name: f"{scheme}:{target.strip()}"}


@given(st.dictionaries(st.text().filter(lambda k: not is_secret_field(k)), st.text()))
def test_other_fields_are_kept_as_given(auth: dict[str, str]) -> None:
    assert checked_auth(auth) == auth


@pytest.mark.parametrize(
    "auth",
    [
        {"method": "x", "nested": {"password": "hunter2"}},
        {"method": "x", "fallbacks": [{"token": "dapi123"}]},
        {"method": "x", "client_secret": {"value": "s3cret"}},
        {"method": "x", "token": 123456},
        {"method": "x", "token": ["env:A"]},
    ],
)
def test_secrets_are_found_at_any_depth_and_in_any_shape(auth: dict[str, Any]) -> None:
    message = refusal(auth)
    for hidden in ("hunter2", "dapi123", "s3cret", "123456"):
        assert hidden not in message


def test_an_absent_secret_is_not_a_secret() -> None:
    assert checked_auth({"method": "managed_identity", "token": None}) == {
        "method": "managed_identity",
        "token": None,
    }


def test_which_names_are_secret() -> None:
    assert is_secret_field("client_secret")
    assert is_secret_field("Token")
    assert is_secret_field("proxy_password")
    assert not is_secret_field("client_id")
    assert not is_secret_field("tenant_id")
