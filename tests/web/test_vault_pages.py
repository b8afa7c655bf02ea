"""The Secret Vaults page (D15): admin only, the one validation path, nothing secret echoed
(httpx, no browser)."""

from __future__ import annotations

from tests.web.test_security import App, app  # noqa: F401 - `app` is the fixture


async def test_admin_adds_lists_and_removes_a_vault(app: App) -> None:  # noqa: F811
    csrf = await app.sign_in("admin")
    page = await app.client.get("/vaults")
    assert page.status_code == 200
    assert "No Secret Vault yet" in page.text
    added = await app.client.post(
        "/vaults",
        data={
            "csrf_token": csrf,
            "name": "prod-kv",
            "vault_url": "https://prod-kv.vault.azure.net",
            "auth_method": "managed_identity",
            "cache_ttl_s": "30",
        },
    )
    assert added.status_code == 200, added.text
    assert "Secret Vault prod-kv added." in added.text
    assert "vault://prod-kv/SECRET" in added.text
    vault = (await app.services.list_vaults())[0]
    assert dict(vault.options) == {"cache_ttl_s": 30.0}
    removed = await app.client.post(f"/vaults/{vault.id}/delete", data={"csrf_token": csrf})
    assert "Secret Vault prod-kv removed." in removed.text
    assert await app.services.list_vaults() == []


async def test_hostile_input_is_refused_escaped_and_never_echoes_a_secret(app: App) -> None:  # noqa: F811
    csrf = await app.sign_in("admin")
    answer = await app.client.post(
        "/vaults",
        data={
            "csrf_token": csrf,
            "name": "<img src=x onerror=alert(1)>",
            "vault_url": "https://prod-kv.vault.azure.net",
            "auth_method": "managed_identity",
        },
    )
    assert answer.status_code == 422
    assert "<img src=x" not in answer.text
    assert "&lt;img src=x" in answer.text
    pasted = await app.client.post(
        "/vaults",
        data={
            "csrf_token": csrf,
            "name": "prod-kv",
            "vault_url": "https://prod-kv.vault.azure.net",
            "auth_method": "entra_service_principal",
            "tenant_id": "t",
            "client_id": "c",
            "client_secret": "dapi0123456789abcdef0123",
        },
    )
    assert pasted.status_code == 422
    assert "dapi0123456789abcdef0123" not in pasted.text
    assert await app.services.list_vaults() == []


async def test_below_admin_the_page_and_its_forms_are_refused(app: App) -> None:  # noqa: F811
    csrf = await app.sign_in("operator")
    assert (await app.client.get("/vaults")).status_code == 403
    assert 'href="/vaults"' not in (await app.client.get("/runs")).text
    posted = await app.client.post(
        "/vaults",
        data={"csrf_token": csrf, "name": "kv", "vault_url": "https://kv.vault.azure.net"},
    )
    assert posted.status_code == 403
    assert await app.services.list_vaults() == []
