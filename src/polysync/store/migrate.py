"""Alembic run from code: the schema reaches the latest revision on open and by `upgrade(url)`."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from polysync.store.database import WRITE_OPTION, create_engine

SCRIPT_LOCATION = "polysync.store:migrations"

# Any constant works; it only has to be the same for every Polysync process on the server.
_PG_MIGRATION_LOCK = 0x706F6C7973796E63  # "polysync"


def alembic_config() -> Config:
    """Alembic's configuration built in code: no alembic.ini is needed at run time.

    A new revision (developers): set `config.attributes["url"]` to a database at the current
    head, call `alembic.command.revision(config, message=..., autogenerate=True)`, then review
    the file it writes to migrations/versions/ and copy the column types into it (frozen).
    """
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(url: str) -> str | None:
    """Apply every pending migration to the database at `url`; returns its revision afterwards."""
    engine = create_engine(url)
    try:
        return await upgrade_engine(engine)
    finally:
        await engine.dispose()


async def upgrade_engine(engine: AsyncEngine) -> str | None:
    """Apply pending migrations in one transaction; concurrent callers wait for each other."""
    async with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        return await connection.run_sync(_upgrade_sync)


def _upgrade_sync(connection: Connection) -> str | None:
    if connection.dialect.name == "postgresql":
        # Two processes opening a fresh database would both try to create the tables; the second
        # waits here and then finds the schema at head. (SQLite's BEGIN IMMEDIATE does the same.)
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return MigrationContext.configure(connection).get_current_revision()
