"""The `polysync` command: one Typer app whose commands are imported only when they run.

`polysync --help` lists every command from the table below without importing one, and a
command imports only its own module (issue 10: start-up within 0.25 s for `--help`). Each row's
help is the first paragraph of the command's own help; tests/unit/cli/test_main.py checks that
the table and the modules agree.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """Where a command lives: `polysync.cli.<module>.<attribute>`, a Typer app (a command group)
    or a command function; `help` is what `polysync --help` shows for it."""

    module: str
    attribute: str
    help: str
    group: bool = False


COMMANDS: dict[str, LazyCommand] = {
    "platform": LazyCommand(
        "platform_cmd", "app", "Azure Databricks workspaces Polysync connects to.", group=True
    ),
    "vaults": LazyCommand(
        "vaults_cmd",
        "app",
        "Secret Vaults: Azure Key Vaults that vault://VAULT/SECRET references are read from.",
        group=True,
    ),
    "discover": LazyCommand(
        "jobs_cmd",
        "discover",
        "Get Pipelines: every job on the platform, classified Workflow (> 1 task) or Job.",
    ),
    "import": LazyCommand(
        "jobs_cmd",
        "import_",
        "Import jobs with their parameter schema; re-importing updates and keeps your settings.",
    ),
    "jobs": LazyCommand(
        "jobs_cmd",
        "app",
        "Imported jobs: list, show, Sync Parameters, set a parameter.",
        group=True,
    ),
    "run": LazyCommand(
        "runs_cmd",
        "run",
        "Execute Now: start the job with these values, then watch it live to the end.",
    ),
    "runs": LazyCommand("runs_cmd", "app", "Runs: list, show, watch, cancel, repair.", group=True),
    "tasks": LazyCommand(
        "tasks_cmd",
        "app",
        "Tasks: configured Jobs with schedules, dependencies, retries and timeouts.",
        group=True,
    ),
    "taskruns": LazyCommand(
        "tasks_cmd", "taskruns_app", "TaskRuns: list, show, cancel, repair.", group=True
    ),
    "profiles": LazyCommand(
        "profiles_cmd",
        "app",
        "Contention profiles: cap the runs started on platforms (concurrency or rate).",
        group=True,
    ),
    "engine": LazyCommand(
        "engine_cmd",
        "engine",
        "Run the engine until Ctrl-C or SIGTERM: start submitted runs, watch every active run.",
    ),
    "status": LazyCommand(
        "status_cmd",
        "status",
        "Is Polysync tracking the runs? Every engine's state, heartbeat and last cycle, the "
        "runs by status and the most overdue poll, then what is wrong, if anything.",
    ),
    "db": LazyCommand("engine_cmd", "db_app", "The Polysync database.", group=True),
    "serve": LazyCommand(
        "service_cmd",
        "serve",
        "Serve the REST API (/api/v1, OpenAPI at /openapi.json), the web UI and the engine.",
    ),
    "apikey": LazyCommand(
        "service_cmd", "apikey_app", "API keys for the REST API and the web UI.", group=True
    ),
    "demo": LazyCommand(
        "demo_cmd",
        "demo",
        "Run the demo: emulator, platform, discovery, import, a success, a failure, a cancel, "
        "and one run of each other job type (Databricks Job, Notebook, Pipeline).",
    ),
    "emulator": LazyCommand("emulator_cmd", "app", "The Databricks Jobs API emulator.", group=True),
}


def load_command(name: str) -> Any:
    """The Click command of `polysync NAME`, its module imported now."""
    entry = COMMANDS[name]
    target = getattr(importlib.import_module(f"polysync.cli.{entry.module}"), entry.attribute)
    if entry.group:
        command: Any = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    _reflow_help(command)
    return command


def reflow(text: str | None) -> str | None:
    """Help text with each paragraph on one line, for Rich to wrap at the terminal's width (Typer
    keeps a docstring's line breaks, which break lines mid-sentence at 80 columns)."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def _reflow_help(command: Any) -> None:
    command.help = reflow(command.help)
    for sub in getattr(command, "commands", {}).values():
        _reflow_help(sub)


class LazyGroup(TyperGroup):
    """Lists COMMANDS by their table entry; imports a command's module only to run it (or to
    complete or show the help of it)."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        # Enough for the listing in `polysync --help`; `resolve_command` loads the real one.
        return TyperCommand(cmd_name, help=entry.help)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if name in COMMANDS:
            command = load_command(name)
        return name, command, rest


app = typer.Typer(
    name="polysync",
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def polysync() -> None:
    """Polysync for Azure Databricks: discover, import, run, watch and cancel Databricks
    workflows."""


def main() -> None:
    """The `polysync` command. With --json, a usage error too is JSON on stdout (exit 2)."""
    from polysync.cli.arguments import check_argv, print_json_error

    arguments = sys.argv[1:]
    check_argv(arguments)
    if "--json" not in arguments:
        app()
        return
    from typer import Abort
    from typer._click.exceptions import ClickException

    try:
        code = app(standalone_mode=False)
    except ClickException as exc:
        context = getattr(exc, "ctx", None)
        where = context.command_path if context is not None else "polysync"
        print_json_error("usage", exc.format_message(), f"`{where} --help` shows the usage.")
        sys.exit(exc.exit_code)
    except Abort:
        print_json_error("aborted", "Aborted.", None)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
