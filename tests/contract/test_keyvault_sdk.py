"""Contract: the official azure-keyvault-secrets + azure-identity clients use the emulator's vault
over HTTPS, unchanged (only `verify_challenge_resource=False`, since the vault is not on
`*.vault.azure.net`)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator

import httpx
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from polysync.emulator.auth import DATABRICKS_ENTRA_SCOPE
from polysync.emulator.serving import run_in_thread
from polysync.emulator.tls import TlsFiles, make_self_signed_cert
from tests.conftest import EmulatorHarness, make_harness, make_spec

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
READER, READER_SECRET = "5b2f1a1e-0c5d-4a4e-9c3a-7d1c1b2e3f40", "reader-secret"
WRITER, WRITER_SECRET = "0d7a8b9c-1e2f-4a3b-8c4d-5e6f7a8b9c0d", "writer-secret"
STRANGER, STRANGER_SECRET = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b", "stranger-secret"
OTHER_TENANT = "11111111-2222-3333-4444-555555555555"
MI_HEADER = "identity-header-value"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_self_signed_cert(tmp_path_factory.mktemp("kv-tls"))


def vault_spec() -> dict[str, object]:
    return {
        "auth": {
            "tokens": ["dapi-test"],
            "service_principals": [
                {"tenant_id": TENANT, "client_id": READER, "client_secret": READER_SECRET},
                {"tenant_id": TENANT, "client_id": WRITER, "client_secret": WRITER_SECRET},
                {"tenant_id": TENANT, "client_id": STRANGER, "client_secret": STRANGER_SECRET},
                {
                    "tenant_id": OTHER_TENANT,
                    "client_id": STRANGER,
                    "client_secret": STRANGER_SECRET,
                },
            ],
            "managed_identity": {"identity_header": MI_HEADER},
        },
        "vault": {
            "name": "demo-kv",
            "tenant_id": TENANT,
            "secrets": {"databricks-token": {"value": "dapi-first", "tags": {"team": "data"}}},
            "access_policies": [
                {"client_id": READER, "permissions": ["get", "list"]},
                {"client_id": WRITER},
                {"client_id": "managed-identity-of-this-host", "permissions": ["get"]},
            ],
        },
    }


@pytest.fixture
def vault(tls: TlsFiles) -> Iterator[tuple[EmulatorHarness, str]]:
    spec = make_spec(**vault_spec())
    spec.auth.managed_identity.client_id = "managed-identity-of-this-host"  # type: ignore[union-attr]
    harness = make_harness(spec, served=True)
    base_url, stop = run_in_thread(harness.app, tls=tls)
    try:
        yield harness, base_url
    finally:
        stop()


def credential(
    url: str, tls: TlsFiles, client_id: str, secret: str, tenant: str = TENANT
) -> ClientSecretCredential:
    return ClientSecretCredential(
        tenant,
        client_id,
        secret,
        authority=url,
        disable_instance_discovery=True,
        connection_verify=str(tls.ca_path),
    )


def client(url: str, tls: TlsFiles, cred: object) -> SecretClient:
    return SecretClient(
        url,
        cred,
        verify_challenge_resource=False,
        connection_verify=str(tls.ca_path),  # type: ignore[arg-type]
    )


def test_reads_the_latest_and_a_given_version(
    vault: tuple[EmulatorHarness, str], tls: TlsFiles
) -> None:
    _, url = vault
    with credential(url, tls, READER, READER_SECRET) as cred, client(url, tls, cred) as secrets:
        latest = secrets.get_secret("databricks-token")
        assert latest.value == "dapi-first"
        assert latest.properties.tags == {"team": "data"}
        assert latest.properties.enabled is True
        assert latest.id == f"{url}/secrets/databricks-token/{latest.properties.version}"
        again = secrets.get_secret("databricks-token", latest.properties.version)
        assert again.value == "dapi-first"


def test_rotation_through_the_control_plane_is_the_next_read(
    vault: tuple[EmulatorHarness, str], tls: TlsFiles
) -> None:
    _, url = vault
    with credential(url, tls, READER, READER_SECRET) as cred, client(url, tls, cred) as secrets:
        first = secrets.get_secret("databricks-token")
        rotated = httpx.put(
            f"{url}/emulator/vault/secrets/databricks-token",
            json={"value": "dapi-second"},
            verify=ssl.create_default_context(cafile=str(tls.ca_path)),
        )
        assert rotated.status_code == 200
        assert "dapi-second" not in rotated.text
        second = secrets.get_secret("databricks-token")
        assert second.value == "dapi-second"
        assert second.properties.version == rotated.json()["version"]
        assert (
            secrets.get_secret("databricks-token", first.properties.version).value == "dapi-first"
        )
        versions = [
            p.version for p in secrets.list_properties_of_secret_versions("databricks-token")
        ]
        assert versions == [first.properties.version, second.properties.version]


def test_set_list_and_page_with_next_link(
    vault: tuple[EmulatorHarness, str], tls: TlsFiles
) -> None:
    _, url = vault
    with credential(url, tls, WRITER, WRITER_SECRET) as cred, client(url, tls, cred) as secrets:
        for i in range(30):  # more than one page of 25
            secrets.set_secret(f"s-{i:02d}", f"value-{i}", content_type="text/plain")
        names = [p.name for p in secrets.list_properties_of_secrets()]
        assert names == sorted(["databricks-token", *(f"s-{i:02d}" for i in range(30))])
        got = secrets.get_secret("s-07")
        assert (got.value, got.properties.content_type) == ("value-7", "text/plain")


def test_soft_delete_recover_and_purge(vault: tuple[EmulatorHarness, str], tls: TlsFiles) -> None:
    _, url = vault
    with credential(url, tls, WRITER, WRITER_SECRET) as cred, client(url, tls, cred) as secrets:
        secrets.set_secret("temp", "v")
        deleted = secrets.begin_delete_secret("temp").result()
        assert deleted.recovery_id == f"{url}/deletedsecrets/temp"
        with pytest.raises(ResourceNotFoundError):
            secrets.get_secret("temp")
        assert [d.name for d in secrets.list_deleted_secrets()] == ["temp"]
        secrets.begin_recover_deleted_secret("temp").result()
        assert secrets.get_secret("temp").value == "v"
        secrets.begin_delete_secret("temp").result()
        secrets.purge_deleted_secret("temp")
        with pytest.raises(ResourceNotFoundError):
            secrets.get_deleted_secret("temp")


def test_missing_secret_is_secret_not_found(
    vault: tuple[EmulatorHarness, str], tls: TlsFiles
) -> None:
    _, url = vault
    with (
        credential(url, tls, READER, READER_SECRET) as cred,
        client(url, tls, cred) as secrets,
        pytest.raises(ResourceNotFoundError) as missing,
    ):
        secrets.get_secret("nope")
    assert missing.value.error is not None
    assert missing.value.error.code == "SecretNotFound"
    assert "A secret with (name/id) nope was not found in this key vault." in str(missing.value)


def test_a_principal_without_the_permission_gets_403(
    vault: tuple[EmulatorHarness, str], tls: TlsFiles
) -> None:
    _, url = vault
    with (
        credential(url, tls, READER, READER_SECRET) as cred,
        client(url, tls, cred) as secrets,
        pytest.raises(HttpResponseError) as refused,
    ):
        secrets.set_secret("x", "y")
    assert refused.value.status_code == 403
    assert refused.value.error is not None
    assert refused.value.error.code == "Forbidden"
    assert f"appid={READER}" in str(refused.value)
    assert "does not have secrets set permission on key vault 'demo-kv" in str(refused.value)
    with (
        credential(url, tls, STRANGER, STRANGER_SECRET) as cred,
        client(url, tls, cred) as secrets,
        pytest.raises(HttpResponseError) as stranger,
    ):
        secrets.get_secret("databricks-token")
    assert stranger.value.status_code == 403


def test_a_token_of_another_tenant_is_refused(
    vault: tuple[EmulatorHarness, str], tls: TlsFiles
) -> None:
    _, url = vault
    # The client asks its credential for the vault's tenant (from the challenge); a credential
    # that may only use another tenant cannot get a token for it...
    with credential(url, tls, STRANGER, STRANGER_SECRET, tenant=OTHER_TENANT) as cred:
        with client(url, tls, cred) as secrets, pytest.raises(ClientAuthenticationError):
            secrets.get_secret("databricks-token")
        # ...and a token of the other tenant, sent anyway, is refused by the vault.
        token = cred.get_token("https://vault.azure.net/.default").token
    answer = httpx.get(
        f"{url}/secrets/databricks-token?api-version=2025-07-01",
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cafile=str(tls.ca_path)),
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["message"].startswith("AKV10032: Invalid issuer.")


def test_managed_identity_reads_the_vault(
    vault: tuple[EmulatorHarness, str], tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = vault
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", MI_HEADER)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_path))
    with (
        ManagedIdentityCredential(client_id="managed-identity-of-this-host") as cred,
        client(url, tls, cred) as secrets,
    ):
        assert secrets.get_secret("databricks-token").value == "dapi-first"


def test_the_challenge_and_audience_checks_over_plain_http(
    vault: tuple[EmulatorHarness, str], tls: TlsFiles
) -> None:
    _, url = vault
    verify = ssl.create_default_context(cafile=str(tls.ca_path))
    bare = httpx.get(f"{url}/secrets/databricks-token/?api-version=7.5", verify=verify)
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"] == (
        f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
        'resource="https://vault.azure.net"'
    )
    assert bare.json() == {
        "error": {
            "code": "Unauthorized",
            "message": "AKV10000: Request is missing a Bearer or PoP token.",
        }
    }
    with credential(url, tls, READER, READER_SECRET) as cred:
        databricks_token = cred.get_token(DATABRICKS_ENTRA_SCOPE).token
    wrong = httpx.get(
        f"{url}/secrets/databricks-token?api-version=7.5",
        headers={"Authorization": f"Bearer {databricks_token}"},
        verify=verify,
    )
    assert wrong.status_code == 401
    assert "AKV10022: Invalid audience" in wrong.json()["error"]["message"]
    # And a Key Vault token is no good for the Databricks API.
    with credential(url, tls, READER, READER_SECRET) as cred:
        vault_token = cred.get_token("https://vault.azure.net/.default").token
    jobs = httpx.get(
        f"{url}/api/2.2/jobs/list",
        headers={"Authorization": f"Bearer {vault_token}"},
        verify=verify,
    )
    assert jobs.status_code == 403
    no_version = httpx.get(
        f"{url}/secrets/databricks-token",
        headers={"Authorization": f"Bearer {vault_token}"},
        verify=verify,
    )
    assert no_version.status_code == 400
    assert no_version.json()["error"]["code"] == "BadParameter"


async def test_the_aio_client_on_asyncio_requests_transport(
    vault: tuple[EmulatorHarness, str], tls: TlsFiles
) -> None:
    # What polysync.vaults uses: azure-keyvault-secrets' aio client and azure-identity's aio
    # credential, on azure-core's AsyncioRequestsTransport (no aiohttp), unchanged.
    from azure.core.pipeline.transport import AsyncioRequestsTransport
    from azure.identity.aio import ClientSecretCredential as AioCredential
    from azure.keyvault.secrets.aio import SecretClient as AioSecretClient

    _, url = vault
    ca = str(tls.ca_path)
    async with (
        AioCredential(
            TENANT,
            READER,
            READER_SECRET,
            authority=url,
            disable_instance_discovery=True,
            transport=AsyncioRequestsTransport(connection_verify=ca),
        ) as cred,
        AioSecretClient(
            url,
            cred,
            verify_challenge_resource=False,
            transport=AsyncioRequestsTransport(connection_verify=ca),
        ) as secrets,
    ):
        latest = await secrets.get_secret("databricks-token")
        assert latest.value == "dapi-first"
        again = await secrets.get_secret("databricks-token", latest.properties.version)
        assert again.value == "dapi-first"
        with pytest.raises(ResourceNotFoundError):
            await secrets.get_secret("nope")


@pytest.mark.parametrize(
    ("client_id", "secret", "name", "said"),
    [
        (READER, READER_SECRET, "nope", "has no such secret (404 SecretNotFound: A secret with"),
        (STRANGER, STRANGER_SECRET, "databricks-token", "refused the read (403 Forbidden"),
        (READER, "wrong-secret", "databricks-token", "cannot sign in to Key Vault"),
    ],
)
async def test_polysync_reader_names_the_reference_and_key_vaults_answer(
    vault: tuple[EmulatorHarness, str],
    tls: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
    client_id: str,
    secret: str,
    name: str,
    said: str,
) -> None:
    from polysync.errors import SecretReferenceError
    from polysync.secrets import SecretScope
    from polysync.vaults.keyvault import KeyVaultReader
    from polysync.vaults.settings import KeyVaultSettings

    _, url = vault
    monkeypatch.setenv("KV_TEST_SECRET", secret)
    settings = KeyVaultSettings.model_validate(
        {
            "url": url,
            "auth": {
                "method": "entra_service_principal",
                "tenant_id": TENANT,
                "client_id": client_id,
                "client_secret": "env:KV_TEST_SECRET",
                "authority_host": url,
                "disable_instance_discovery": True,
            },
            "tls_ca_bundle": str(tls.ca_path),
        }
    )
    assert settings.verifies_challenge is False  # loopback: the emulator
    reader = KeyVaultReader("demo-kv", settings, SecretScope())
    try:
        with pytest.raises(SecretReferenceError) as refused:
            await reader.get(name, None, what=f"secret reference vault://demo-kv/{name}")
    finally:
        await reader.aclose()
    assert refused.value.message.startswith(f"secret reference vault://demo-kv/{name}: ")
    assert said in refused.value.message
    assert secret not in refused.value.message
    assert "dapi-first" not in refused.value.message


async def test_challenge_verification_refuses_the_emulator_when_forced_on(
    vault: tuple[EmulatorHarness, str], tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The per-vault switch is real: the emulator's challenge names https://vault.azure.net, not
    # its own host, so a vault that verifies it (every real vault, by default) refuses to send
    # the token there.
    from polysync.errors import SecretReferenceError
    from polysync.secrets import SecretScope
    from polysync.vaults.keyvault import KeyVaultReader
    from polysync.vaults.settings import KeyVaultSettings

    _, url = vault
    monkeypatch.setenv("KV_TEST_SECRET", READER_SECRET)
    settings = KeyVaultSettings.model_validate(
        {
            "url": url,
            "auth": {
                "method": "entra_service_principal",
                "tenant_id": TENANT,
                "client_id": READER,
                "client_secret": "env:KV_TEST_SECRET",
                "authority_host": url,
                "disable_instance_discovery": True,
            },
            "tls_ca_bundle": str(tls.ca_path),
            "verify_challenge_resource": True,
        }
    )
    reader = KeyVaultReader("demo-kv", settings, SecretScope())
    try:
        with pytest.raises(SecretReferenceError, match="challenge resource") as refused:
            await reader.get("databricks-token", None, what="secret reference vault://demo-kv/x")
    finally:
        await reader.aclose()
    assert "dapi-first" not in refused.value.message
