"""The store's retry of transient failures has an overall deadline, and a full disk or a
read-only database is named as such (M4)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import OperationalError

from polysync.errors import StoreUnavailableError
from polysync.store import database
from polysync.store.database import (
    DISK_FULL_MESSAGE,
    READ_ONLY_MESSAGE,
    TRANSIENT_DEADLINE_S,
    store_call,
    translated,
)


def locked() -> OperationalError:
    return OperationalError("UPDATE runs ...", {}, sqlite3.OperationalError("database is locked"))


async def test_transient_retries_stop_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(database, "_monotonic", lambda: now[0])
    calls: list[float] = []

    @store_call
    async def busy() -> None:
        calls.append(now[0])
        now[0] += TRANSIENT_DEADLINE_S * 0.6  # each attempt waited out the busy timeout
        raise locked()

    with pytest.raises(StoreUnavailableError, match="database is locked"):
        await busy()
    assert calls == [0.0, TRANSIENT_DEADLINE_S * 0.6]  # 2 attempts, not TRANSIENT_ATTEMPTS


async def test_quick_transient_failures_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[int] = []

    @store_call
    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise locked()
        return "done"

    assert await flaky() == "done"
    assert len(attempts) == 3


class PgError(Exception):
    def __init__(self, text: str, sqlstate: str) -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "orig",
    [
        sqlite3.OperationalError("database or disk is full"),
        PgError('could not extend file "base/1/2": No space left on device', "53100"),
    ],
)
def test_a_full_disk_is_named_as_such(orig: Exception) -> None:
    error = translated(OperationalError("INSERT ...", {}, orig))
    assert isinstance(error, StoreUnavailableError)
    assert error.message == DISK_FULL_MESSAGE


def test_a_read_only_database_is_named_as_such() -> None:
    orig = sqlite3.OperationalError("attempt to write a readonly database")
    error = translated(OperationalError("INSERT ...", {}, orig))
    assert isinstance(error, StoreUnavailableError)
    assert error.message == READ_ONLY_MESSAGE
