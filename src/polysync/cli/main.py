"""The `polysync` command: one Typer app with a sub-app per area."""

from __future__ import annotations

import typer

from polysync.cli import (
    demo_cmd,
    emulator_cmd,
    engine_cmd,
    jobs_cmd,
    platform_cmd,
    runs_cmd,
    service_cmd,
    status_cmd,
)

app = typer.Typer(
    name="polysync",
    help="Polysync for Azure Databricks: discover, import, run, watch and cancel Databricks workflows.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(platform_cmd.app, name="platform")
app.command("discover")(jobs_cmd.discover)
app.command("import")(jobs_cmd.import_)
app.add_typer(jobs_cmd.app, name="jobs")
app.command("run")(runs_cmd.run)
app.add_typer(runs_cmd.app, name="runs")
app.command("engine")(engine_cmd.engine)
app.command("status")(status_cmd.status)
app.add_typer(engine_cmd.db_app, name="db")
app.command("serve")(service_cmd.serve)
app.add_typer(service_cmd.apikey_app, name="apikey")
app.command("demo")(demo_cmd.demo)
app.add_typer(emulator_cmd.app, name="emulator")


def main() -> None:
    app()
