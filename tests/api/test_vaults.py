"""/api/v1/vaults (D15): admin only, one validation path with the CLI, no secret in or out."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

VAULT = {
    "name": "prod-kv",
    "vault_url": "https://prod-kv.vault.azure.net/",
    "auth": {
        "method": "entra_service_principal",
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "client_id": "5b2f1a1e-0c5d-4a4e-9c3a-7d1c1b2e3f40",
        "client_secret": "env:KV_SP_SECRET",
    },
    "options": {"cache_ttl_s": 30},
}


async def test_admin_registers_lists_shows_and_removes(api: Api) -> None:
    created = await api.client.post("/api/v1/vaults", json=VAULT, headers=api.auth("admin"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["vault_url"] == "https://prod-kv.vault.azure.net"
    assert body["reference"] == "vault://prod-kv/SECRET"
    assert body["auth"]["client_secret"] == "env:KV_SP_SECRET"
    listed = await api.client.get("/api/v1/vaults", headers=api.auth("admin"))
    assert [v["name"] for v in listed.json()] == ["prod-kv"]
    by_id = await api.client.get(f"/api/v1/vaults/{body['id']}", headers=api.auth("admin"))
    assert by_id.json()["name"] == "prod-kv"
    again = await api.client.post("/api/v1/vaults", json=VAULT, headers=api.auth("admin"))
    assert again.status_code == 409
    # A platform that names it keeps it...
    platform = await api.client.patch(
        f"/api/v1/platforms/{api.platform_id}",
        json={"auth": {"method": "pat", "token": "vault://prod-kv/databricks-token"}},
        headers=api.auth("admin"),
    )
    assert platform.status_code == 200, platform.text
    refused = await api.client.delete("/api/v1/vaults/prod-kv", headers=api.auth("admin"))
    assert refused.status_code == 409
    assert "used by platform(s) 'demo'" in refused.json()["detail"]
    # ...until it names another secret.
    await api.client.patch(
        f"/api/v1/platforms/{api.platform_id}",
        json={"auth": {"method": "pat", "token": "env:POLYSYNC_TEST_DATABRICKS_TOKEN"}},
        headers=api.auth("admin"),
    )
    gone = await api.client.delete("/api/v1/vaults/prod-kv", headers=api.auth("admin"))
    assert gone.status_code == 204
    missing = await api.client.get("/api/v1/vaults/prod-kv", headers=api.auth("admin"))
    assert missing.status_code == 404


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_below_admin_is_403(api: Api, role: str) -> None:
    assert (await api.client.get("/api/v1/vaults", headers=api.auth(role))).status_code == 403
    posted = await api.client.post("/api/v1/vaults", json=VAULT, headers=api.auth(role))
    assert posted.status_code == 403


@pytest.mark.parametrize(
    ("change", "status", "said"),
    [
        ({"name": "<script>alert(1)</script>"}, 400, "vault://NAME/SECRET"),
        ({"name": "x" * 300}, 422, None),
        ({"vault_url": "http://prod-kv.vault.azure.net"}, 400, "https"),
        ({"vault_url": "https://evil.example.com"}, 400, "not an Azure Key Vault host"),
        ({"vault_url": "https://u:p@prod-kv.vault.azure.net"}, 400, "no user"),
        ({"vault_url": "https://prod-kv.vault.azure.net/\x00"}, 422, None),
        ({"auth": {**VAULT["auth"], "client_secret": "dapi0123456789abcdef0123"}}, 400, None),  # type: ignore[dict-item]
        ({"auth": {**VAULT["auth"], "client_secret": "vault://other/x"}}, 400, "cannot be read"),  # type: ignore[dict-item]
        ({"options": {"cache_ttl_s": 10**9}}, 400, "cache_ttl_s"),
        ({"options": {"surprise": 1}}, 400, "surprise"),
    ],
)
async def test_hostile_input_is_refused_and_nothing_is_stored(
    api: Api, change: dict[str, object], status: int, said: str | None
) -> None:
    answer = await api.client.post(
        "/api/v1/vaults", json={**VAULT, **change}, headers=api.auth("admin")
    )
    assert answer.status_code == status, answer.text
    if said is not None:
        assert said in answer.text
    assert "dapi0123456789abcdef0123" not in answer.text
    listed = await api.client.get("/api/v1/vaults", headers=api.auth("admin"))
    assert listed.json() == []


async def test_a_reference_to_an_unknown_vault_is_refused(api: Api) -> None:
    answer = await api.client.patch(
        f"/api/v1/platforms/{api.platform_id}",
        json={"auth": {"method": "pat", "token": "vault://nope/databricks-token"}},
        headers=api.auth("admin"),
    )
    assert answer.status_code == 400
    assert "no Secret Vault named 'nope'" in answer.json()["detail"]
