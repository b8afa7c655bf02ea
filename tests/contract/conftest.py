"""The two-backend store fixtures (SQLite file, PostgreSQL database) for every contract module."""

from tests.contract.test_store import database_url, store  # noqa: F401
