"""API keys: created once in clear, stored as sha256, checked in constant time; roles per key.

A key is `psk_` + 43 random URL-safe characters (256 bits). Its first 12 characters (the
prefix) are stored in clear so a listing can name it and a request can find its row; the whole
key is stored only as its sha256, which is enough for a key of that entropy (no slow hash needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from polysync.api.ports import ApiKeyStore
from polysync.domain.access import ApiKey, Role
from polysync.domain.limits import check_name
from polysync.errors import UsageError

KEY_PREFIX = "psk_"
PREFIX_CHARS = len(KEY_PREFIX) + 8
_RANDOM_BYTES = 32
_ATTEMPTS = 5


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def parse_role(value: str | Role) -> Role:
    try:
        return Role(str(value).strip().lower())
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise UsageError(f"Unknown role {value!r}: choose one of {choices}.") from None


async def create_api_key(
    store: ApiKeyStore, name: str, role: str | Role, *, now: datetime | None = None
) -> tuple[ApiKey, str]:
    """A new key: its record, and the key itself, which is shown this once and never again."""
    # The name is what logs and the audit trail show for this key: one line, capped.
    name = check_name(name.strip(), field="An API key's name")
    checked_role = parse_role(role)
    for attempt in range(_ATTEMPTS):
        plaintext = KEY_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)
        try:
            record = await store.add_api_key(
                name,
                checked_role,
                plaintext[:PREFIX_CHARS],
                hash_key(plaintext),
                now or datetime.now(UTC),
            )
        except UsageError:  # a prefix drawn twice: draw again
            if attempt == _ATTEMPTS - 1:
                raise
            continue
        return record, plaintext
    raise AssertionError("unreachable")


async def list_api_keys(store: ApiKeyStore) -> Sequence[ApiKey]:
    return await store.list_api_keys()


async def revoke_api_key(
    store: ApiKeyStore, ref: int | str, *, now: datetime | None = None
) -> ApiKey:
    """Revoke by id or by prefix (`psk_abcd1234`); the key stops working at once."""
    if isinstance(ref, str) and ref.strip().isdigit():
        ref = int(ref.strip())
    elif isinstance(ref, str):
        ref = ref.strip()[:PREFIX_CHARS]
    return await store.revoke_api_key(ref, now or datetime.now(UTC))


def key_hint(sent: str) -> str:
    """How a log names a key that was sent: its public prefix when it looks like one of ours,
    else nothing of it (it may be another system's secret pasted by mistake)."""
    sent = sent.strip()
    if sent.startswith(KEY_PREFIX) and len(sent) > PREFIX_CHARS:
        return f"{sent[:PREFIX_CHARS]}..."
    return "(not a Polysync key)"


async def verify_api_key(store: ApiKeyStore, plaintext: str) -> ApiKey | None:
    """The active key `plaintext` is, or None. The hash comparison is constant-time."""
    plaintext = plaintext.strip()
    if not plaintext.startswith(KEY_PREFIX) or len(plaintext) <= PREFIX_CHARS:
        return None
    record = await store.find_api_key(plaintext[:PREFIX_CHARS])
    if record is None or not record.active:
        return None
    if not hmac.compare_digest(record.secret_hash, hash_key(plaintext)):
        return None
    return record


class Authenticator:
    """`await authenticator(key)` -> the key's record or None: the web UI's sign-in check."""

    def __init__(self, store: ApiKeyStore) -> None:
        self._store = store

    async def __call__(self, api_key: str) -> ApiKey | None:
        return await verify_api_key(self._store, api_key)
