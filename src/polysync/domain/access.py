"""Who may call Polysync: API key records and the roles they carry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    """What an API key may do; each role includes everything the roles below it may do."""

    VIEWER = "viewer"  # read platforms, jobs, runs and metrics
    OPERATOR = "operator"  # + Execute Now, cancel, Sync Parameters, edit jobs, test, Get Pipelines
    ADMIN = "admin"  # + create, edit and delete platforms, import jobs

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key: its name, role, public prefix and the sha256 of the whole key (never the
    key itself, which is shown once when it is created)."""

    id: int
    name: str
    role: Role
    prefix: str
    """The key's first characters (`psk_` + 8), stored in clear to identify it in listings."""
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for a change, as the audit trail records it (`str(actor)`).

    `kind`: "api" (an API key on the REST API), "web" (signed in to the web UI with an API key),
    "cli" (the operating-system user running the CLI) or "system". `name`: the key's name or the
    OS user. `key_prefix`: the key's public prefix, which tells two keys of one name apart.
    """

    kind: str
    name: str
    key_prefix: str | None = None

    @classmethod
    def of_key(cls, key: ApiKey, *, kind: str = "api") -> Actor:
        return cls(kind, key.name, key.prefix)

    def __str__(self) -> str:
        who = f"{self.kind}:{self.name}"
        return f"{who} ({self.key_prefix})" if self.key_prefix else who


SYSTEM = Actor("system", "polysync")
"""Changes no person asked for (the demo, tests, migrations)."""
