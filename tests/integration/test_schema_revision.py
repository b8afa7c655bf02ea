"""Migrations run only when the schema is behind (issue 10: a command's start-up stays fast):
the head revision is read from the migration files without Alembic, checked against Alembic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from polysync.store import migrate, open_store
from polysync.store.database import create_engine


def test_the_head_read_from_the_files_is_alembics() -> None:
    assert migrate.known_head() == migrate.head_revision()
    assert migrate.known_head() is not None


async def test_alembic_runs_only_when_the_revision_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'polysync.db'}"
    calls: list[str] = []
    upgrade_sync = migrate._upgrade_sync

    def recorded(connection: Connection) -> Any:
        calls.append("called")
        return upgrade_sync(connection)

    monkeypatch.setattr(migrate, "_upgrade_sync", recorded)
    store = await open_store(url)  # a new database: migrated
    await store.aclose()
    assert calls == ["called"]
    store = await open_store(url)  # at the head: one SELECT, no Alembic
    await store.aclose()
    assert calls == ["called"]

    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '0003'"))
        assert await migrate.current_revision(engine) == "0003"
        with pytest.raises(Exception):  # noqa: B017, PT011 - 0004 cannot be applied twice
            await migrate.upgrade_engine(engine)
        assert calls == ["called", "called"]  # behind the head: Alembic was asked
    finally:
        await engine.dispose()
