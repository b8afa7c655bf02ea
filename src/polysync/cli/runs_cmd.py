"""`polysync run JOB` (Execute Now) and `polysync runs ...`: list, show, watch, cancel, repair."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from polysync.cli.as_json import run_json
from polysync.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PLATFORM,
    EXIT_RUN_FAILED,
    DbOption,
    JsonOption,
    PlatformOption,
    cli_actor,
    err,
    fail,
    out,
    print_json,
    run_async,
    session,
    store_session,
)
from polysync.cli.render import (
    print_view,
    refused,
    run_outcome,
    run_view,
    runs_table,
    url_line,
)
from polysync.cli.terminal import safe_markup
from polysync.domain.limits import MAX_INT64
from polysync.domain.models import RunStatus
from polysync.domain.records import Run, RunFilter
from polysync.errors import PolysyncError
from polysync.lookup import find_job, find_platform

app = typer.Typer(help="Runs: list, show, watch, cancel, repair.", no_args_is_help=True)

IntervalOption = Annotated[
    float | None,
    typer.Option(
        "--interval",
        min=0.01,
        metavar="SECONDS",
        help="How often to step the engine while waiting (default 2 s, or POLYSYNC_POLL_MIN_S "
        "when smaller).",
        show_default=False,
    ),
]
RunIdArgument = Annotated[
    int, typer.Argument(help="Polysync run id.", metavar="ID", min=1, max=MAX_INT64)
]


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    """`-p NAME=VALUE` pairs; the value may contain `=` and may be empty."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            fail(f"-p {pair!r} is not NAME=VALUE: write e.g. -p env=dev (repeat -p for more).")
        if name.strip() in values:
            fail(f"Parameter {name.strip()!r} is given twice with -p; give it once.")
        values[name.strip()] = value
    return values


def run_exit_code(run: Run) -> int:
    """0 success (or not ended yet), 3 Databricks never started it (a refused start), 1 it
    failed or was cancelled (EXIT_CODES)."""
    if refused(run):
        return EXIT_PLATFORM
    return EXIT_RUN_FAILED if run.status in (RunStatus.FAILED, RunStatus.CANCELLED) else EXIT_OK


def run(
    job: Annotated[
        str,
        typer.Argument(
            help="Polysync job id, or External Id / name (with --platform).", metavar="JOB"
        ),
    ],
    platform: PlatformOption = None,
    parameter: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", metavar="NAME=VALUE", help="Override a parameter; repeatable."
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Watch the run live until it ends.")
    ] = True,
    interval: IntervalOption = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Execute Now: start the job with these values, then watch it live to the end.

    Exit status: 0 success (or started, with --no-wait), 1 the run failed or was cancelled,
    2 bad input, 3 Databricks refused to start it or could not be reached.
    """
    from polysync.cli.watch import (  # here: rich.live is needed by few commands
        advance,
        after_interrupt,
        print_outcome,
        settle,
        watch,
        watch_interval_s,
    )

    overrides = parse_parameters(parameter or [])
    started: list[int] = []
    live_console = err if json_out else out

    async def main() -> Any:
        async with session(db) as services:
            found = await services.get_job(job, platform)
            try:
                current = await services.execute(found, overrides, actor=cli_actor())
            except PolysyncError as exc:
                if exc.hint is not None and not exc.hint.subject:
                    exc.hint = replace(exc.hint, subject=str(found.id))  # the job to name
                raise
            started.append(current.id)
            if wait:
                current = await watch(
                    services,
                    current,
                    found,
                    interval_s=watch_interval_s(services, interval),
                    console=live_console,
                )
            else:
                current = await advance(services, current.id)  # started here if no engine runs
            return await settle(services, current), found

    try:
        current, found = run_async(main)
    except KeyboardInterrupt:
        cancelled = after_interrupt(started[0] if started else None, db, interval, live_console)
        if json_out:
            print_json(run_json(cancelled))
        raise typer.Exit(run_exit_code(cancelled)) from None
    if json_out:
        print_json(run_json(current, found))
    elif current.is_terminal:
        if not wait:
            out.print(run_outcome(current), soft_wrap=True)
        print_outcome(current, out)
    elif current.run_id is None and not current.submit_attempts:
        out.print(
            f"[green]✔[/] Run [bold]{current.id}[/] of {safe_markup(found.name)} recorded; the "
            f"running engine starts it. Follow it: [bold]polysync runs watch {current.id}[/]",
            soft_wrap=True,
        )
    elif current.run_id is None:
        out.print(
            f"[yellow]![/] Run [bold]{current.id}[/] of {safe_markup(found.name)} recorded but not "
            f"started yet: {safe_markup(current.message)}",
            soft_wrap=True,
        )
        out.print(
            f"  [bold]polysync runs watch {current.id}[/] or a running `polysync engine` "
            "finishes starting it, exactly once (the same idempotency token is sent again).",
            soft_wrap=True,
        )
    else:
        out.print(
            f"[green]✔[/] Run [bold]{current.id}[/] of {safe_markup(found.name)} started"
            f" as Databricks run {current.run_id}.",
            soft_wrap=True,
        )
        if current.run_page_url:
            out.print("  Run page:", soft_wrap=True)
            out.print(url_line(current.run_page_url), soft_wrap=True)
        out.print(
            f"  Follow it: [bold]polysync runs watch {current.id}[/]   "
            f"cancel it: [bold]polysync runs cancel {current.id}[/]   "
            f"(a running `polysync engine` keeps tracking it)",
            soft_wrap=True,
        )
    raise typer.Exit(run_exit_code(current))


@app.command("list")
def list_(
    job: Annotated[
        str | None, typer.Option("--job", help="Only this job's runs.", metavar="JOB")
    ] = None,
    platform: Annotated[
        str | None, typer.Option("--platform", help="Only this platform's runs (and its JOB).")
    ] = None,
    status: Annotated[
        list[RunStatus] | None, typer.Option("--status", help="Only these statuses; repeatable.")
    ] = None,
    active: Annotated[bool, typer.Option("--active", help="Only runs not yet ended.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Runs, newest first."""

    async def main() -> Any:
        async with store_session(db) as store:
            job_id = (await find_job(store, job, platform)).id if job else None
            platform_id = (
                (await find_platform(store, platform)).id if platform and not job else None
            )
            runs = await store.list_runs(
                RunFilter(
                    job_id=job_id,
                    platform_id=platform_id,
                    statuses=tuple(status or ()),
                    active_only=active,
                    limit=limit,
                )
            )
            jobs = {j.id: j for j in await store.list_jobs()}
            return runs, jobs

    runs, jobs = run_async(main)
    if json_out:
        print_json([run_json(r, jobs.get(r.job_id)) for r in runs])
    elif not runs:
        out.print("No runs yet. Start one: polysync run JOB [-p NAME=VALUE ...]")
    else:
        out.print(runs_table(runs, jobs))


@app.command("show")
def show(run_id: RunIdArgument, json_out: JsonOption = False, db: DbOption = None) -> None:
    """One run: status, message, run page, parameters sent, tasks and status history."""

    async def main() -> Any:
        async with store_session(db) as store:
            run = await store.get_run(run_id)
            job = await store.get_job(run.job_id)
            return run, job, await store.run_events(run_id), datetime.now(UTC)

    current, job, events, now = run_async(main)
    if json_out:
        print_json(run_json(current, job, events))
    else:
        print_view(out, run_view(current, job, events, now))


@app.command("watch")
def watch_(
    run_id: RunIdArgument,
    interval: IntervalOption = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Follow a run live until it ends (Ctrl-C stops watching; the run keeps running).

    Exit status: 0 success, 1 the run failed or was cancelled, 3 Databricks refused to start it.
    """
    from polysync.cli.watch import print_outcome, settle, watch, watch_interval_s

    live_console = err if json_out else out

    async def main() -> Any:
        async with session(db) as services:
            current, job, _ = await services.run_details(run_id)
            current = await watch(
                services,
                current,
                job,
                interval_s=watch_interval_s(services, interval),
                console=live_console,
            )
            return await settle(services, current), job

    try:
        current, job = run_async(main)
    except KeyboardInterrupt:
        err.print(
            f"Stopped watching; run {run_id} keeps running. Cancel it with "
            f"[bold]polysync runs cancel {run_id}[/].",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if json_out:
        print_json(run_json(current, job))
    else:
        print_outcome(current, out)
    raise typer.Exit(run_exit_code(current))


@app.command("cancel")
def cancel(
    run_id: RunIdArgument,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Wait until Databricks confirms the final status."),
    ] = True,
    interval: IntervalOption = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Cancel a run (D10: Databricks stops it asynchronously; --wait confirms the final status).

    Exit status: 0 cancelled (or requested, with --no-wait; or the run had already ended),
    1 the run ended otherwise.
    """
    from polysync.cli.watch import cancel_and_watch, print_outcome

    live_console = err if json_out else out

    async def main() -> Any:
        async with session(db) as services:
            return await cancel_and_watch(
                services, run_id, wait=wait, interval_s=interval, console=live_console
            )

    current, job, requested = run_async(main)
    if json_out:
        print_json(run_json(current, job) | {"cancel_requested": requested})
    elif not requested:
        out.print(f"Run {current.id} is already {current.status.value}; nothing to cancel.")
    elif current.is_terminal:
        print_outcome(current, out)
    else:
        out.print(
            f"Cancellation of run {current.id} requested; Databricks stops it asynchronously. "
            f"[bold]polysync runs show {current.id}[/] shows when it has stopped.",
            soft_wrap=True,
        )
    if requested and current.is_terminal and current.status is not RunStatus.CANCELLED:
        raise typer.Exit(EXIT_RUN_FAILED)


@app.command("repair")
def repair(
    run_id: RunIdArgument,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait", help="Follow the repaired run to its new end (default), or not."
        ),
    ] = True,
    interval: IntervalOption = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Repair a Failed or Cancelled run (D13): its failed and skipped tasks rerun in the same
    Databricks run (jobs/runs/repair), which Polysync follows to its new end.

    Exit status: 0 the repaired run succeeded (or the repair was requested, with --no-wait),
    1 it failed or was cancelled again, 2 this run cannot be repaired (not Failed or Cancelled,
    no failed task to rerun, gone from Databricks, or a Job Type whose runs cannot be),
    3 Databricks refused or was unreachable.
    """
    from polysync.cli.watch import print_outcome, repair_and_watch

    live_console = err if json_out else out

    async def main() -> Any:
        async with session(db) as services:
            return await repair_and_watch(
                services, run_id, wait=wait, interval_s=interval, console=live_console
            )

    current, job, requested = run_async(main)
    assert requested.repair is not None
    if json_out:
        print_json(run_json(current, job))
    else:
        out.print(safe_markup(requested.repair.describe()) + ".", soft_wrap=True)
        if current.is_terminal:
            print_outcome(current, out)
        else:
            out.print(
                f"Run {current.id} is {current.status.value}: the engine sends the repair and "
                f"follows it. [bold]polysync runs watch {current.id}[/] shows it live.",
                soft_wrap=True,
            )
    if current.is_terminal and current.status is not RunStatus.SUCCESS:
        raise typer.Exit(EXIT_RUN_FAILED)
