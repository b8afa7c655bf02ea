"""Alembic run from code: the schema reaches the latest revision on open and by `upgrade(url)`."""

from __future__ import annotations

import asyncio
import functools
import re
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from polysync.store.database import WRITE_OPTION, create_engine

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = "polysync.store:migrations"
VERSIONS_DIR = Path(__file__).with_name("migrations") / "versions"
_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)

# Any constant works; it only has to be the same for every Polysync process on the server.
_PG_MIGRATION_LOCK = 0x706F6C7973796E63  # "polysync"


def alembic_config() -> Config:
    """Alembic's configuration built in code: no alembic.ini is needed at run time.

    A new revision (developers): set `config.attributes["url"]` to a database at the current
    head, call `alembic.command.revision(config, message=..., autogenerate=True)`, then review
    the file it writes to migrations/versions/ and copy the column types into it (frozen).
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def head_revision() -> str | None:
    """The latest revision, as Alembic finds it (imports Alembic: slow; see `known_head`)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@functools.cache
def known_head() -> str | None:
    """The latest revision, read from the `revision =` / `down_revision =` lines of the
    migration files without importing Alembic (a command's start-up must stay fast): the one
    revision no other revises. None when that is not exactly one (Alembic then decides)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in VERSIONS_DIR.glob("*.py"):
        fields = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if "revision" not in fields:
            continue
        revisions.add(fields["revision"].strip("\"'"))
        revised.update(re.findall(r"[\"']([^\"']+)[\"']", fields.get("down_revision", "")))
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


async def upgrade(url: str) -> str | None:
    """Apply every pending migration to the database at `url`; returns its revision afterwards."""
    engine = create_engine(url)
    try:
        return await upgrade_engine(engine)
    finally:
        await engine.dispose()


async def upgrade_engine(engine: AsyncEngine) -> str | None:
    """Apply pending migrations in one transaction; concurrent callers wait for each other.
    A database already at the head revision is only read (one SELECT, no Alembic)."""
    head = known_head()
    if head is not None and await current_revision(engine) == head:
        return head
    # Alembic keeps the running migration in module state (`alembic.context`), so two upgrades
    # interleaved on one event loop would run in each other's context: one at a time per loop.
    # (Other processes wait on the database's own lock: BEGIN IMMEDIATE, or PostgreSQL's advisory
    # lock in `_upgrade_sync`.)
    writer = engine.execution_options(**{WRITE_OPTION: True})
    async with _migration_lock(), writer.begin() as connection:
        return await connection.run_sync(_upgrade_sync)


_MIGRATION_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _migration_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _MIGRATION_LOCKS.get(loop)
    if lock is None:
        lock = _MIGRATION_LOCKS[loop] = asyncio.Lock()
    return lock


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision in the database's alembic_version table; None when there is none (a new
    database) or it cannot be read as one row."""
    async with engine.connect() as connection:  # cannot connect: raised, as by the upgrade
        try:
            result = await connection.execute(text("SELECT version_num FROM alembic_version"))
            rows = result.all()
        except SQLAlchemyError:
            return None  # no such table yet: the upgrade creates it
    return str(rows[0][0]) if len(rows) == 1 else None


def _upgrade_sync(connection: Connection) -> str | None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    if connection.dialect.name == "postgresql":
        # Two processes opening a fresh database would both try to create the tables; the second
        # waits here and then finds the schema at head. (SQLite's BEGIN IMMEDIATE does the same.)
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return MigrationContext.configure(connection).get_current_revision()
