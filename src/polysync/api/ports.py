"""What the API needs from the store beyond the engine's `Store`: API keys, health, metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from polysync.domain.access import ApiKey, Role
from polysync.domain.models import RunStatus
from polysync.domain.records import AuditEvent

if TYPE_CHECKING:
    from polysync.store import SqlStore


@runtime_checkable
class ApiKeyStore(Protocol):
    """API key records; the key itself is never stored, only its sha256."""

    async def add_api_key(
        self, name: str, role: Role, prefix: str, secret_hash: str, now: datetime
    ) -> ApiKey:
        """UsageError if the prefix is taken."""
        ...

    async def find_api_key(self, prefix: str) -> ApiKey | None: ...

    async def list_api_keys(self) -> Sequence[ApiKey]: ...

    async def revoke_api_key(self, ref: int | str, now: datetime) -> ApiKey:
        """By id or prefix; NotFoundError if absent."""
        ...


@runtime_checkable
class MonitoredStore(Protocol):
    """Health and metrics figures."""

    async def ping(self) -> None: ...

    async def write_problem(self) -> str | None:
        """Why the database cannot be written (read-only, disk full), or None."""
        ...

    async def count_runs_by_status(self) -> Mapping[RunStatus, int]: ...

    async def poll_lags_s(self, now: datetime) -> Sequence[float]: ...


@runtime_checkable
class AuditStore(Protocol):
    """The audit trail of platform and job changes (written by the store's change methods)."""

    async def list_audit_events(
        self,
        *,
        subject_type: str | None = None,
        subject_id: int | None = None,
        limit: int = 100,
    ) -> Sequence[AuditEvent]: ...


@runtime_checkable
class ApiStore(ApiKeyStore, MonitoredStore, AuditStore, Protocol):
    """Everything the API adds to the engine's store."""


if TYPE_CHECKING:
    # mypy proves here that SqlStore implements the API's store protocol.
    _conforms: type[ApiStore] = SqlStore
