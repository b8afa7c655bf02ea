"""Secret references: `env:` resolution and errors that never show a secret (files: integration)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polysync.errors import SecretReferenceError
from polysync.secrets import SecretReference, resolve_secret


def test_env_reference_resolves_and_strips_a_trailing_newline() -> None:
    secret = resolve_secret("env:TOKEN", {"TOKEN": "dapi-abc\n"})
    assert secret.get_secret_value() == "dapi-abc"
    assert "dapi" not in repr(secret)


def test_reference_round_trips() -> None:
    reference = SecretReference.parse(" file:/run/secrets/pat ")
    assert (reference.scheme, reference.target) == ("file", "/run/secrets/pat")
    assert str(reference) == "file:/run/secrets/pat"


def test_missing_variable() -> None:
    with pytest.raises(SecretReferenceError, match="environment variable TOKEN is not set"):
        resolve_secret("env:TOKEN", {})


def test_empty_value() -> None:
    with pytest.raises(SecretReferenceError, match="empty"):
        resolve_secret("env:TOKEN", {"TOKEN": "  \n"})


@pytest.mark.parametrize("reference", ["env:", "file:  "])
def test_a_reference_must_name_something(reference: str) -> None:
    with pytest.raises(SecretReferenceError, match="names no"):
        SecretReference.parse(reference)


def test_unsupported_scheme_names_the_scheme_and_the_fix() -> None:
    with pytest.raises(SecretReferenceError) as caught:
        SecretReference.parse("vault://kv/databricks-pat")
    assert "'vault'" in caught.value.message
    assert "env:NAME" in caught.value.message


@given(st.text(min_size=12, alphabet=st.characters(codec="ascii", exclude_characters=":")))
def test_a_pasted_secret_is_never_echoed(secret: str) -> None:
    with pytest.raises(SecretReferenceError) as caught:
        SecretReference.parse(secret)
    with pytest.raises(SecretReferenceError) as placeholder:
        SecretReference.parse("x" * 12)
    # The message does not depend on what was pasted at all.
    assert caught.value.message == placeholder.value.message
    assert "(value not shown)" in caught.value.message
