"""What every command shares: consoles, options, exit codes, settings and the services session."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.logging import RichHandler

from polysync.cli.terminal import make_console, safe_markup
from polysync.config import Settings
from polysync.domain.access import Actor
from polysync.domain.limits import replace_unencodable
from polysync.errors import (
    ConfigError,
    DatabricksAuthError,
    DatabricksError,
    DatabricksTransportError,
    PolysyncError,
    SecretReferenceError,
)

if TYPE_CHECKING:
    from polysync.services import Services

T = TypeVar("T")

EXIT_OK = 0
EXIT_RUN_FAILED = 1  # the run failed or was cancelled
EXIT_USAGE = 2  # bad usage or input
EXIT_PLATFORM = 3  # Databricks refused, or could not be reached
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), by shell convention

# Every string the CLI prints passes through these: control characters become visible.
out = make_console()
err = make_console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Database URL (overrides POLYSYNC_DATABASE_URL; default: SQLite in POLYSYNC_HOME).",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON to stdout (and nothing else) for scripts.")
]
PlatformOption = Annotated[
    str | None,
    typer.Option(
        "--platform",
        help="The platform of JOB, when JOB is an External Id or a name.",
        show_default=False,
    ),
]


def cli_actor() -> Actor:
    """Who the audit trail names for a CLI command: `cli:<operating-system user>`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        user = f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return Actor("cli", user)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One paragraph on stderr (soft-wrapped, so it stays copy-pastable), then exit."""
    err.print(f"[bold red]Error:[/] {safe_markup(message)}", soft_wrap=True)
    raise typer.Exit(code)


def exit_code(exc: PolysyncError) -> int:
    """3 for Databricks (refused, unreachable, auth); 2 for bad input, settings or references."""
    return EXIT_PLATFORM if isinstance(exc, DatabricksError) else EXIT_USAGE


def error_text(exc: PolysyncError) -> str:
    """The exception's own message (it says what and which value), plus how to fix it where
    only the command line knows the commands to suggest."""
    if not isinstance(exc, DatabricksError):
        text = exc.message
        if isinstance(exc, SecretReferenceError):
            text += (
                ". Set it for every polysync process (e.g. `export NAME=...` for env:NAME), or "
                "re-add the platform with another reference."
            )
        return text
    # DatabricksError's str() adds the HTTP status, the error code and the call that failed.
    text = str(exc)
    if isinstance(exc, DatabricksAuthError):
        text += (
            " - Databricks refused the credentials: check that the platform's secret reference "
            "holds a valid secret for this workspace (`polysync platform show NAME` shows it), "
            "then `polysync platform test NAME`."
        )
    elif isinstance(exc, DatabricksTransportError):
        text += (
            " - check the workspace URL and the network; for HTTPS with a private CA, add the "
            "platform with --ca-bundle PATH."
        )
    return text


def run_async(main: Callable[[], Awaitable[T]]) -> T:
    """Run one command's coroutine; expected errors become a message and an exit code (no
    traceback). KeyboardInterrupt is left to the caller."""
    try:
        return asyncio.run(_as_coroutine(main))
    except PolysyncError as exc:
        fail(error_text(exc), exit_code(exc))


async def _as_coroutine(main: Callable[[], Awaitable[T]]) -> T:
    return await main()


def load_settings(db: str | None = None, **overrides: Any) -> Settings:
    """Settings from the environment (POLYSYNC_*), `--db` taking precedence."""
    if db is not None:
        overrides["database_url"] = db
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(
            f"Setting {where!r} is not valid: {first['msg']}. Fix the environment variable "
            f"POLYSYNC_{where.upper()}."
        ) from exc
    _configure_logging(settings.log_level)
    return settings


class _EncodableLogRecord(logging.LogRecord):
    """A log record whose message holds no lone surrogate or NUL (U+FFFD instead): a workspace's
    text quoted in a log line can never make a handler writing UTF-8 (a file, a journal) fail."""

    def getMessage(self) -> str:
        return replace_unencodable(super().getMessage())


def _configure_logging(level: str) -> None:
    logging.setLogRecordFactory(_EncodableLogRecord)
    root = logging.getLogger()
    if any(isinstance(handler, RichHandler) for handler in root.handlers):
        return
    handler = RichHandler(console=err, show_path=False, markup=False, rich_tracebacks=False)
    root.addHandler(handler)
    root.setLevel(level.upper() if level.upper() in logging.getLevelNamesMapping() else "WARNING")


@asynccontextmanager
async def session(
    db: str | None = None, settings: Settings | None = None
) -> AsyncIterator[Services]:
    """The services over the configured store; closed (leases released) however the command ends."""
    from polysync.services import Services  # imported here: `--help` stays fast

    services = await Services.open(settings or load_settings(db))
    try:
        yield services
    finally:
        await services.aclose()


# JSON escapes C0 controls itself; DEL and C1 controls (U+0080-U+009F) it would write raw.
_RAW_IN_JSON = re.compile("[\x7f-\x9f]")


def print_json(data: Any) -> None:
    """`data` as indented JSON on stdout: non-ASCII text as is, every control character
    escaped (a terminal reading it sees no escape sequence)."""
    text = replace_unencodable(json.dumps(data, indent=2, ensure_ascii=False))
    text = _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
