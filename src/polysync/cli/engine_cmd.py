"""`polysync engine` (the run engine in the foreground) and `polysync db upgrade`."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import typer

from polysync.cli.common import DbOption, err, load_settings, out, run_async
from polysync.cli.terminal import safe_markup
from polysync.domain.records import EngineState, RunFilter
from polysync.errors import PolysyncError

if TYPE_CHECKING:
    from polysync.services import Services

db_app = typer.Typer(help="The Polysync database.", no_args_is_help=True)


STATUS_EVERY_S = 60.0
"""How often `polysync engine` prints its status line (and at every change of state)."""


def engine(db: DbOption = None) -> None:
    """Run the engine until Ctrl-C or SIGTERM: start submitted runs, watch every active run.

    It survives what goes wrong: a run that cannot be handled is deferred or failed on its own,
    and a database that cannot be reached is retried with back-off until it answers again. A
    status line is printed every minute and whenever the engine's state changes; `polysync
    status` shows every engine from any shell. Stopping is graceful: Databricks runs keep
    running, and this engine's leases are released so the next engine (or another one sharing
    a PostgreSQL database) resumes tracking at once.
    """

    async def main() -> int | None:
        from polysync.services import Services  # imported here: `--help` stays fast

        settings = load_settings(db)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            # A database that cannot be reached yet is waited for (logged), not a crash.
            services = await Services.open_when_reachable(settings, stop)
            if services is None:
                return None
            try:
                err.print(
                    f"Polysync engine [bold]{services.engine.owner}[/] started: sweeps every "
                    f"{settings.sweep_interval_s:g} s. Ctrl-C or SIGTERM stops "
                    f"it; Databricks runs keep running.",
                    soft_wrap=True,
                )
                reporter = asyncio.create_task(_report_status(services, stop))
                try:
                    await services.engine.run_supervised(stop)
                finally:
                    reporter.cancel()
                try:
                    active = await services.list_runs(RunFilter(active_only=True, limit=10_000))
                except PolysyncError:
                    return None
                return len(active)
            finally:
                await services.aclose()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    active = run_async(main)
    counted = "Its" if active is None else f"{active} active run(s) keep running in Databricks; its"
    err.print(
        f"Engine stopped. {counted} leases are released (or expire on their own); the next "
        "`polysync engine` picks the runs up.",
        soft_wrap=True,
    )


async def _report_status(services: Services, stop: asyncio.Event) -> None:
    """Print a status line when the engine's state changes, and every STATUS_EVERY_S."""
    shown: tuple[EngineState | None, int] = (None, 0)
    printed_s = services.clock.now()
    while not stop.is_set():
        await services.clock.sleep(1.0)
        health = services.engine.health
        now_s = services.clock.now()
        changed = (health.state, health.failures > 0) != (shown[0], shown[1] > 0)
        if not changed and now_s - printed_s < STATUS_EVERY_S:
            continue
        err.print(await status_line(services, now_s), soft_wrap=True, highlight=False)
        shown, printed_s = (health.state, health.failures), now_s


async def status_line(services: Services, now_s: float) -> str:
    """One line: the engine's state, cycles, last cycle, active runs and poll lag."""
    health = services.engine.health
    parts = [f"engine {services.engine.owner}: {health.state or 'not started'}"]
    parts.append(f"{health.cycles} cycles")
    if health.last_cycle_at_s is not None:
        parts.append(f"last cycle {now_s - health.last_cycle_at_s:.1f} s ago")
    try:
        by_status = await services.store.count_runs_by_status()
        lags_s = await services.poll_lags_s()
    except PolysyncError as exc:
        parts.append(f"database: {exc.message}")
    else:
        active = sum(n for status, n in by_status.items() if not status.is_terminal)
        parts.append(f"{active} active run(s)")
        parts.append(f"poll lag {max(lags_s, default=0.0):.1f} s")
    if health.failures:
        parts.append(f"{health.failures} failed cycle(s) in a row: {health.last_error}")
    return " · ".join(parts)


@db_app.command("upgrade")
def upgrade(db: DbOption = None) -> None:
    """Apply pending schema migrations (every command also does this when it opens the database)."""
    from polysync.services import upgrade_database

    revision = run_async(lambda: upgrade_database(load_settings(db)))
    out.print(f"[green]✔[/] Database schema is at revision {safe_markup(revision or '(none)')}.")
