"""`polysync engine` (the run engine in the foreground) and `polysync db upgrade`."""

from __future__ import annotations

import asyncio
import signal

import typer

from polysync.cli.common import DbOption, err, load_settings, out, run_async, session
from polysync.cli.terminal import safe_markup
from polysync.domain.records import RunFilter

db_app = typer.Typer(help="The Polysync database.", no_args_is_help=True)


def engine(db: DbOption = None) -> None:
    """Run the engine until Ctrl-C or SIGTERM: start submitted runs, watch every active run.

    Stopping is graceful: Databricks runs keep running, and this engine's leases are released
    so the next engine (or another one sharing a PostgreSQL database) resumes tracking at once.
    """

    async def main() -> int:
        async with session(db) as services:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            settings = services.settings
            err.print(
                f"Polysync engine [bold]{services.engine.owner}[/] started: polls every "
                f"{settings.poll_min_s:g}-{settings.poll_max_s:g} s. Ctrl-C or SIGTERM stops it; "
                f"Databricks runs keep running.",
                soft_wrap=True,
            )
            try:
                await services.engine.run_forever(stop)
            finally:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)
            active = await services.list_runs(RunFilter(active_only=True, limit=10_000))
            return len(active)

    active = run_async(main)
    err.print(
        f"Engine stopped; its leases are released. {active} active run(s) keep running in "
        "Databricks; the next `polysync engine` picks them up.",
        soft_wrap=True,
    )


@db_app.command("upgrade")
def upgrade(db: DbOption = None) -> None:
    """Apply pending schema migrations (every command also does this when it opens the database)."""
    from polysync.services import upgrade_database

    revision = run_async(lambda: upgrade_database(load_settings(db)))
    out.print(f"[green]✔[/] Database schema is at revision {safe_markup(revision or '(none)')}.")
