"""Secret Vaults end to end (D15): a platform whose token is `vault://demo-kv/databricks-token`,
read with azure-keyvault-secrets (aio) + azure-identity from the emulator's Key Vault over TLS,
while the Databricks API is the same emulator in-process. The token is rotated in the vault while
runs execute; no run fails, and the values are nowhere in the database file, logs or API answers.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from polysync.api import create_api_app, create_api_key
from polysync.api.deps import ApiSettings
from polysync.clock import ManualClock
from polysync.config import Settings
from polysync.domain.models import DataType, RunStatus
from polysync.domain.records import NewPlatform, NewSecretVault
from polysync.emulator.serving import run_in_thread
from polysync.emulator.spec import load_workspace
from polysync.emulator.tls import TlsFiles, make_self_signed_cert
from polysync.engine.engine import EngineSettings
from polysync.engine.polling import PollPolicy
from polysync.errors import PolysyncError, SecretReferenceError
from polysync.services import Services
from polysync.store import SqlStore
from tests.conftest import EmulatorHarness, make_harness
from tests.integration.conftest import SALES, drive
from tests.web.conftest import build_app
from tests.web.test_security import CSRF_INPUT

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SP_CLIENT = "5b2f1a1e-0c5d-4a4e-9c3a-7d1c1b2e3f40"
SP_VARIABLE = "POLYSYNC_TEST_KV_SP_SECRET"
OLD = "dapi-demo-token-0000000000000000"  # the demo vault's databricks-token
NEW = "dapi7c1e5a0b9d2f4e6a8c0b1d3f5e7a9c2b"
NEWER = "dapi00aa11bb22cc33dd44ee55ff66778899"
TTL_S = 30.0


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_self_signed_cert(tmp_path_factory.mktemp("vault-tls"))


@dataclass
class World:
    harness: EmulatorHarness
    services: Services
    vault_url: str
    vault_clock: ManualClock
    db: Path
    verify: ssl.SSLContext

    def control(self, path: str, body: object) -> None:
        answer = httpx.request(
            "PUT" if "vault" in path else "POST",
            f"{self.vault_url}/emulator/{path}",
            json=body,
            verify=self.verify,
        )
        assert answer.status_code == 200, answer.text
        assert NEW not in answer.text
        assert NEWER not in answer.text

    def rotate(self, value: str, *, revoke: str) -> None:
        """Rotation as an operator does it: new token accepted, stored in the vault, old revoked."""
        self.control("tokens", {"add": [value]})
        self.control("vault/secrets/databricks-token", {"value": value})
        self.control("tokens", {"revoke": [revoke]})


@pytest.fixture
def served(tls: TlsFiles) -> Iterator[tuple[EmulatorHarness, str]]:
    spec = load_workspace("demo")  # its vault demo-kv holds the demo token
    harness = make_harness(spec)
    url, stop = run_in_thread(harness.app, tls=tls)
    try:
        yield harness, url
    finally:
        stop()


@pytest.fixture
async def world(
    served: tuple[EmulatorHarness, str],
    tls: TlsFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[World]:
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv(SP_VARIABLE, "demo-entra-client-secret")
    harness, url = served
    db = tmp_path / "polysync.db"
    vault_clock = ManualClock()
    services = await Services.open(
        Settings(home=tmp_path, database_url=f"sqlite+aiosqlite:///{db}"),
        clock=harness.clock,
        api_clock=harness.real_clock,
        transport_factory=lambda _platform: harness.transport(),
        engine_settings=EngineSettings(policy=PollPolicy()),
        vault_clock=vault_clock,
    )
    try:
        await services.add_vault(
            NewSecretVault(
                name="demo-kv",
                vault_url=url,
                auth={
                    "method": "entra_service_principal",
                    "tenant_id": TENANT,
                    "client_id": SP_CLIENT,
                    "client_secret": f"env:{SP_VARIABLE}",
                    "authority_host": url,
                    "disable_instance_discovery": True,
                },
                options={"tls_ca_bundle": str(tls.ca_path), "cache_ttl_s": TTL_S},
            )
        )
        await services.add_platform(
            NewPlatform(
                name="demo",
                workspace_url=harness.base_url,
                auth={"method": "pat", "token": "vault://demo-kv/databricks-token"},
            )
        )
        _, results = await services.import_jobs("demo", [SALES])
        assert results[0].error is None
        verify = ssl.create_default_context(cafile=str(tls.ca_path))
        yield World(harness, services, url, vault_clock, db, verify)
    finally:
        await services.aclose()


async def test_rotation_while_runs_execute_fails_no_run_and_leaks_no_value(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    services, harness = world.services, world.harness
    job = await services.get_job(SALES, platform="demo")
    first = await services.execute(job, {"env": "dev"})
    await services.engine.step()  # run-now with the token read from the vault
    assert (await services.store.get_run(first.id)).run_id is not None
    reads_before = services.vaults.reads

    # Rotated while the first run is active: the cached token is refused at the next poll
    # (403), re-read past the cache once, and the poll goes on with the new one.
    world.rotate(NEW, revoke=OLD)
    second = await services.execute(job, {"env": "prod"})
    await drive(harness, services.engine, first.id)
    await drive(harness, services.engine, second.id)
    for run_id in (first.id, second.id):
        run = await services.store.get_run(run_id)
        assert run.status is RunStatus.SUCCESS, run.message
    assert services.vaults.reads == reads_before + 1  # one re-read, not one per call
    client = services.connections.client(await services.get_platform("demo"))
    rejections = client.metrics.token_rejections
    assert rejections >= 1

    # Rotated again, the old token still accepted for a while: within the TTL the cached value
    # is used; after it, the next call reads the new one, with no refusal needed.
    world.control("tokens", {"add": [NEWER]})
    world.control("vault/secrets/databricks-token", {"value": NEWER})
    third = await services.execute(job, {})
    await services.engine.step()
    assert services.vaults.reads == reads_before + 1  # still the cached NEW
    world.vault_clock.advance(TTL_S + 1)
    world.control("tokens", {"revoke": [NEW]})
    await drive(harness, services.engine, third.id)
    assert (await services.store.get_run(third.id)).status is RunStatus.SUCCESS
    assert services.vaults.reads == reads_before + 2
    assert client.metrics.token_rejections == rejections  # the TTL, not a refusal, picked it up

    # Nowhere: the database file (and its WAL), the log, the API's answers.
    assert isinstance(services.store, SqlStore)
    _, key = await create_api_key(services.store, "admin key", "admin")
    app = create_api_app(services, settings=ApiSettings(live_poll_s=1.0, max_wait_s=60.0))
    answers = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://polysync.test"
    ) as api:
        headers = {"Authorization": f"Bearer {key}"}
        for path in (
            "/api/v1/platforms",
            "/api/v1/vaults",
            "/api/v1/vaults/demo-kv",
            f"/api/v1/runs/{first.id}",
            "/api/v1/runs",
            f"/api/v1/jobs/{job.id}",
            "/api/v1/audit-events",
        ):
            answer = await api.get(path, headers=headers)
            assert answer.status_code == 200, (path, answer.text)
            answers.append(answer.text)
        tested = await api.post(
            "/api/v1/vaults/demo-kv/test?secret=databricks-token", headers=headers
        )
        assert tested.status_code == 200, tested.text
        assert tested.json()["ok"] is True
        answers.append(tested.text)
    answers.extend(await web_pages(services, first.id))
    assert "vault://demo-kv/databricks-token" in answers[0]  # the reference is shown
    stored = b"".join(
        path.read_bytes()
        for path in world.db.parent.iterdir()
        if path.name.startswith("polysync.db")
    )
    for value in (OLD, NEW, NEWER, "demo-entra-client-secret"):
        assert value.encode() not in stored
        assert value not in caplog.text
        assert all(value not in answer for answer in answers)


async def web_pages(services: Services, run_id: int) -> list[str]:
    """The web UI's pages an admin sees (platform, runs, vaults and a vault test), as HTML."""
    _, key = await create_api_key(services.store, "web admin", "admin")  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://ui.test") as web:
        sign_in = await web.get("/sign-in")
        csrf = CSRF_INPUT.search(sign_in.text)
        assert csrf is not None
        signed = await web.post("/sign-in", data={"api_key": key, "csrf_token": csrf.group(1)})
        assert signed.status_code == 303
        platform = await services.get_platform("demo")
        pages = [
            (await web.get(path)).text
            for path in ("/platforms", f"/platforms/{platform.id}", "/runs", f"/runs/{run_id}")
        ]
        vaults = await web.get("/vaults")
        pages.append(vaults.text)
        token = CSRF_INPUT.search(vaults.text)
        assert token is not None
        vault = await services.get_vault("demo-kv")
        tested = await web.post(
            f"/vaults/{vault.id}/test",
            data={"csrf_token": token.group(1), "secret": "databricks-token"},
        )
        assert "Signed in and read secret &#39;databricks-token&#39;" in tested.text
        pages.append(tested.text)
    assert "vault://demo-kv/databricks-token" in pages[1]
    return pages


async def test_a_failed_read_fails_the_run_naming_the_reference(world: World) -> None:
    services = world.services
    job = await services.get_job(SALES, platform="demo")
    run = await services.execute(job, {})  # the token was read: the run is recorded
    # The vault now holds something that is no token (a value with a space): after the cache's
    # TTL the dispatch reads it, and the run fails naming the reference, never the value.
    world.control("vault/secrets/databricks-token", {"value": "not a token"})
    world.vault_clock.advance(TTL_S + 1)
    await services.engine.step()
    failed = await services.store.get_run(run.id)
    assert failed.status is RunStatus.FAILED
    assert "vault://demo-kv/databricks-token" in failed.message
    assert "not a token" not in failed.message


async def test_unknown_vault_and_hostile_settings_are_refused(world: World) -> None:
    services = world.services
    with pytest.raises(SecretReferenceError, match="no Secret Vault named 'nope'"):
        await services.add_platform(
            NewPlatform(
                name="other",
                workspace_url=world.harness.base_url,
                auth={"method": "pat", "token": "vault://nope/databricks-token"},
            )
        )
    report = await services.test_vault("demo-kv")
    assert report.ok, report.message
    missing = await services.test_vault("demo-kv", "no-such-secret")
    assert not missing.ok
    assert "SecretNotFound" in missing.message


async def test_a_secret_parameter_from_the_vault_is_sent_and_never_stored(world: World) -> None:
    services, harness = world.services, world.harness
    job = await services.get_job(SALES, platform="demo")
    job = await services.set_parameter(
        job, "env", data_type=DataType.SECRET, stored_value="vault://demo-kv/sp-client-secret"
    )
    with pytest.raises(SecretReferenceError, match="no Secret Vault named 'other'"):
        await services.execute(job, {"env": "vault://other/sp-client-secret"})
    run = await services.execute(job, {})
    await services.engine.step()
    started = await services.store.get_run(run.id)
    assert started.run_id is not None
    sent = {p["name"]: p["value"] for p in harness.state.runs[int(started.run_id)].job_parameters}
    assert sent["env"] == "demo-entra-client-secret"  # what Databricks received
    assert dict(started.parameters_sent)["env"] == "vault://demo-kv/sp-client-secret"
    await drive(harness, services.engine, run.id)
    stored = b"".join(
        path.read_bytes()
        for path in world.db.parent.iterdir()
        if path.name.startswith("polysync.db")
    )
    assert b"demo-entra-client-secret" not in stored


async def test_a_service_principal_client_secret_from_the_vault(
    world: World, tls: TlsFiles
) -> None:
    services = world.services
    await services.add_platform(
        NewPlatform(
            name="sp",
            workspace_url=world.harness.base_url,
            auth={
                "method": "entra_service_principal",
                "tenant_id": TENANT,
                "client_id": SP_CLIENT,
                "client_secret": "vault://demo-kv/sp-client-secret",
                "authority_host": world.vault_url,
                "disable_instance_discovery": True,
            },
            options={"tls_ca_bundle": str(tls.ca_path)},
        )
    )
    report = await services.test_platform("sp")
    assert report.jobs_visible
    # A wrong secret in the vault: the sign-in fails naming the principal, not the secret.
    world.control("vault/secrets/sp-client-secret", {"value": "not-the-secret"})
    world.vault_clock.advance(TTL_S + 1)
    world.harness.app.emulator.issuer.expire_all()  # the next call renews its Entra token
    with pytest.raises(PolysyncError) as refused:
        await services.test_platform("sp")
    assert SP_CLIENT in refused.value.message
    assert "not-the-secret" not in refused.value.message
