"""Secret references: parsing, scope, resolution, and errors that never show a secret."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from polysync import secrets as secrets_module
from polysync.errors import SecretReferenceError
from polysync.secrets import (
    MAX_SECRET_FILE_BYTES,
    TOKEN_SHAPES,
    SecretReference,
    SecretScope,
    resolve_secret,
)


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
        SecretReference.parse("aws://kv/databricks-pat")
    assert "'aws'" in caught.value.message
    assert "env:NAME" in caught.value.message
    assert "vault://VAULT/SECRET" in caught.value.message


@given(st.text(min_size=12, alphabet=st.characters(codec="ascii", exclude_characters=":")))
def test_a_pasted_secret_is_never_echoed(secret: str) -> None:
    with pytest.raises(SecretReferenceError) as caught:
        SecretReference.parse(secret)
    with pytest.raises(SecretReferenceError) as placeholder:
        SecretReference.parse("x" * 12)
    # The message does not depend on what was pasted at all.
    assert caught.value.message == placeholder.value.message
    assert "(value not shown)" in caught.value.message


# --- Issue 9: what a reference may reach, and what it may resolve to --------------------------


@pytest.mark.parametrize(
    "value",
    [
        "root:x:0:0\ndaemon:x:1:1",  # a multi-line file, e.g. /etc/passwd
        "PATH=/usr/bin\x00TOKEN=dapi-other\x00",  # /proc/self/environ
        "dapi-first dapi-second",  # a space inside
        "t\u00f6ken-umlaut",  # not ASCII
        "xyzw" * 4097,  # longer than any credential
    ],
)
def test_a_value_that_is_not_a_credential_is_refused_without_being_shown(value: str) -> None:
    with pytest.raises(SecretReferenceError) as caught:
        resolve_secret("env:TOKEN", {"TOKEN": value})
    message = caught.value.message
    assert "not shown" in message
    for part in re.split(r"[\s\x00]+", value):
        if len(part) > 3:
            assert part[:12] not in message


@given(
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=200
    )
)
def test_any_line_of_printable_ascii_is_a_credential(value: str) -> None:
    assert resolve_secret("env:TOKEN", {"TOKEN": f" {value}\n"}).get_secret_value() == value


@given(st.text(min_size=1, max_size=100))
def test_a_resolved_secret_is_never_in_a_refusal(value: str) -> None:
    stripped = value.strip()
    if stripped and re.fullmatch(r"[\x21-\x7e]+", stripped):
        assert resolve_secret("env:TOKEN", {"TOKEN": value}).get_secret_value() == stripped
        return
    with pytest.raises(SecretReferenceError) as caught:
        resolve_secret("env:TOKEN", {"TOKEN": value})
    # The message is one of a few fixed texts: it never depends on the value's printable
    # characters, so the same value with each of them replaced gets the very same message (a test
    # for "the value is not in the message" fails on values such as "The valu").
    masked = re.sub(r"[\x21-\x7e]", "x", value)
    with pytest.raises(SecretReferenceError) as caught_masked:
        resolve_secret("env:TOKEN", {"TOKEN": masked})
    assert caught.value.message == caught_masked.value.message


@pytest.mark.parametrize(
    "name",
    [
        "dapi0123456789abcdef0123456789abcdef",  # a PAT pasted after env:
        "dose0123456789abcdef0123456789abcdef",
        "psk_abcdefghijklmnopqrstuvwxyz0123456789",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "abc8Q~xyz.secret-value",  # an Entra client secret: not a variable name
        "1TOKEN",
        "MY TOKEN",
        "A" * 257,  # the 100 KB name of the issue, shortened
    ],
)
def test_env_names_must_be_variable_names_and_are_never_echoed(name: str) -> None:
    with pytest.raises(SecretReferenceError) as caught:
        SecretReference.parse(f"env:{name}")
    assert name not in caught.value.message
    assert "not shown" in caught.value.message


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,200}", fullmatch=True))
def test_every_variable_name_parses(name: str) -> None:
    assume(re.search(TOKEN_SHAPES, name) is None)
    assert str(SecretReference.parse(f"env:{name}")) == f"env:{name}"


@given(st.text(max_size=300))
def test_parse_never_fails_other_than_with_a_reference_error(text: str) -> None:
    try:
        reference = SecretReference.parse(text)
    except SecretReferenceError:
        return
    assert reference.scheme in ("env", "file")
    assert SecretReference.parse(str(reference)) == reference


def test_the_env_prefix_bounds_what_env_may_read() -> None:
    scope = SecretScope(env_prefix="POLYSYNC_SECRET_")
    assert str(SecretReference.parse("env:POLYSYNC_SECRET_PAT", scope)) == "env:POLYSYNC_SECRET_PAT"
    with pytest.raises(SecretReferenceError, match="POLYSYNC_SECRET_ENV_PREFIX"):
        SecretReference.parse("env:POLYSYNC_DATABASE_URL", scope)


def test_the_secrets_dir_bounds_what_file_may_read(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "pat").write_text("dapi-inside\n")
    outside = tmp_path / "outside"
    outside.write_text("dapi-outside\n")
    scope = SecretScope(secrets_dir=secrets_dir)
    assert resolve_secret("file:pat", scope=scope).get_secret_value() == "dapi-inside"
    assert resolve_secret(f"file:{secrets_dir}/pat", scope=scope).get_secret_value() == (
        "dapi-inside"
    )
    for escape in (
        f"file:{outside}",
        "file:../outside",
        "file:/etc/passwd",
        "file:/proc/self/environ",
    ):
        with pytest.raises(SecretReferenceError, match="POLYSYNC_SECRETS_DIR"):
            resolve_secret(escape, scope=scope)
    # A link inside the directory that points out of it is followed, then refused.
    (secrets_dir / "link").symlink_to(outside)
    with pytest.raises(SecretReferenceError, match="POLYSYNC_SECRETS_DIR"):
        resolve_secret("file:link", scope=scope)


def test_proc_environ_is_refused_without_its_contents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYSYNC_TEST_OTHER_PLATFORM_TOKEN", "dapi-other-platform-secret")
    with pytest.raises(SecretReferenceError) as caught:
        resolve_secret("file:/proc/self/environ")
    assert "dapi-other-platform-secret" not in caught.value.message
    assert "NUL" in caught.value.message


def test_a_multi_line_file_is_refused_without_its_contents(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin\n")
    with pytest.raises(SecretReferenceError) as caught:
        resolve_secret(f"file:{passwd}")
    assert "root:x" not in caught.value.message
    assert "line break" in caught.value.message


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # Opened without blocking: no writer ever comes, and the call still returns.
    with pytest.raises(SecretReferenceError, match="not a regular file"):
        resolve_secret(f"file:{fifo}")


def test_devices_are_refused() -> None:
    with pytest.raises(SecretReferenceError, match="not a regular file"):
        resolve_secret("file:/dev/zero")


def test_a_large_file_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"a" * (MAX_SECRET_FILE_BYTES + 1))
    with pytest.raises(SecretReferenceError, match="larger than"):
        resolve_secret(f"file:{big}")


async def test_a_file_is_read_off_the_event_loop(tmp_path: Path) -> None:
    pat = tmp_path / "pat"
    pat.write_text("dapi-file\n")
    loop_thread = threading.get_ident()
    readers: list[int] = []
    real = secrets_module.read_regular_file

    def spy(path: Path, *, max_bytes: int) -> bytes:
        readers.append(threading.get_ident())
        return real(path, max_bytes=max_bytes)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(secrets_module, "read_regular_file", spy)
        secret = await SecretReference.parse(f"file:{pat}").resolve_async()
    assert secret.get_secret_value() == "dapi-file"
    assert readers
    assert loop_thread not in readers
