"""Watching a run live (rich.live), driving it from this process when no engine runs; cancel and
repair."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from polysync.cli.common import EXIT_INTERRUPTED, cli_actor, err, run_async, session
from polysync.cli.render import (
    latest_attempts,
    run_header,
    run_link,
    run_outcome,
    status_text,
    tasks_table,
)
from polysync.cli.terminal import link_style, terminal_safe
from polysync.domain.models import RunStatus
from polysync.domain.records import Job, Run
from polysync.errors import ConflictError

if TYPE_CHECKING:
    from polysync.services import Services

DEFAULT_WATCH_INTERVAL_S = 2.0


def watch_interval_s(services: Services, interval_s: float | None) -> float:
    """The given interval, else 2 s, or the engine's shortest poll when that is shorter."""
    if interval_s is not None:
        return interval_s
    return min(DEFAULT_WATCH_INTERVAL_S, services.settings.poll_min_s)


class RunProgress:
    """What the live display shows, rebuilt at each refresh so the elapsed time ticks."""

    def __init__(self, run: Run, job: Job) -> None:
        self.run = run
        self.job = job
        self._spinner = Spinner("dots", style="blue")

    def __rich__(self) -> RenderableType:
        run = self.run
        parts: list[RenderableType] = [run_header(run, self.job), run_link(run)]
        tasks = latest_attempts(run)
        if tasks:
            parts.append(tasks_table(tasks, full_detail=False))
        if run.is_terminal:
            parts.append(run_outcome(run))
        else:
            elapsed_s = max(0, int(time.time() - run.created_at.timestamp()))
            line = status_text(run.status)
            line.append(f"  {elapsed_s}s", style="dim")
            if run.cancel_requested_at is not None:
                line.append("  cancelling…", style="magenta")
            elif run.message:
                line.append(f"  {terminal_safe(run.message.splitlines()[0])}", style="dim")
            self._spinner.update(text=line)
            parts.append(self._spinner)
        return Group(*parts)


async def watch(
    services: Services,
    run: Run,
    job: Job,
    *,
    interval_s: float,
    console: Console,
    cancel_when: Callable[[Run], bool] | None = None,
) -> Run:
    """Follow the run until it is terminal, showing each task's state, attempt and duration, and
    always end with its final status line - also when it had already ended. While no engine is
    running, this process works on this run only (`Services.dispatch`, under its own lease);
    otherwise the engine does and this only reads. `cancel_when`: request the cancel as soon as
    the run satisfies it (the demo's cancellation)."""
    progress = RunProgress(run, job)
    if run.is_terminal:
        if console.is_terminal:
            console.print(progress)
        else:
            _print_plain(run, job, console)
        return run
    if not console.is_terminal:
        return await _follow_plain(services, run, job, interval_s, console, cancel_when)
    with Live(progress, console=console, refresh_per_second=8):
        while True:
            run = await _step(services, run, cancel_when)
            progress.run = run
            if run.is_terminal:
                break
            await services.clock.sleep(interval_s)
    print_link(run, console)  # whole, to copy: the live display cut it to one line
    return run


async def _step(services: Services, run: Run, cancel_when: Callable[[Run], bool] | None) -> Run:
    run = await advance(services, run.id)
    if cancel_when and run.cancel_requested_at is None and cancel_when(run):
        run = await services.cancel(run.id, actor=cli_actor())
    return run


async def _follow_plain(
    services: Services,
    run: Run,
    job: Job,
    interval_s: float,
    console: Console,
    cancel_when: Callable[[Run], bool] | None,
) -> Run:
    """Output to a pipe or a file: no live display, one line per change of status (and the
    run page once known, on its own line), then the status line."""
    console.print(run_header(run, job), soft_wrap=True)
    shown: tuple[RunStatus, str | None, bool] | None = None
    while True:
        state = (run.status, run.run_page_url, run.cancel_requested_at is not None)
        if state != shown:
            if run.run_page_url and (shown is None or shown[1] != run.run_page_url):
                print_link(run, console)
            if run.is_terminal:
                break
            line = status_text(run.status)
            if run.cancel_requested_at is not None:
                line.append("  cancelling")
            elif run.message:
                line.append(f"  {terminal_safe(run.message.splitlines()[0])}")
            console.print(line, soft_wrap=True)
            shown = state
        await services.clock.sleep(interval_s)
        run = await _step(services, run, cancel_when)
    _print_end(run, console)
    return run


def _print_plain(run: Run, job: Job, console: Console) -> None:
    console.print(run_header(run, job), soft_wrap=True)
    print_link(run, console)
    _print_end(run, console)


def _print_end(run: Run, console: Console) -> None:
    """Each task's last attempt, then the status line."""
    tasks = latest_attempts(run)
    if tasks:
        console.print(tasks_table(tasks, full_detail=False))
    console.print(run_outcome(run), soft_wrap=True)


def print_link(run: Run, console: Console) -> None:
    """The run page URL alone on its line and never wrapped, so it can be copied or clicked
    (a terminal hyperlink too, where the terminal supports them)."""
    if run.run_page_url:
        console.print("Run page:", soft_wrap=True)
        console.print(
            Text(terminal_safe(run.run_page_url), style=link_style(run.run_page_url)),
            soft_wrap=True,
        )


async def advance(services: Services, run_id: int) -> Run:
    """The run now: driven one step by this process when no engine is running, else as the
    running engine recorded it (two processes never work on one run: leases keep them apart)."""
    if await services.engine_running():
        return await services.store.get_run(run_id)
    return await services.dispatch(run_id)


async def settle(services: Services, run: Run) -> Run:
    """Release this process's leases now and re-read the run, so what is printed is its state
    after this command (a watcher that stops leaves nothing leased)."""
    await services.engine.release()
    return await services.store.get_run(run.id)


def print_outcome(run: Run, console: Console) -> None:
    """After the live display: the run message (what failed, where, why) and where to look next."""
    if run.message:
        style = "red" if run.status is RunStatus.FAILED else ""
        for line in run.message.splitlines():
            console.print(Text(f"  {terminal_safe(line)}", style=style), soft_wrap=True)
    if run.status is not RunStatus.SUCCESS:
        console.print(
            f"  Details: [bold]polysync runs show {run.id}[/]", soft_wrap=True, highlight=False
        )


async def cancel_and_watch(
    services: Services, run_id: int, *, wait: bool, interval_s: float | None, console: Console
) -> tuple[Run, Job, bool]:
    """Ask for the cancel (D10) and, with `wait`, drive the run to its final status.
    Returns (run, job, whether a cancel was requested: False when the run had already ended)."""
    run = await services.store.get_run(run_id)
    job = await services.store.get_job(run.job_id)
    try:
        run = await services.cancel(run_id, actor=cli_actor())
    except ConflictError:  # it had ended: a no-op (D10), said by the caller
        return await services.store.get_run(run_id), job, False
    if wait:
        run = await watch(
            services, run, job, interval_s=watch_interval_s(services, interval_s), console=console
        )
    else:
        run = await advance(services, run.id)  # with no engine running, send the cancel now
    return await settle(services, run), job, True


async def repair_and_watch(
    services: Services, run_id: int, *, wait: bool, interval_s: float | None, console: Console
) -> tuple[Run, Job, Run]:
    """Ask for the repair (D13; ConflictError for a run that cannot be repaired) and, with
    `wait`, follow the repaired run to its new end; without, send it now when no engine runs.
    Returns (the run afterwards, its job, the run as the request recorded it)."""
    requested = await services.repair_run(run_id, actor=cli_actor())
    job = await services.store.get_job(requested.job_id)
    if wait:
        run = await watch(
            services,
            requested,
            job,
            interval_s=watch_interval_s(services, interval_s),
            console=console,
        )
    else:
        run = await advance(services, requested.id)
    return await settle(services, run), job, requested


def after_interrupt(
    run_id: int | None, db: str | None, interval_s: float | None, console: Console
) -> Run:
    """Ctrl-C while watching: ask whether to cancel the run too, or leave it to run (in
    Databricks, or queued for the engine when Databricks has not accepted it yet). Returns the
    run at its final status once cancelled; exits 130 when it is left alone."""
    if run_id is None:
        err.print(
            "Interrupted before the run was recorded: nothing was submitted. If it was recorded "
            "after all, `polysync runs list --active` shows it.",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED)

    async def read() -> Run:
        async with session(db) as services:
            return await services.store.get_run(run_id)

    current = run_async(read)
    if current.is_terminal:
        print_outcome(current, console)
        return current
    accepted = current.run_id is not None
    cancel = False
    if sys.stdin.isatty():
        leave = "leaves it running" if accepted else "leaves it queued for the engine"
        try:
            cancel = typer.confirm(
                f"\nCancel run {run_id}{' in Databricks' if accepted else ''} too? (No {leave})",
                default=False,
                err=True,
            )
        except typer.Abort:  # Ctrl-C or end of input at the prompt: leave it
            cancel = False
    if not cancel:
        if accepted:
            where = f"Left run {run_id} running in Databricks (Databricks run {current.run_id})."
        else:
            where = (
                f"Run {run_id} is recorded in Polysync but Databricks has not accepted it yet: "
                "a running `polysync engine` starts it (exactly once)."
            )
        err.print(
            f"{where} Follow it with [bold]polysync runs watch {run_id}[/]; cancel it with "
            f"[bold]polysync runs cancel {run_id}[/].",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED)

    async def main() -> Run:
        async with session(db) as services:
            run, _, _ = await cancel_and_watch(
                services, run_id, wait=True, interval_s=interval_s, console=console
            )
            return run

    err.print(f"Cancelling run {run_id}…")
    run = run_async(main)
    print_outcome(run, console)
    return run
