"""What the Secret Vault use cases need of the store (polysync.store.SqlStore implements it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from polysync.domain.records import NewSecretVault, SecretVault


class VaultStore(Protocol):
    async def add_vault(
        self, new: NewSecretVault, now: datetime, *, actor: str | None = None
    ) -> SecretVault:
        """ConflictError when the name is taken; an audit entry in the same transaction."""
        ...

    async def get_vault(self, ref: int | str) -> SecretVault:
        """By id or exact name; NotFoundError otherwise."""
        ...

    async def list_vaults(self) -> Sequence[SecretVault]: ...

    async def remove_vault(
        self, vault_id: int, *, actor: str | None = None, now: datetime | None = None
    ) -> None:
        """ConflictError while a platform's credentials name the vault."""
        ...
