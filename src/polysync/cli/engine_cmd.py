"""`polysync engine` (the run engine in the foreground) and `polysync db upgrade`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from polysync.cli.as_json import json_object
from polysync.cli.common import (
    DbOption,
    JsonOption,
    err,
    json_mode,
    load_settings,
    out,
    print_json,
    run_async,
)
from polysync.cli.render import first_line, status_text
from polysync.cli.terminal import safe_markup
from polysync.domain.records import EngineState, Run, RunEvent, RunFilter
from polysync.errors import PolysyncError
from polysync.shapes import event_fields

if TYPE_CHECKING:
    from polysync.services import Services

log = logging.getLogger(__name__)
db_app = typer.Typer(help="The Polysync database.", no_args_is_help=True)


STATUS_EVERY_S = 60.0
"""How often `polysync engine` prints its status line (and at every change of state)."""


def engine(
    db: DbOption = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No line per run event: only start, stop and problems."),
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json", help="One JSON object per run event on stdout (the API's event shape)."
        ),
    ] = False,
) -> None:
    """Run the engine until Ctrl-C or SIGTERM: start submitted runs, watch every active run.

    One line per run event on stdout - recorded, started in Databricks, each change of status,
    finished - so the window shows what the engine does (--json: one JSON object per line).
    It survives what goes wrong: a run that cannot be handled is deferred or failed on its own,
    and a database that cannot be reached is retried with back-off until it answers again. A
    status line is printed on stderr every minute and whenever the engine's state changes;
    `polysync status` shows every engine from any shell. Stopping is graceful: Databricks runs
    keep running, and this engine's leases are released so the next engine (or another one
    sharing a PostgreSQL database) resumes tracking at once.
    """

    json_mode(json_out)  # errors, too, are JSON on stdout

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
                stopped = asyncio.Event()  # set once the engine has stopped, not when asked to
                status = asyncio.create_task(_report_status(services, stopped, quiet))
                events = None
                if not quiet:
                    events = asyncio.create_task(_report_events(services, stop, json_out=json_out))
                try:
                    await services.engine.run_supervised(stop)
                finally:
                    stop.set()
                    stopped.set()
                    await status  # its last line says the engine stopped
                    if events is not None:
                        await events  # the events recorded up to the stop are printed

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


async def _report_status(services: Services, stop: asyncio.Event, quiet: bool = False) -> None:
    """Print a status line when the engine's state changes (looked at every second), and every
    STATUS_EVERY_S (`quiet`: only on changes); once `stop` is set, a last one if the state
    changed since (the engine stopped)."""
    shown: tuple[EngineState | None, int] = (None, 0)
    printed_s = services.clock.now()
    while True:
        stopping = stop.is_set()
        health = services.engine.health
        now_s = services.clock.now()
        changed = (health.state, health.failures > 0) != (shown[0], shown[1] > 0)
        if health.state is not None and (
            changed or (not quiet and now_s - printed_s >= STATUS_EVERY_S)
        ):
            err.print(await status_line(services, now_s), soft_wrap=True, highlight=False)
            shown, printed_s = (health.state, health.failures), now_s
        if stopping:
            return
        await _unless_stopped(services.clock.sleep(1.0), stop)


EVENTS_EVERY_S = 1.0
"""How often `polysync engine` looks for new run events to print."""


async def _report_events(services: Services, stop: asyncio.Event, *, json_out: bool) -> None:
    """Print each new run event (status history entry) as it is recorded, by this engine or
    any other process on the database: one line, or one JSON object per line."""
    last: int | None = None  # events before the start are history, not news
    names: dict[int, str] = {}
    while True:
        stopping = stop.is_set()
        if not stopping and last is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), EVENTS_EVERY_S)
        try:
            if last is None:
                last = await services.store.last_event_id()
                continue
            events = await services.store.events_after(last)
            for event in events:
                run = await services.store.get_run(event.run_id)
                if run.job_id not in names:
                    names[run.job_id] = (await services.store.get_job(run.job_id)).name
                print_event(event, run, names[run.job_id], json_out=json_out)
                last = event.id
        except PolysyncError as exc:  # the status line says the database is down; retry
            log.debug("run events not read: %s", exc)
            if last is None and not stopping:
                await asyncio.sleep(EVENTS_EVERY_S)
        if stopping:
            return


def print_event(event: RunEvent, run: Run, job_name: str, *, json_out: bool) -> None:
    """One run event: `HH:MM:SS run 5 'nightly-etl': Running (Databricks run 123) - message`."""
    if json_out:
        data = event_fields(event) | {
            "run_id": event.run_id,
            "job_id": run.job_id,
            "job": job_name,
            "databricks_run_id": run.run_id,
        }
        sys.stdout.write(json.dumps(json_object(data), ensure_ascii=True) + "\n")
        sys.stdout.flush()
        return
    line = Text(f"{event.at.astimezone():%H:%M:%S} run {event.run_id} ", style="dim")
    line.append(repr(job_name), style="bold")
    line.append(": ")
    line.append_text(status_text(event.status))
    if event.source == "submit" and run.run_id:
        line.append(f" (Databricks run {run.run_id})")
    message = first_line(event.message, 160)
    if message:
        line.append(f" - {message}", style="dim")
    out.print(line, soft_wrap=True)


async def _unless_stopped(wait: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """`wait`, cut short when `stop` is set."""
    waiting = asyncio.ensure_future(wait)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        stopping.cancel()


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
def upgrade(db: DbOption = None, json_out: JsonOption = False) -> None:
    """Apply pending schema migrations (every command also does this when it opens the database)."""
    from polysync.services import upgrade_database

    revision = run_async(lambda: upgrade_database(load_settings(db)))
    if json_out:
        print_json({"revision": revision})
        return
    out.print(f"[green]✔[/] Database schema is at revision {safe_markup(revision or '(none)')}.")
