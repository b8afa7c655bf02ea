"""`polysync status`: the engines (from their heartbeats), the runs and the poll lag, in one look."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from polysync.cli.common import EXIT_RUN_FAILED, DbOption, JsonOption, out, print_json, run_async
from polysync.cli.common import session as open_session
from polysync.cli.terminal import safe_markup
from polysync.domain.models import RunStatus
from polysync.domain.records import EngineState

if TYPE_CHECKING:  # services is imported on use: `--help` stays fast
    from polysync.services import SystemStatus


def status(db: DbOption = None, json_out: JsonOption = False) -> None:
    """Is Polysync tracking the runs? Every engine's state, heartbeat and last cycle, the runs by
    status and the most overdue poll, then what is wrong, if anything.

    Exit status: 0 healthy, 1 a problem is listed (e.g. runs are active and no engine runs).
    """

    async def main() -> SystemStatus:
        async with open_session(db) as services:
            return await services.status()

    report = run_async(main)
    if json_out:
        print_json(status_json(report))
    else:
        _print(report)
    if report.problems:
        raise typer.Exit(EXIT_RUN_FAILED)


def status_json(report: SystemStatus) -> dict[str, Any]:
    return {
        "healthy": not report.problems,
        "problems": list(report.problems),
        "engines": [
            {
                "owner": view.heartbeat.owner,
                "state": view.heartbeat.state.value,
                "alive": view.alive,
                "stalled": view.stalled,
                "host": view.heartbeat.host,
                "pid": view.heartbeat.pid,
                "started_at": view.heartbeat.started_at.isoformat(),
                "heartbeat_at": view.heartbeat.heartbeat_at.isoformat(),
                "heartbeat_age_s": round(view.heartbeat_age_s, 3),
                "last_cycle_age_s": (
                    None if view.last_cycle_age_s is None else round(view.last_cycle_age_s, 3)
                ),
                "cycles": view.heartbeat.cycles,
                "failures": view.heartbeat.failures,
                "last_error": view.heartbeat.last_error,
            }
            for view in report.engines
        ],
        "runs": {status.value: report.runs_by_status.get(status, 0) for status in RunStatus},
        "active_runs": report.active_runs,
        "max_poll_lag_s": round(report.max_poll_lag_s, 3),
    }


def _print(report: SystemStatus) -> None:
    if report.engines:
        # At 80 columns the host and the error move under the table: the table keeps the
        # engine names whole.
        wide = out.width >= 120
        headers = ["Engine", "State", "Heartbeat", "Last cycle", "Cycles"]
        table = Table(*headers, *(["Host / pid", "Error"] if wide else []))
        table.columns[0].overflow = "fold"
        errors: list[str] = []
        for view in report.engines:
            beat = view.heartbeat
            # A live state with a stale heartbeat: the process died (kill -9, power loss).
            state = beat.state.value if view.alive or beat.state is EngineState.STOPPED else "gone"
            if view.stalled:
                state += " (stalled)"
            row = [
                safe_markup(beat.owner),
                state,
                f"{view.heartbeat_age_s:.0f} s ago",
                "-" if view.last_cycle_age_s is None else f"{view.last_cycle_age_s:.0f} s ago",
                str(beat.cycles),
            ]
            if wide:
                row += [
                    safe_markup(f"{beat.host} / {beat.pid}"),
                    safe_markup(beat.last_error or ""),
                ]
            else:
                errors += [f"{beat.owner} on {beat.host} (pid {beat.pid})"] + (
                    [f"  last error: {beat.last_error}"] if beat.last_error else []
                )
            table.add_row(*row)
        out.print(table)
        for line in errors:
            out.print(Text(line, style="dim"))
    else:
        out.print("No engine has run on this database yet.")
    counts = ", ".join(
        f"{status.value} {report.runs_by_status[status]}"
        for status in RunStatus
        if report.runs_by_status.get(status)
    )
    out.print(
        f"Runs: {report.active_runs} active ({counts or 'none yet'}); most overdue poll "
        f"{report.max_poll_lag_s:.1f} s."
    )
    if not report.problems:
        out.print("[green]✔[/] Healthy: every active run is being tracked.")
    for problem in report.problems:
        out.print(f"[red]✘[/] {safe_markup(problem)}")
