"""Database URLs: every supported URL gets its backend's async driver; others are refused."""

from __future__ import annotations

import pytest

from polysync.errors import ConfigError
from polysync.store.database import async_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///polysync.db", "sqlite+aiosqlite:///polysync.db"),
        ("sqlite:////var/lib/polysync.db", "sqlite+aiosqlite:////var/lib/polysync.db"),
        ("sqlite+pysqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u@db:5432/ps", "postgresql+psycopg://u@db:5432/ps"),
        ("postgres://u@db/ps", "postgresql+psycopg://u@db/ps"),
        ("postgresql+psycopg2://u@db/ps", "postgresql+psycopg://u@db/ps"),
        (
            "postgresql+psycopg://u@db/ps?sslmode=require",
            "postgresql+psycopg://u@db/ps?sslmode=require",
        ),
        ("postgresql+asyncpg://u@db/ps", "postgresql+asyncpg://u@db/ps"),
    ],
)
def test_the_async_driver_is_added(given: str, expected: str) -> None:
    assert async_url(given).render_as_string(hide_password=False) == expected


def test_the_password_survives_but_is_never_shown_in_errors() -> None:
    url = async_url("postgresql://u:pa%40ss@db/ps")
    assert url.password == "pa@ss"
    with pytest.raises(ConfigError, match="SQLite") as caught:
        async_url("mysql://u:hunter2@db/ps")
    assert "hunter2" not in caught.value.message


def test_an_unparseable_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot be parsed"):
        async_url("not a url")
