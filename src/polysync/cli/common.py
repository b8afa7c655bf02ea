"""What every command shares: consoles, options, exit codes, settings and the services session."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from polysync.cli.terminal import make_console, safe_markup
from polysync.domain.access import Actor
from polysync.domain.limits import replace_unencodable
from polysync.errors import (
    ConfigError,
    ConflictError,
    DatabricksAuthError,
    DatabricksError,
    DatabricksTransportError,
    NotFoundError,
    PolysyncError,
    SecretReferenceError,
    StoreUnavailableError,
    TaskDefinitionError,
    TaskRunTransitionError,
    UsageError,
)

if TYPE_CHECKING:
    from polysync.config import Settings
    from polysync.services import Services
    from polysync.store import SqlStore

T = TypeVar("T")

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_PLATFORM = 3
EXIT_INTERRUPTED = 130

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success (with --no-wait: the run was started, or recorded for the engine)"),
    (EXIT_RUN_FAILED, "the run failed or was cancelled (`status`: it found a problem)"),
    (EXIT_USAGE, "bad usage or input: an option, a value, a name that matches nothing, a setting"),
    (EXIT_PLATFORM, "Databricks refused (credentials, a deleted job, a start) or was unreachable"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)
"""The exit status of every command: the one table (docs/cli.md and README.md show it)."""

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


class _Mode:
    json = False  # set by --json: errors, too, are printed as JSON on stdout


def _json_mode(value: bool) -> bool:
    _Mode.json = value  # each command sets it as it parses its options (the default too)
    return value


def json_mode(enabled: bool | None = None) -> bool:
    """Whether this command prints JSON (`--json`); `enabled` sets it (`main`, tests)."""
    if enabled is not None:
        _Mode.json = enabled
    return _Mode.json


JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print JSON to stdout (and nothing else) for scripts; errors too.",
        callback=_json_mode,
        is_eager=True,
    ),
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
        import getpass  # here: its import is slow, and few commands record an actor

        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        user = f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return Actor("cli", user)


CLI_HINTS: dict[str, str] = {
    "list_platforms": "`polysync platform list` shows the registered platforms.",
    "list_vaults": "`polysync vaults list` shows the registered Secret Vaults.",
    "list_jobs": "`polysync jobs list` shows the imported jobs.",
    "list_runs": "`polysync runs list` shows the runs.",
    "list_tasks": "`polysync tasks list` shows the Tasks.",
    "list_task_runs": "`polysync taskruns list` shows the TaskRuns.",
    "list_api_keys": "`polysync apikey list` shows the keys and their prefixes.",
    "list_profiles": "`polysync profiles list` shows the contention profiles.",
    "sync_parameters": "Re-read the job's parameters: `polysync jobs sync-params {subject}`.",
    "edit_platform": "Correct it in the web UI, or remove it (`polysync platform remove "
    "{subject} --yes`) and add it again.",
}
"""How the CLI says a `polysync.errors.Hint`: the command to type (`{subject}`: the record)."""

# Most specific first: the first class an error is an instance of gives its exit status and
# its JSON `code` (the same slugs as the REST API's problem types, polysync.api.problems).
ERROR_CODES: tuple[tuple[type[PolysyncError], int, str], ...] = (
    (NotFoundError, EXIT_USAGE, "not-found"),
    (ConflictError, EXIT_USAGE, "conflict"),
    (TaskRunTransitionError, EXIT_USAGE, "conflict"),
    (TaskDefinitionError, EXIT_USAGE, "invalid-task"),
    (UsageError, EXIT_USAGE, "bad-request"),
    (ConfigError, EXIT_USAGE, "configuration"),
    (DatabricksAuthError, EXIT_PLATFORM, "databricks-auth"),
    (DatabricksTransportError, EXIT_PLATFORM, "databricks-unreachable"),
    (DatabricksError, EXIT_PLATFORM, "databricks-error"),
    (StoreUnavailableError, EXIT_USAGE, "database-unavailable"),
    (PolysyncError, EXIT_USAGE, "error"),
)


def hint_text(exc: PolysyncError) -> str | None:
    """The error's hint as the CLI says it (a command to type), else in words; None: none."""
    hint = exc.hint
    if hint is None:
        return None
    template = CLI_HINTS.get(hint.action)
    if template is None:
        return hint.text
    return template.format(subject=shell_word(hint.subject) if hint.subject else "NAME")


def shell_word(text: str) -> str:
    """`text` as one shell word: quoted unless it is only plain characters."""
    if re.fullmatch(r"[\w.@%+=:,/-]+", text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def fail(
    message: str, code: int = EXIT_USAGE, *, hint: str | None = None, error: str = "bad-request"
) -> NoReturn:
    """Exit with `code` after saying what went wrong: one paragraph on stderr (soft-wrapped, so
    it stays copy-pastable), or with --json `{"error": {"code", "message", "hint"}}` on stdout."""
    if json_mode():
        print_json({"error": {"code": error, "message": message, "hint": hint}})
    else:
        text = f"{message} {hint}" if hint else message
        err.print(f"[bold red]Error:[/] {safe_markup(text)}", soft_wrap=True)
    raise typer.Exit(code)


def confirm_or_exit(verb: str, what: str) -> None:
    """Ask "<verb> <what>?" at a terminal; exit 1 ("Nothing <verb>d.") on no. Without a
    terminal, fail (exit 2) asking for --yes: nothing answers a prompt there. `verb` is
    "Remove" or "Delete"."""
    if not sys.stdin.isatty():
        fail(f"{verb[:-1]}ing {what} cannot be undone: add --yes to confirm.")
    if not typer.confirm(f"{verb} {what}?", default=False):
        err.print(f"Nothing {verb.lower()}d.")
        raise typer.Exit(1)


def fail_with(exc: PolysyncError) -> NoReturn:
    """`fail` for a Polysync error: its exit status and code from ERROR_CODES."""
    code, slug = next((c, s) for cls, c, s in ERROR_CODES if isinstance(exc, cls))
    fail(error_text(exc), code, hint=hint_text(exc), error=slug)


def exit_code(exc: PolysyncError) -> int:
    """The exit status of a command that ends with `exc` (ERROR_CODES)."""
    return next(code for cls, code, _ in ERROR_CODES if isinstance(exc, cls))


_VAULT_REFERENCE = ("secret reference vault:", "secret reference `vault:")


def error_text(exc: PolysyncError) -> str:
    """The exception's own message (it says what and which value), plus how to fix it where
    only the command line knows the commands to suggest."""
    if not isinstance(exc, DatabricksError):
        text = exc.message
        if isinstance(exc, SecretReferenceError) and text.startswith("Secret parameter"):
            text += (
                ". Set it for every polysync process (e.g. `export NAME=...` for env:NAME), or "
                "give the parameter another reference: `polysync jobs set-param JOB PARAMETER "
                "--value env:NAME`."
            )
        elif isinstance(exc, SecretReferenceError) and text.startswith(_VAULT_REFERENCE):
            # Not the env: advice: the vault's own message says what to do about the vault.
            text += ". Or re-add the platform with another reference."
        elif isinstance(exc, SecretReferenceError):
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
        fail_with(exc)


async def _as_coroutine(main: Callable[[], Awaitable[T]]) -> T:
    return await main()


def load_settings(db: str | None = None, **overrides: Any) -> Settings:
    """Settings from the environment (POLYSYNC_*), `--db` taking precedence."""
    from pydantic import ValidationError

    from polysync.config import Settings

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
    from rich.logging import RichHandler

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


@asynccontextmanager
async def store_session(db: str | None = None) -> AsyncIterator[SqlStore]:
    """Only the store, for commands that only read: no engine and no Databricks client are
    imported or built (a fast start, issue 10)."""
    from polysync.store import open_store

    store = await open_store(load_settings(db).resolved_database_url())
    try:
        yield store
    finally:
        await store.aclose()


# JSON escapes C0 controls itself; DEL and C1 controls (U+0080-U+009F) it would write raw.
_RAW_IN_JSON = re.compile("[\x7f-\x9f]")


def print_json(data: Any) -> None:
    """`data` as indented JSON on stdout: non-ASCII text as is, every control character
    escaped (a terminal reading it sees no escape sequence)."""
    text = replace_unencodable(json.dumps(data, indent=2, ensure_ascii=False))
    text = _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
