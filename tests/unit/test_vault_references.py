"""`vault://VAULT/SECRET[/VERSION]` references (D15): parsing (hypothesis) and the resolver's
cache on an injected clock, with a reader that counts reads (no network)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polysync.clock import ManualClock
from polysync.domain.parameters import is_secret_reference
from polysync.domain.records import SecretVault
from polysync.errors import NotFoundError, SecretReferenceError
from polysync.secrets import SecretReference, SecretScope
from polysync.vaults.keyvault import KeyVaultReader, SecretRead
from polysync.vaults.resolver import VaultSecrets
from polysync.vaults.settings import KeyVaultSettings

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("vault://demo-kv/databricks-token", ("demo-kv", "databricks-token", None)),
        (
            " vault://kv/x/0123456789abcdef0123456789abcdef ",
            ("kv", "x", "0123456789abcdef0123456789abcdef"),
        ),
    ],
)
def test_well_formed_references(text: str, parts: tuple[str, str, str | None]) -> None:
    reference = SecretReference.parse(text)
    assert reference.vault_parts == parts
    assert str(reference) == text.strip()
    assert is_secret_reference(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("vault:demo-kv/x", "is not `vault://VAULT/SECRET`"),
        ("vault://demo-kv", "1 part"),
        ("vault://demo-kv/a/b/c", "4 part"),
        ("vault://-kv/x", "vault name"),
        ("vault://kv/sec_ret", "secret name"),
        ("vault://kv/x/not-hex!", "version"),
        ("vault://kv/dapi0123456789abcdef0123", "shaped like a token"),
    ],
)
def test_malformed_references_are_refused_without_echo(text: str, why: str) -> None:
    with pytest.raises(SecretReferenceError, match=why) as refused:
        SecretReference.parse(text)
    assert "dapi0123456789abcdef0123" not in str(refused.value)


@given(st.text(max_size=300))
def test_any_text_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        reference = SecretReference.parse("vault://" + text)
    except SecretReferenceError as exc:
        refused: str | None = exc.message
    else:
        refused = None
        assert SecretReference.parse(str(reference)) == reference
        assert is_secret_reference(str(reference))
    assert refused is None or "\n" not in refused


def a_vault(ttl_s: float = 30.0, url: str = "https://kv.vault.azure.net") -> SecretVault:
    return SecretVault(
        1,
        "kv",
        "azure-key-vault",
        url,
        {"method": "managed_identity"},
        "",
        {"cache_ttl_s": ttl_s},
        NOW,
        NOW,
    )


class CountingReader(KeyVaultReader):
    """A reader whose vault is a dict: the resolver's own logic, no network."""

    values: dict[str, str] = {}
    reads: list[tuple[str, str | None]] = []

    async def get(self, secret: str, version: str | None, *, what: str) -> SecretRead:
        self.reads.append((secret, version))
        if secret not in self.values:
            raise SecretReferenceError(f"{what}: Key Vault has no such secret (404 SecretNotFound)")
        return SecretRead(self.values[secret], "v1", True)


@pytest.fixture
def reader() -> type[CountingReader]:
    CountingReader.values = {"token": "dapi-first"}
    CountingReader.reads = []
    return CountingReader


async def test_the_cache_holds_for_its_ttl_then_reads_the_rotation(
    reader: type[CountingReader],
) -> None:
    clock = ManualClock()
    vault = a_vault(ttl_s=30)

    async def find(name: str) -> SecretVault:
        if name != "kv":
            raise NotFoundError(f"No Secret Vault named {name!r}.")
        return vault

    secrets = VaultSecrets(find, clock, SecretScope(), reader_factory=reader)
    scope = SecretScope(vaults=secrets)
    reference = SecretReference.parse("vault://kv/token", scope)
    assert (await reference.resolve_async()).get_secret_value() == "dapi-first"
    reader.values["token"] = "dapi-second"  # rotated in the vault
    clock.advance(29.9)
    assert (await reference.resolve_async()).get_secret_value() == "dapi-first"
    assert len(reader.reads) == 1
    clock.advance(0.2)
    assert (await reference.resolve_async()).get_secret_value() == "dapi-second"
    reader.values["token"] = "dapi-third"
    # A credential Databricks refused: past the cache at once.
    assert (await reference.resolve_async(fresh=True)).get_secret_value() == "dapi-third"
    assert len(reader.reads) == 3


async def test_failures_name_the_reference_never_a_value(reader: type[CountingReader]) -> None:
    clock = ManualClock()

    async def find(name: str) -> SecretVault:
        raise NotFoundError(f"No Secret Vault named {name!r}.")

    secrets = VaultSecrets(find, clock, SecretScope(), reader_factory=reader)
    with pytest.raises(SecretReferenceError, match="no Secret Vault named 'kv'"):
        await SecretReference.parse("vault://kv/token", SecretScope(vaults=secrets)).resolve_async()
    with pytest.raises(SecretReferenceError, match="cannot"):
        SecretReference.parse("vault://kv/token").resolve()  # the sync path cannot read vaults
    with pytest.raises(SecretReferenceError, match="no Secret Vaults"):
        await SecretReference.parse("vault://kv/token").resolve_async()


def test_challenge_verification_is_on_except_on_loopback() -> None:
    auth = {"method": "managed_identity"}
    real = KeyVaultSettings.model_validate({"url": "https://kv.vault.azure.net/", "auth": auth})
    assert real.verifies_challenge
    assert real.is_key_vault_host
    assert real.url == "https://kv.vault.azure.net"
    local = KeyVaultSettings.model_validate({"url": "https://127.0.0.1:8765", "auth": auth})
    assert not local.verifies_challenge
    forced = KeyVaultSettings.model_validate(
        {"url": "https://127.0.0.1:8765", "auth": auth, "verify_challenge_resource": True}
    )
    assert forced.verifies_challenge


@given(st.text(max_size=300))
def test_any_vault_url_is_a_clean_https_origin_or_a_validation_error(text: str) -> None:
    from pydantic import ValidationError

    try:
        settings = KeyVaultSettings.model_validate(
            {"url": text, "auth": {"method": "managed_identity"}}
        )
    except ValidationError as exc:
        errors: list[str] = [str(e["msg"]) for e in exc.errors()]
    else:
        errors = []
        assert settings.url.startswith("https://")
        assert settings.url.count("/") == 2  # no path, query or fragment
        assert "@" not in settings.url
    assert all("\n" not in message for message in errors)
