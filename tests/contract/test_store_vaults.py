"""Store contract (SQLite and PostgreSQL): Secret Vaults (D15, migration 0006)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from polysync.domain.records import KEY_VAULT_PROVIDER, NewPlatform, NewSecretVault
from polysync.errors import ConflictError, NotFoundError, UsageError
from polysync.store import SqlStore

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
SP_AUTH = {
    "method": "entra_service_principal",
    "tenant_id": "t",
    "client_id": "c",
    "client_secret": "env:KV_SECRET",
}


def new_vault(name: str = "prod-kv", **auth: object) -> NewSecretVault:
    return NewSecretVault(
        name=name,
        vault_url=f"https://{name}.vault.azure.net",
        auth={**SP_AUTH, **auth},
        description="<b>team</b> vault",
        options={"cache_ttl_s": 30},
    )


async def test_add_get_list_remove(store: SqlStore) -> None:
    added = await store.add_vault(new_vault(), NOW, actor="cli:alice")
    assert added.provider == KEY_VAULT_PROVIDER
    assert added.auth["client_secret"] == "env:KV_SECRET"
    assert (await store.get_vault("prod-kv")) == added
    assert (await store.get_vault(added.id)) == added
    other = await store.add_vault(new_vault("a-kv"), NOW)
    assert [v.name for v in await store.list_vaults()] == ["a-kv", "prod-kv"]
    await store.remove_vault(other.id, actor="cli:alice", now=NOW)
    with pytest.raises(NotFoundError, match="No Secret Vault named 'a-kv'"):
        await store.get_vault("a-kv")
    actions = [e.action for e in await store.list_audit_events(subject_type="vault")]
    assert actions == ["vault.delete", "vault.create", "vault.create"]


async def test_a_name_is_taken_once(store: SqlStore) -> None:
    await store.add_vault(new_vault(), NOW)
    with pytest.raises(ConflictError, match="already exists"):
        await store.add_vault(new_vault(), NOW)
    assert len(await store.list_vaults()) == 1


async def test_a_secret_value_never_reaches_the_table(store: SqlStore) -> None:
    with pytest.raises(UsageError, match="client_secret") as refused:
        await store.add_vault(new_vault(client_secret="s3cr3t-value"), NOW)
    assert "s3cr3t-value" not in str(refused.value)
    assert await store.list_vaults() == []


async def test_a_vault_a_platform_names_cannot_be_removed(store: SqlStore) -> None:
    vault = await store.add_vault(new_vault(), NOW)
    await store.add_platform(
        NewPlatform(
            name="prod",
            workspace_url="https://adb-1.2.azuredatabricks.net",
            auth={"method": "pat", "token": "vault://prod-kv/databricks-token"},
        ),
        NOW,
    )
    with pytest.raises(ConflictError, match="used by platform\\(s\\) 'prod'"):
        await store.remove_vault(vault.id, now=NOW)
    assert await store.get_vault(vault.id) == vault
