"""Persistence: SQL tables, the SQL store and its Alembic migrations (SQLite or PostgreSQL)."""

from polysync.store.database import default_database_url
from polysync.store.migrate import upgrade
from polysync.store.sql_store import SqlStore, open_store

__all__ = ["SqlStore", "default_database_url", "open_store", "upgrade"]
