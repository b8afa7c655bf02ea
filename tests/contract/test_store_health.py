"""The store tells /health when the database can be read but not written (M4)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from polysync.store import SqlStore
from polysync.store.database import READ_ONLY_MESSAGE, is_sqlite


async def test_a_writable_database_has_no_write_problem(store: SqlStore) -> None:
    assert await store.write_problem() is None


async def test_a_read_only_postgresql_session_is_reported(store: SqlStore) -> None:
    if is_sqlite(store.engine.url):
        pytest.skip("SQLite: file permissions and free space (tests/api/test_hardening.py)")
    async with store.engine.begin() as conn:
        database = await conn.scalar(text("SELECT current_database()"))
        await conn.execute(
            text(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        )
    await store.engine.dispose()  # new sessions take the setting
    try:
        assert await store.write_problem() == READ_ONLY_MESSAGE
    finally:
        async with store.engine.begin() as conn:
            await conn.execute(text("SET TRANSACTION READ WRITE"))
            await conn.execute(
                text(f'ALTER DATABASE "{database}" SET default_transaction_read_only = off')
            )
