"""The `polysync` command: one Typer app with a sub-app per area."""

from __future__ import annotations

import typer

from polysync.cli import emulator_cmd

app = typer.Typer(
    name="polysync",
    help="Polysync for Azure Databricks: discover, import, run, watch and cancel Databricks workflows.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(emulator_cmd.app, name="emulator")


def main() -> None:
    app()
