"""Database URLs and engines: the async driver per backend, SQLite pragmas and transaction mode."""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import random
import shutil
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    InvalidRequestError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

from polysync.errors import ConfigError, NotFoundError, StoreError, StoreUnavailableError

P = ParamSpec("P")
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another process's write lock before giving up."""

POSTGRES_SESSION: dict[str, Any] = {
    # Never wait for ever on a network that stopped answering, or on a row lock held by a client
    # that is gone: the store reports the database unavailable and the engine backs off. A
    # session of ours left in an open transaction (its client partitioned away) is ended by the
    # server, so its row locks cannot stop every other engine (issue 8). Keys given in the URL's
    # query string win.
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "options": "-c lock_timeout=30000 -c idle_in_transaction_session_timeout=60000",
}
"""libpq settings of every PostgreSQL connection (times in seconds, or ms in `options`)."""

WRITE_OPTION = "polysync_write"
"""Execution option marking a connection whose transaction writes (SQLite: BEGIN IMMEDIATE)."""

_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "psycopg"}
# Sync drivers people paste from other tools; their URLs mean the same to the async driver.
_SYNC_DRIVERS = {"sqlite": {"pysqlite"}, "postgresql": {"psycopg2", "psycopg2cffi"}}


def default_database_url(home: Path | None = None) -> str:
    """The SQLite file in `home` (default $POLYSYNC_HOME, else ~/.polysync); `create_engine`
    creates it (0600, in a 0700 directory) if missing."""
    if home is None:
        home = Path(os.environ.get("POLYSYNC_HOME") or "~/.polysync")
    home = home.expanduser().resolve()
    return URL.create("sqlite+aiosqlite", database=str(home / "polysync.db")).render_as_string()


def create_private_file(path: Path) -> None:
    """Create the database file 0600 in a directory created 0700, when they do not exist yet.

    It holds API key hashes, secret references and run history: only its owner reads it. What
    exists already is left as it is (an administrator may have chosen other modes). SQLite gives
    its -wal and -shm files the database file's mode.
    """
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)  # whatever the umask
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(descriptor)
    path.chmod(0o600)  # whatever the umask; an empty file is an empty SQLite database


def async_url(url: str | URL) -> URL:
    """`url` with its backend's async driver: `sqlite:///x.db` -> `sqlite+aiosqlite:///x.db`."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            "The database URL cannot be parsed: write e.g. `sqlite:///path/to/polysync.db` or "
            "`postgresql://user@host:5432/dbname`."
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "postgres":  # the scheme Heroku and some tools still print
        backend = "postgresql"
    if backend not in _ASYNC_DRIVERS:
        raise ConfigError(
            f"Unsupported database {parsed.render_as_string(hide_password=True)!r}: Polysync "
            "stores its data in SQLite (`sqlite:///path`) or PostgreSQL (`postgresql://...`)."
        )
    driver = parsed.get_driver_name() if "+" in parsed.drivername else None
    if driver is None or driver in _SYNC_DRIVERS[backend]:
        driver = _ASYNC_DRIVERS[backend]
    return parsed.set(drivername=f"{backend}+{driver}")


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def create_engine(url: str | URL) -> AsyncEngine:
    """An async engine for `url`; on SQLite: WAL, foreign keys, a busy timeout, explicit BEGINs."""
    target = async_url(url)
    options: dict[str, Any] = {}
    if is_sqlite(target):
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        if target.database and target.database != ":memory:" and not target.query.get("uri"):
            create_private_file(Path(target.database).expanduser())
    else:
        # A connection dropped by a server restart or an idle timeout is replaced, not reported.
        options["pool_pre_ping"] = True
        given = set(target.query)
        options["connect_args"] = {k: v for k, v in POSTGRES_SESSION.items() if k not in given}
    try:
        engine = create_async_engine(target, **options)
    except (ArgumentError, InvalidRequestError, ImportError) as exc:
        raise ConfigError(
            f"Cannot use the database {target.render_as_string(hide_password=True)!r}: {exc}"
        ) from exc
    if is_sqlite(target):
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # sqlite3's legacy mode starts transactions lazily (not before SELECTs, never BEGIN IMMEDIATE);
    # taking BEGIN over is SQLAlchemy's documented recipe (dialects/sqlite "sqlite_transactions").
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        _use_wal(cursor)
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    # WAL lets readers proceed while one process writes. synchronous stays FULL (the default):
    # an idempotency token must survive a power loss once committed (D8). Switching a file to WAL
    # takes an exclusive lock, and SQLite answers "database is locked" at once, without its busy
    # handler, while another connection holds any lock (two processes opening a new file): wait
    # for it here, without blocking the event loop, up to the busy timeout.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay_s = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # the driver's OperationalError, as adapted by SQLAlchemy
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        await_only(asyncio.sleep(delay_s * (1 + random.random())))
        delay_s = min(delay_s * 2, 0.25)


def _sqlite_on_begin(connection: Connection) -> None:
    # A writer takes the write lock up front: a deferred transaction that reads and then writes
    # fails with SQLITE_BUSY (no waiting) when another process committed in between, and a
    # select-then-update such as claiming runs would not be atomic across processes.
    if connection.get_execution_options().get(WRITE_OPTION):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


# PostgreSQL: serialization_failure and deadlock_detected; the server rolled the transaction back
# and asks the client to run it again (PostgreSQL docs, "Serialization Failure Handling").
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})
TRANSIENT_ATTEMPTS = 5
TRANSIENT_DEADLINE_S = 60.0
"""The longest a store call goes on retrying a transient failure (each attempt may itself wait
up to SQLite's busy timeout or PostgreSQL's lock_timeout, 30 s)."""
_TRANSIENT_BACKOFF_S = 0.05
# The clock of that deadline (real, monotonic); a test replaces it.
_monotonic = time.monotonic
DISK_FULL_SQLSTATE = "53100"
_DISK_FULL_TEXT = ("database or disk is full", "no space left on device")


def is_transient(exc: BaseException) -> bool:
    """Whether running the same transaction again at once may succeed: a PostgreSQL deadlock or
    serialization failure, or SQLite still busy after its busy timeout."""
    if not isinstance(exc, DBAPIError):
        return False
    if getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES:
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


def translated(exc: BaseException) -> StoreError | None:
    """The Polysync error for a database failure (None: not a database failure).

    Cannot connect, connection lost, pool exhausted, an I/O error: StoreUnavailableError
    (retryable). Anything else the database or the driver refused (a value it cannot store, a
    bug): StoreError. The message is the driver's first line only: SQLAlchemy's full text lists
    the statement's parameters, which may hold a run's parameter values.
    """
    if _disk_full(exc):
        return StoreUnavailableError(DISK_FULL_MESSAGE)
    if isinstance(exc, OSError | SQLAlchemyTimeoutError):
        return StoreUnavailableError(f"The database cannot be reached: {_first_line(exc)}")
    if isinstance(exc, DBAPIError):
        reason = _first_line(exc.orig)
        if "readonly database" in reason or getattr(exc.orig, "sqlstate", None) == "25006":
            return StoreUnavailableError(READ_ONLY_MESSAGE)
        if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
            return StoreUnavailableError(f"The database cannot be reached: {reason}")
        return StoreError(f"The database refused the request: {reason}")
    if isinstance(exc, StatementError):
        return StoreError(f"The database refused the request: {_first_line(exc.orig)}")
    return None


DISK_FULL_MESSAGE = (
    "The database cannot write: the disk holding it is full. Free space on it (old logs, "
    "backups), then Polysync resumes on its own; nothing already recorded is lost."
)
READ_ONLY_MESSAGE = (
    "The database cannot write: it is read-only (file or directory permissions, a read-only "
    "mount, or a PostgreSQL standby). Make it writable for the user Polysync runs as."
)


def _disk_full(exc: BaseException) -> bool:
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if getattr(orig, "sqlstate", None) == DISK_FULL_SQLSTATE:
        return True
    if isinstance(orig, OSError) and orig.errno == errno.ENOSPC:
        return True
    text = str(orig).lower()
    return any(marker in text for marker in _DISK_FULL_TEXT)


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip() if exc is not None else ""
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:300]


def _out_of_range(exc: BaseException) -> bool:
    """PostgreSQL's "bigint out of range" (SQLSTATE 22003): a number past 64 bits was bound."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == "22003"


def _id_too_large() -> NotFoundError:
    return NotFoundError(
        "No such record: an id is a whole number from 1 to 9223372036854775807 (64 bits), and "
        "the one given is larger. Check the id."
    )


def store_call(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """A store method (one transaction) that is run again when it fails transiently
    (`is_transient`, up to TRANSIENT_ATTEMPTS times with a short jittered pause, and not after
    TRANSIENT_DEADLINE_S), and whose other database failures leave it as StoreUnavailableError
    or StoreError (`translated`). A caller cancelled meanwhile (an engine stopping, a client
    gone) gets CancelledError once the transaction has ended: see `_to_its_end`."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        give_up_at = _monotonic() + TRANSIENT_DEADLINE_S
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                return await _to_its_end(method(*args, **kwargs))
            except (SQLAlchemyError, OSError) as exc:
                retry = attempt < TRANSIENT_ATTEMPTS and _monotonic() < give_up_at
                if retry and is_transient(exc):
                    # Real time, not the engine's clock: this is the database's contention, and
                    # the other transaction needs a moment to commit.
                    await asyncio.sleep(_TRANSIENT_BACKOFF_S * attempt * (0.5 + random.random()))
                    continue
                if _out_of_range(exc):
                    raise _id_too_large() from exc
                error = translated(exc)
                if error is None:
                    raise
                raise error from exc
            except OverflowError as exc:
                # SQLite binds only 64-bit integers: an id past them (a typed URL, a CLI
                # argument) names no record.
                raise _id_too_large() from exc
        raise AssertionError("unreachable")  # pragma: no cover

    return call


async def _to_its_end(transaction: Coroutine[Any, Any, T]) -> T:
    """`transaction`'s result; if the caller is cancelled meanwhile, the transaction still runs
    to its end (commit or rollback) before CancelledError reaches the caller.

    Cut off between two statements, a transaction keeps its connection checked out and, on
    SQLite, the database's write lock: every other writer then waits out the busy timeout. Store
    transactions are short (statement and lock timeouts bound them), so finishing one costs
    little; a second cancellation stops the caller's wait only, never the transaction.
    Raises: what the transaction raises; CancelledError when the caller was cancelled.
    """
    task = asyncio.ensure_future(transaction)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_retrieve)
        if not task.done():
            await asyncio.wait({task})
        raise


def _retrieve(task: asyncio.Future[Any]) -> None:
    # The caller has gone: its transaction's error (already logged by whoever needs it) must not
    # be reported again as "exception never retrieved".
    if not task.cancelled():
        task.exception()


MIN_FREE_BYTES = 1024 * 1024
"""Below this much free space on the SQLite file's disk, /health reports it full."""


def sqlite_write_problem(path: Path) -> str | None:
    """What keeps a SQLite database file from being written (read-only file or directory, a
    full disk), or None. The -wal and -shm files live next to it, so the directory counts."""
    if not path.exists():
        return None
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
        return READ_ONLY_MESSAGE
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return None
    return DISK_FULL_MESSAGE if free < MIN_FREE_BYTES else None
