"""Reads `vault://VAULT/SECRET[/VERSION]` references through the registered Secret Vaults, with a
short per-vault cache on an injected clock (D15).

A value is kept in memory for the vault's `cache_ttl_s`, so a secret rotated in the vault is used
at the first read after that; `fresh=True` (a credential Databricks just rejected) skips the
cache. Values are never written anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from polysync.clock import Clock
from polysync.domain.records import SecretVault
from polysync.errors import NotFoundError, SecretReferenceError
from polysync.secrets import SecretReference, SecretScope
from polysync.vaults.keyvault import KeyVaultReader, SecretRead
from polysync.vaults.settings import KeyVaultSettings, settings_of

FindVault = Callable[[str], Awaitable[SecretVault]]
ReaderFactory = Callable[[str, KeyVaultSettings, SecretScope], KeyVaultReader]


@dataclass(slots=True)
class _Cached:
    value: str = field(repr=False)
    read_at_s: float
    ttl_s: float


class VaultSecrets:
    """The `VaultResolver` of a process: vault records from `find_vault` (the store), one Key
    Vault client per vault, values cached `cache_ttl_s` on `clock`. `scope` bounds the
    `env:`/`file:` references of the vaults' own client secrets."""

    def __init__(
        self,
        find_vault: FindVault,
        clock: Clock,
        scope: SecretScope,
        *,
        reader_factory: ReaderFactory = KeyVaultReader,
    ) -> None:
        self._find_vault = find_vault
        self._clock = clock
        self._scope = scope
        self._reader_factory = reader_factory
        self._readers: dict[str, tuple[object, KeyVaultReader]] = {}
        self._cache: dict[tuple[str, str, str | None], _Cached] = {}
        self._locks: dict[tuple[str, str, str | None], asyncio.Lock] = {}
        self.reads = 0  # Key Vault calls made (the cache's misses)

    async def resolve(self, reference: SecretReference, *, fresh: bool = False) -> str:
        """The value `reference` names (see module docstring); SecretReferenceError naming the
        reference when the vault is not registered, not usable, or refuses. Within the TTL the
        answer comes from memory, without a database or network call."""
        name, secret, version = reference.vault_parts
        key = (name, secret, version)
        if not fresh and (value := self._fresh(key)) is not None:
            return value
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one read per secret at a time: no stampede at expiry
            if not fresh and (value := self._fresh(key)) is not None:
                return value  # read by the caller that held the lock
            vault = await self._vault(name, reference)
            settings = self._settings(vault, reference)
            read = await self.read(vault, secret, version, what=f"secret reference {reference}")
            self._cache[key] = _Cached(read.value, self._clock.now(), settings.cache_ttl_s)
            return read.value

    def _fresh(self, key: tuple[str, str, str | None]) -> str | None:
        cached = self._cache.get(key)
        if cached is None or self._clock.now() - cached.read_at_s >= cached.ttl_s:
            return None
        return cached.value

    async def read(
        self, vault: SecretVault, secret: str, version: str | None, *, what: str
    ) -> SecretRead:
        """One uncached read of `secret` in `vault` (Test connectivity, cache misses)."""
        settings = self._settings(vault, None)
        reader = await self._reader(vault, settings)
        self.reads += 1
        return await reader.get(secret, version, what=what)

    def forget(self, vault_name: str | None = None) -> None:
        """Drop cached values (of one vault): after an edit or a removal."""
        for key in [k for k in self._cache if vault_name is None or k[0] == vault_name]:
            del self._cache[key]

    async def _vault(self, name: str, reference: SecretReference) -> SecretVault:
        try:
            return await self._find_vault(name)
        except NotFoundError:
            raise SecretReferenceError(
                f"secret reference {reference}: no Secret Vault named {name!r} is registered. "
                "Add it with `polysync vaults add` (or POST /api/v1/vaults), or correct the "
                "reference."
            ) from None

    def _settings(self, vault: SecretVault, reference: SecretReference | None) -> KeyVaultSettings:
        try:
            return settings_of(vault.vault_url, vault.auth, vault.options)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            named = f"secret reference {reference}: " if reference is not None else ""
            raise SecretReferenceError(
                f"{named}Secret Vault {vault.name!r} is not usable: {where}: {err['msg']}. "
                "Correct it with `polysync vaults add` after `polysync vaults remove`."
            ) from None

    async def _reader(self, vault: SecretVault, settings: KeyVaultSettings) -> KeyVaultReader:
        fingerprint = settings.model_dump(mode="json")
        held = self._readers.get(vault.name)
        if held is not None and held[0] == fingerprint:
            return held[1]
        if held is not None:
            await held[1].aclose()
        reader = self._reader_factory(vault.name, settings, self._scope)
        self._readers[vault.name] = (fingerprint, reader)
        return reader

    async def aclose(self) -> None:
        readers = [reader for _, reader in self._readers.values()]
        self._readers.clear()
        self._cache.clear()
        for reader in readers:
            await reader.aclose()
