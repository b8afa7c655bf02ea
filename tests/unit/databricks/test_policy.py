"""Where credentials may go (issue 9): host allow-list, plain HTTP, secret scope, option bounds,
the CA bundle, and a local protocol error that is neither retried nor echoed."""

from __future__ import annotations

import logging
import os
import random
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from polysync.clock import ManualClock
from polysync.databricks.client import DatabricksClient
from polysync.databricks.policy import ConnectionPolicy, is_loopback, parse_host_patterns
from polysync.databricks.settings import WorkspaceSettings
from polysync.errors import ConfigError, DatabricksTransportError, SecretReferenceError
from polysync.secrets import SecretScope
from tests.conftest import autojump

AZURE = ("*.azuredatabricks.net",)
WORKSPACE = "https://adb-1234567890123456.7.azuredatabricks.net"


def settings(url: str = WORKSPACE, **overrides: Any) -> WorkspaceSettings:
    data: dict[str, Any] = {"url": url, "auth": {"method": "pat", "token": "env:DATABRICKS_TOKEN"}}
    data.update(overrides)
    return WorkspaceSettings.model_validate(data)


@pytest.mark.parametrize(
    "url",
    [
        WORKSPACE,
        "https://ADB-1.2.AzureDatabricks.net",
        "http://127.0.0.1:8765",
        "http://localhost:8080",
        "http://[::1]:9000",
        "https://127.0.0.2",
    ],
)
def test_azure_workspaces_and_loopback_are_allowed(url: str) -> None:
    ConnectionPolicy(workspace_hosts=AZURE).check(settings(url))


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example",
        "https://azuredatabricks.net.attacker.example",
        "https://evilazuredatabricks.net",
        "https://10.0.0.5",
    ],
)
def test_other_hosts_are_refused_under_the_allow_list(url: str) -> None:
    with pytest.raises(ConfigError, match="POLYSYNC_WORKSPACE_HOSTS"):
        ConnectionPolicy(workspace_hosts=AZURE).check(settings(url))
    ConnectionPolicy(workspace_hosts=None).check(settings(url))  # no list: any host


def test_the_allow_list_can_be_widened() -> None:
    policy = ConnectionPolicy(
        workspace_hosts=parse_host_patterns("*.azuredatabricks.net, adb.corp")
    )
    policy.check(settings("https://adb.corp"))
    assert parse_host_patterns("  ") is None


def test_plain_http_to_a_remote_host_is_refused_unless_allowed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ConfigError, match="--allow-insecure-http"):
        ConnectionPolicy().check(settings("http://adb-1.2.azuredatabricks.net"))
    with caplog.at_level(logging.WARNING):
        ConnectionPolicy(allow_insecure_http=True).check(
            settings("http://adb-1.2.azuredatabricks.net")
        )
    assert "INSECURE" in caplog.text


def test_an_entra_authority_outside_microsoft_is_refused_under_the_allow_list() -> None:
    def entra(authority: str) -> WorkspaceSettings:
        return settings(
            auth={
                "method": "entra_service_principal",
                "tenant_id": "t",
                "client_id": "c",
                "client_secret": "env:SECRET",
                "authority_host": authority,
            }
        )

    policy = ConnectionPolicy(workspace_hosts=AZURE)
    policy.check(entra("https://login.microsoftonline.com"))
    policy.check(entra("https://login.microsoftonline.us"))
    policy.check(entra("https://127.0.0.1:8443"))
    with pytest.raises(ConfigError, match="authority host"):
        policy.check(entra("https://login.attacker.example"))


def test_secret_references_outside_the_scope_are_refused() -> None:
    policy = ConnectionPolicy(secret_scope=SecretScope(env_prefix="POLYSYNC_SECRET_"))
    policy.check(settings(auth={"method": "pat", "token": "env:POLYSYNC_SECRET_PAT"}))
    with pytest.raises(SecretReferenceError, match="POLYSYNC_SECRET_ENV_PREFIX"):
        policy.check(settings())


@given(st.text(max_size=60))
def test_loopback_detection_never_fails(host: str) -> None:
    assert isinstance(is_loopback(host), bool)


# ------------------------------------------------------------------ option bounds


@pytest.mark.parametrize(
    "options",
    [
        {"retry": {"deadline_s": 10**9}},
        {"retry": {"max_attempts": 10**6}},
        {"retry": {"backoff_max_s": 86_400}},
        {"retry": {"default_retry_after_s": 10**6}},
        {"request_timeout_s": 86_400},
        {"connect_timeout_s": 0},
        {"request_timeout_s": 0.001},
        {"connect_timeout_s": 0.01},
        {"max_connections": 100_000},
        {"token_refresh_lead_s": 10**9},
        {"rate_limits": {"runs_get": 1e9}},
        {"rate_limits": {"runs_get": 0}},
        {"url": "https://adb-1.2.azuredatabricks.net\r\nX-Evil: 1"},
        {"url": "https://" + "a" * 2000 + ".azuredatabricks.net"},
    ],
)
def test_options_are_bounded(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        settings(**options)


@pytest.mark.parametrize(
    "auth",
    [
        {"method": "databricks_oauth_m2m", "client_id": "a\x00b", "client_secret": "env:S"},
        {"method": "databricks_oauth_m2m", "client_id": "a" * 201, "client_secret": "env:S"},
        {"method": "managed_identity", "client_id": "\x1b[2J"},
        {
            "method": "entra_service_principal",
            "tenant_id": "t\n",
            "client_id": "c",
            "client_secret": "env:S",
        },
    ],
)
def test_auth_fields_are_bounded(auth: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        settings(auth=auth)


# ------------------------------------------------------------------ tls_ca_bundle


def test_the_ca_bundle_must_be_a_readable_pem_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot be read"):
        settings(tls_ca_bundle=str(tmp_path / "missing.pem"))
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("hello\n")
    with pytest.raises(ValidationError, match="no PEM certificate"):
        settings(tls_ca_bundle=str(not_pem))
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValidationError, match="not a valid PEM"):
        settings(tls_ca_bundle=str(broken))
    with pytest.raises(ValidationError, match="not a regular file"):
        settings(tls_ca_bundle="/dev/zero")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValidationError, match="not a regular file"):
        settings(tls_ca_bundle=str(fifo))


def test_a_real_ca_bundle_is_accepted(tmp_path: Path) -> None:
    bundle = ssl.get_default_verify_paths().cafile
    if bundle is None or not Path(bundle).is_file():
        pytest.skip("no system CA bundle file")
    assert settings(tls_ca_bundle=bundle).tls_ca_bundle == Path(bundle)


# ------------------------------------------------------------------ local protocol errors


class _IllegalHeaderTransport(httpx.AsyncBaseTransport):
    """What h11 raises for a header with a line break: its text quotes the header value."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise httpx.LocalProtocolError(
            f"Illegal header value {request.headers['authorization'].encode()!r}"
        )


async def test_a_local_protocol_error_is_not_retried_and_not_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-very-secret-value")
    transport = _IllegalHeaderTransport()
    clock = ManualClock()
    started_s = clock.now()
    async with DatabricksClient(
        settings(), transport=transport, clock=clock, rng=random.Random(0)
    ) as client:
        with pytest.raises(DatabricksTransportError) as caught:
            # autojump: before the fix, the retries' backoff would wait on the manual clock.
            await autojump(clock, client.list_runs(job_id=1).__anext__())
    assert transport.calls == 1  # a GET, idempotent: yet not repeated
    assert clock.now() == started_s  # no backoff waited
    assert "dapi-very-secret-value" not in str(caught.value)
    assert "not shown" in str(caught.value)
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("[::1]", True),
        ("evil.localhost", False),  # a DNS name, whatever it resolves to today
        ("localhost.attacker.example", False),
        ("127.0.0.1.nip.io", False),
        ("0x7f000001", False),
    ],
)
def test_only_literal_loopback_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("patterns", "host", "allowed"),
    [
        ("*.azuredatabricks.net", "ADB-1.2.AzureDatabricks.NET.", True),
        ("*.azuredatabricks.net.", "adb-1.2.azuredatabricks.net", True),
        ("*.azuredatabricks.net", "azuredatabricks.net", False),
        ("adb.corp", "ADB.corp.", True),
        ("adb.corp", "x.adb.corp", False),
    ],
)
def test_host_patterns_match_as_dns_names(patterns: str, host: str, allowed: bool) -> None:
    policy = ConnectionPolicy(workspace_hosts=parse_host_patterns(patterns))
    if allowed:
        policy.check(settings(f"https://{host.rstrip('.')}"))
    else:
        with pytest.raises(ConfigError, match="POLYSYNC_WORKSPACE_HOSTS"):
            policy.check(settings(f"https://{host}"))


@pytest.mark.parametrize("patterns", ["adb-*.azuredatabricks.net", "[a-z]*.corp", "https://x.org"])
def test_host_patterns_other_than_dns_names_are_refused(patterns: str) -> None:
    with pytest.raises(ConfigError, match="is not a host pattern"):
        parse_host_patterns(patterns)
