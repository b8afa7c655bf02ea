"""`polysync tasks ...` and `polysync taskruns ...` (issue 12): Tasks with schedules,
dependencies, retries, timeouts and priority; their TaskRuns. Every change goes through
`Services.tasks` (polysync.task_services): one validation path for the CLI, API and web."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from polysync.cli.common import (
    DbOption,
    JsonOption,
    PlatformOption,
    cli_actor,
    fail,
    out,
    print_json,
    run_async,
    session,
)
from polysync.cli.render import _field_grid, _table, first_line, print_view, when
from polysync.cli.terminal import safe_markup, terminal_safe

app = typer.Typer(
    help="Tasks: configured Jobs with schedules, dependencies, retries and timeouts.",
    no_args_is_help=True,
)
taskruns_app = typer.Typer(help="TaskRuns: list, show, cancel, repair.", no_args_is_help=True)

TaskArgument = Annotated[str, typer.Argument(help="Task id or name.", metavar="TASK")]
TaskRunArgument = Annotated[int, typer.Argument(help="TaskRun id.", metavar="ID")]

STATUS_STYLES = {
    "Queued": "cyan",
    "Running": "blue",
    "Succeeded": "green",
    "Failed": "red",
    "Cancelled": "yellow",
    "Skipped": "dim",
}


# --------------------------------------------------------------------------- options -> shape
def _pairs(pairs: list[str] | None, what: str) -> dict[str, str] | None:
    if pairs is None:
        return None
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            fail(f"{what} {pair!r} is not NAME=VALUE: write e.g. env=dev (repeat for more).")
        values[name.strip()] = value
    return values


def _dependencies(items: list[str] | None) -> list[dict[str, str]] | None:
    """`UPSTREAM` or `UPSTREAM:CONDITION` (on_success, on_failure, on_completion)."""
    if items is None:
        return None
    edges = []
    for item in items:
        upstream, _, condition = item.rpartition(":") if ":" in item else (item, "", "")
        edge = {"upstream": upstream.strip() or item}
        if condition:
            edge["condition"] = condition.strip()
        edges.append(edge)
    return edges


def _shape(
    *,
    name: str | None = None,
    parameter: list[str] | None = None,
    schedule: list[str] | None = None,
    timezone: str | None = None,
    misfire: str | None = None,
    depends_on: list[str] | None = None,
    priority: int | None = None,
    cap: int | None = None,
    on_overlap: str | None = None,
    timeout: int | None = None,
    retries: int | None = None,
    backoff: str | None = None,
    retry_delay: float | None = None,
    max_delay: float | None = None,
    strategy: str | None = None,
    description: str | None = None,
    tag: list[str] | None = None,
    no_schedules: bool = False,
    no_dependencies: bool = False,
    no_timeout: bool = False,
) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if name is not None:
        data["name"] = name
    if (parameters := _pairs(parameter, "-p")) is not None:
        data["parameters"] = parameters
    if (tags := _pairs(tag, "--tag")) is not None:
        data["tags"] = tags
    if schedule is not None:
        extra: dict[str, Any] = {}
        if timezone is not None:
            extra["timezone"] = timezone
        if misfire is not None:
            extra["misfire_policy"] = misfire
        data["schedules"] = [{"cron": cron, **extra} for cron in schedule]
    elif timezone is not None or misfire is not None:
        fail("--timezone and --misfire apply to --schedule: give the schedule with them.")
    if no_schedules:
        data["schedules"] = []
    if (edges := _dependencies(depends_on)) is not None:
        data["dependencies"] = edges
    if no_dependencies:
        data["dependencies"] = []
    for key, value in (
        ("priority", priority),
        ("concurrency_cap", cap),
        ("on_overlap", on_overlap),
        ("timeout_s", timeout),
        ("description", description),
    ):
        if value is not None:
            data[key] = value
    if no_timeout:
        data["timeout_s"] = None
    retry: dict[str, Any] = {}
    if retries is not None:
        retry["enabled"] = retries > 0
        retry["max_attempts"] = retries + 1
    settings: tuple[tuple[str, object], ...] = (
        ("backoff", backoff),
        ("initial_delay_s", retry_delay),
        ("max_delay_s", max_delay),
        ("strategy", strategy),
    )
    for key, setting in settings:
        if setting is not None:
            retry[key] = setting
    if retry:
        data["retry"] = retry
    return data


ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        metavar="NAME=VALUE",
        help="A parameter value, literal or mapped ({{upstream.TASK.parameters.NAME}}, "
        "{{upstream.TASK.run_id}} ...); repeatable.",
    ),
]
ScheduleOption = Annotated[
    list[str] | None,
    typer.Option("--schedule", "-s", metavar="CRON", help="A cron schedule; repeatable."),
]
TimezoneOption = Annotated[
    str | None, typer.Option(help="IANA time zone of the schedules (default UTC).")
]
MisfireOption = Annotated[
    str | None,
    typer.Option("--misfire", help="skip, run-latest (default) or run-all.", metavar="POLICY"),
]
DependsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--depends-on",
        "-d",
        metavar="TASK[:CONDITION]",
        help="An upstream Task; CONDITION on_success (default), on_failure or on_completion.",
    ),
]
PriorityOption = Annotated[int | None, typer.Option(help="0-100, higher first (default 50).")]
CapOption = Annotated[
    int | None, typer.Option("--cap", help="TaskRuns running at once (default 1).")
]
OverlapOption = Annotated[
    str | None, typer.Option(help="At the cap: queue (default) or skip.", metavar="queue|skip")
]
TimeoutOption = Annotated[
    int | None, typer.Option("--timeout", help="Execution timeout per attempt, seconds.")
]
RetriesOption = Annotated[
    int | None, typer.Option("--retries", help="Retries after the first attempt (0: none).")
]
BackoffOption = Annotated[
    str | None, typer.Option(help="Fixed, Linear or Exponential.", metavar="BACKOFF")
]
DelayOption = Annotated[
    float | None, typer.Option("--retry-delay", help="Initial retry delay, seconds.")
]
MaxDelayOption = Annotated[
    float | None, typer.Option("--max-delay", help="Longest retry delay, seconds.")
]
StrategyOption = Annotated[
    str | None, typer.Option(help="Repair or Restart (default: the Job Type's).")
]
DescriptionOption = Annotated[str | None, typer.Option(help="Free text.")]
TagOption = Annotated[list[str] | None, typer.Option("--tag", metavar="KEY=VALUE")]


# --------------------------------------------------------------------------- tasks
@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The new Task's name.", metavar="NAME")],
    job: Annotated[
        str,
        typer.Option("--job", help="Polysync job id, or External Id / name (with --platform)."),
    ],
    platform: PlatformOption = None,
    parameter: ParamOption = None,
    schedule: ScheduleOption = None,
    timezone: TimezoneOption = None,
    misfire: MisfireOption = None,
    depends_on: DependsOption = None,
    priority: PriorityOption = None,
    cap: CapOption = None,
    on_overlap: OverlapOption = None,
    timeout: TimeoutOption = None,
    retries: RetriesOption = None,
    backoff: BackoffOption = None,
    retry_delay: DelayOption = None,
    max_delay: MaxDelayOption = None,
    strategy: StrategyOption = None,
    description: DescriptionOption = None,
    tag: TagOption = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Create a Task: a Job with pinned values, schedules, dependencies, retries, a timeout.

    Exit status: 0 created, 2 refused (the message names the field and the fix).
    """
    data = _shape(
        name=name,
        parameter=parameter,
        schedule=schedule,
        timezone=timezone,
        misfire=misfire,
        depends_on=depends_on,
        priority=priority,
        cap=cap,
        on_overlap=on_overlap,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        retry_delay=retry_delay,
        max_delay=max_delay,
        strategy=strategy,
        description=description,
        tag=tag,
    )
    if paused:
        data["paused"] = True

    async def main() -> Any:
        async with session(db) as services:
            found = await services.get_job(job, platform)
            task = await services.tasks.create({**data, "job": found.id}, actor=cli_actor())
            return await services.tasks.details(task.id or 0)

    details = run_async(main)
    _print_details(details, json_out, verb="created")


@app.command("edit")
def edit(
    task: TaskArgument,
    name: Annotated[str | None, typer.Option("--name", help="Rename it.")] = None,
    parameter: ParamOption = None,
    schedule: ScheduleOption = None,
    timezone: TimezoneOption = None,
    misfire: MisfireOption = None,
    depends_on: DependsOption = None,
    priority: PriorityOption = None,
    cap: CapOption = None,
    on_overlap: OverlapOption = None,
    timeout: TimeoutOption = None,
    retries: RetriesOption = None,
    backoff: BackoffOption = None,
    retry_delay: DelayOption = None,
    max_delay: MaxDelayOption = None,
    strategy: StrategyOption = None,
    description: DescriptionOption = None,
    tag: TagOption = None,
    no_schedules: Annotated[bool, typer.Option("--no-schedules", help="Remove them.")] = False,
    no_dependencies: Annotated[
        bool, typer.Option("--no-dependencies", help="Remove them.")
    ] = False,
    no_timeout: Annotated[bool, typer.Option("--no-timeout", help="Remove it.")] = False,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Change a Task: only what is given changes; -p, --schedule, --depends-on and --tag
    replace the whole list. Its Job cannot change."""
    data = _shape(
        name=name,
        parameter=parameter,
        schedule=schedule,
        timezone=timezone,
        misfire=misfire,
        depends_on=depends_on,
        priority=priority,
        cap=cap,
        on_overlap=on_overlap,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        retry_delay=retry_delay,
        max_delay=max_delay,
        strategy=strategy,
        description=description,
        tag=tag,
        no_schedules=no_schedules,
        no_dependencies=no_dependencies,
        no_timeout=no_timeout,
    )
    if not data:
        fail("Nothing to change: give at least one option (see --help).")

    async def main() -> Any:
        async with session(db) as services:
            saved = await services.tasks.edit(task, data, actor=cli_actor())
            return await services.tasks.details(saved.id or 0)

    _print_details(run_async(main), json_out, verb="saved")


@app.command("list")
def list_(json_out: JsonOption = False, db: DbOption = None) -> None:
    """Every Task with its next fire time and last result."""

    async def main() -> Any:
        async with session(db) as services:
            return await services.tasks.list_tasks()

    summaries = run_async(main)
    from polysync.cli.as_json import jsonable
    from polysync.shapes import polysync_task_fields

    if json_out:
        print_json([jsonable(polysync_task_fields(s)) for s in summaries])
    elif not summaries:
        out.print("No Tasks yet. Create one: polysync tasks create NAME --job JOB -s '0 2 * * *'")
    else:
        out.print(_tasks_table(summaries))


@app.command("show")
def show(task: TaskArgument, json_out: JsonOption = False, db: DbOption = None) -> None:
    """One Task: settings, schedules with the next fire times, dependencies, latest TaskRuns."""

    async def main() -> Any:
        async with session(db) as services:
            return await services.tasks.details(task)

    _print_details(run_async(main), json_out)


@app.command("delete")
def delete(
    task: TaskArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Delete a Task and its TaskRuns (refused while Tasks depend on it or it runs)."""
    if not yes and not json_out and not typer.confirm(f"Delete Task {task!r}?"):
        raise typer.Exit(1)

    async def main() -> Any:
        async with session(db) as services:
            return await services.tasks.delete(task, actor=cli_actor())

    deleted = run_async(main)
    if json_out:
        print_json({"deleted": deleted.id, "name": deleted.name})
    else:
        out.print(f"[green]✔[/] Task [bold]{safe_markup(deleted.name)}[/] deleted.")


def _toggle(task: str, pause: bool, json_out: bool, db: str | None) -> None:
    async def main() -> Any:
        async with session(db) as services:
            changed = await (services.tasks.pause if pause else services.tasks.resume)(
                task, actor=cli_actor()
            )
            return await services.tasks.details(changed.id or 0)

    _print_details(run_async(main), json_out, verb="paused" if pause else "resumed")


@app.command("pause")
def pause(task: TaskArgument, json_out: JsonOption = False, db: DbOption = None) -> None:
    """Stop its schedules and dependencies triggering it (run-once still works)."""
    _toggle(task, True, json_out, db)


@app.command("resume")
def resume(task: TaskArgument, json_out: JsonOption = False, db: DbOption = None) -> None:
    """Trigger it again from now (times passed while paused are dropped)."""
    _toggle(task, False, json_out, db)


@app.command("run-once")
def run_once(task: TaskArgument, json_out: JsonOption = False, db: DbOption = None) -> None:
    """Queue a TaskRun now (trigger Manual); a running engine starts it."""

    async def main() -> Any:
        async with session(db) as services:
            return await services.tasks.run_once(task, actor=cli_actor())

    queued = run_async(main)
    if json_out:
        _print_run_json(queued)
    else:
        out.print(
            f"[green]✔[/] TaskRun [bold]{queued.id}[/] queued; a running `polysync engine` "
            f"starts it. Follow it: [bold]polysync taskruns show {queued.id}[/]",
            soft_wrap=True,
        )


@app.command("preview")
def preview(
    task: TaskArgument,
    count: Annotated[int, typer.Option("-n", min=1, max=1000, help="How many.")] = 10,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The next fire times of its schedules (UTC and local time)."""

    async def main() -> Any:
        async with session(db) as services:
            found = await services.tasks.get(task)
            return found, await services.tasks.preview(found.id or 0, count)

    found, fires = run_async(main)
    if json_out:
        from polysync.cli.as_json import jsonable
        from polysync.shapes import fire_time_fields

        print_json([jsonable(fire_time_fields(f)) for f in fires])
        return
    if not fires:
        out.print(f"Task {safe_markup(found.name)} has no schedule that fires again.")
        return
    table = _table()
    table.add_column("#", justify="right")
    table.add_column("UTC", no_wrap=True)
    table.add_column("Schedule", overflow="fold")
    for i, fire in enumerate(fires, 1):
        schedule = found.schedules[fire.schedule]
        table.add_row(
            str(i),
            fire.at.strftime("%Y-%m-%d %H:%M %Z"),
            safe_markup(f"{schedule.cron} ({schedule.timezone})"),
        )
    out.print(table)


# --------------------------------------------------------------------------- taskruns
@taskruns_app.command("list")
def runs_list(
    task: Annotated[str | None, typer.Option("--task", help="Only this Task's.")] = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only these statuses; repeatable.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """TaskRuns, newest first."""

    async def main() -> Any:
        async with session(db) as services:
            runs = await services.tasks.list_runs(task, status or (), limit)
            names = {t.id: t.name for t in await services.store.list_tasks()}
            return runs, names

    runs, names = run_async(main)
    if json_out:
        from polysync.cli.as_json import jsonable
        from polysync.shapes import taskrun_summary_fields

        print_json([jsonable(taskrun_summary_fields(r)) for r in runs])
    elif not runs:
        out.print("No TaskRuns yet. Queue one: polysync tasks run-once TASK")
    else:
        out.print(_taskruns_table(runs, names))


@taskruns_app.command("show")
def runs_show(task_run: TaskRunArgument, json_out: JsonOption = False, db: DbOption = None) -> None:
    """One TaskRun: trigger, status, attempts (each with its run) and status history."""

    async def main() -> Any:
        async with session(db) as services:
            found = await services.tasks.get_run(task_run)
            return found, await services.tasks.get(found.task_id)

    found, owner = run_async(main)
    if json_out:
        _print_run_json(found)
    else:
        print_view(out, _taskrun_view(found, owner.name))


@taskruns_app.command("cancel")
def runs_cancel(
    task_run: TaskRunArgument, json_out: JsonOption = False, db: DbOption = None
) -> None:
    """Cancel a Queued or Running TaskRun (its run gets runs/cancel). Exit 2 once ended."""

    async def main() -> Any:
        async with session(db) as services:
            return await services.tasks.cancel_run(task_run, actor=cli_actor())

    cancelled = run_async(main)
    if json_out:
        _print_run_json(cancelled)
    else:
        out.print(f"[green]✔[/] TaskRun [bold]{cancelled.id}[/] cancelled.")


@taskruns_app.command("repair")
def runs_repair(
    task_run: TaskRunArgument, json_out: JsonOption = False, db: DbOption = None
) -> None:
    """Repair a Failed or Cancelled TaskRun: it reopens Running (D12) and a running engine
    reruns it. Exit 2 for another status."""

    async def main() -> Any:
        async with session(db) as services:
            return await services.tasks.repair_run(task_run, actor=cli_actor())

    repaired = run_async(main)
    if json_out:
        _print_run_json(repaired)
    else:
        out.print(
            f"[green]✔[/] TaskRun [bold]{repaired.id}[/] reopened by a repair (attempt "
            f"{len(repaired.attempts)}); a running `polysync engine` sends it.",
            soft_wrap=True,
        )


# --------------------------------------------------------------------------- rendering
def _print_run_json(task_run: Any) -> None:
    from polysync.cli.as_json import jsonable
    from polysync.shapes import taskrun_fields

    print_json(jsonable(taskrun_fields(task_run)))


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def _tasks_table(summaries: Any) -> Table:
    table = _table()
    table.add_column("Id", justify="right", no_wrap=True)
    table.add_column("Name", overflow="fold", ratio=2)
    table.add_column("Job", overflow="fold", ratio=2)
    table.add_column("Next fire", no_wrap=True)
    table.add_column("Last", no_wrap=True)
    table.add_column("Upstreams", overflow="fold", ratio=1)
    for s in summaries:
        task = s.task
        name = safe_markup(task.name) + (" [dim](paused)[/]" if task.paused else "")
        table.add_row(
            str(task.id),
            name,
            safe_markup(s.job.name if s.job else str(task.job_id)),
            when(s.next_fire, short=True),
            _status(s.last_run.status.value) if s.last_run else Text("-"),
            safe_markup(", ".join(task.upstreams) or "-"),
        )
    return table


def _taskruns_table(runs: Any, names: dict[int | None, str]) -> Table:
    table = _table()
    table.add_column("Id", justify="right", no_wrap=True)
    table.add_column("Task", overflow="fold", ratio=2)
    table.add_column("Trigger", no_wrap=True)
    table.add_column("Scheduled for", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Runs", no_wrap=True)
    table.add_column("Message", ratio=1, min_width=0)
    for r in runs:
        table.add_row(
            str(r.id),
            safe_markup(names.get(r.task_id, str(r.task_id))),
            r.trigger.value,
            when(r.scheduled_for, short=True),
            _status(r.status.value),
            ",".join(str(a.run_id) for a in r.attempts if a.run_id is not None) or "-",
            Text(terminal_safe(first_line(r.message, 200)), style="dim", no_wrap=True),
        )
    return table


def _taskrun_view(task_run: Any, task_name: str) -> Group:
    grid = _field_grid()
    grid.add_row("TaskRun", f"{task_run.id} of Task {safe_markup(task_name)}")
    grid.add_row("Trigger", task_run.trigger.value)
    grid.add_row("Scheduled for", when(task_run.scheduled_for))
    grid.add_row("Status", _status(task_run.status.value))
    grid.add_row("Message", Text(terminal_safe(task_run.message)))
    if task_run.next_attempt_at is not None:
        grid.add_row("Next attempt", when(task_run.next_attempt_at))
    attempts = _table()
    for header in ("#", "Kind", "Run", "Started", "Ended", "Status", "Message"):
        attempts.add_column(header, overflow="fold")
    for a in task_run.attempts:
        attempts.add_row(
            str(a.number),
            a.kind.value,
            str(a.run_id) if a.run_id is not None else "-",
            when(a.started_at),
            when(a.ended_at),
            _status(a.status.value) if a.status else Text("running"),
            Text(terminal_safe(first_line(a.message, 120))),
        )
    history = _table()
    for header in ("At", "Status", "Message"):
        history.add_column(header, overflow="fold")
    for e in task_run.history:
        history.add_row(when(e.at), _status(e.status.value), Text(terminal_safe(e.message)))
    parts: list[Any] = [grid]
    if task_run.attempts:
        parts += [Text("Attempts (runs: polysync runs show RUN)", style="bold"), attempts]
    parts += [Text("History", style="bold"), history]
    return Group(*parts)


def _print_details(details: Any, json_out: bool, verb: str | None = None) -> None:
    from polysync.cli.as_json import jsonable
    from polysync.shapes import (
        fire_time_fields,
        polysync_task_fields,
        taskrun_summary_fields,
    )

    summary = details.summary
    if json_out:
        print_json(
            jsonable(
                {
                    **polysync_task_fields(summary),
                    "preview": [fire_time_fields(f) for f in details.preview],
                    "runs": [taskrun_summary_fields(r) for r in details.runs],
                }
            )
        )
        return
    task = summary.task
    if verb:
        out.print(f"[green]✔[/] Task [bold]{safe_markup(task.name)}[/] {verb}.")
    grid = _field_grid()
    grid.add_row("Task", f"{task.id}  {safe_markup(task.name)}")
    job = summary.job
    grid.add_row("Job", safe_markup(f"{job.name} ({job.job_type}, id {job.id})") if job else "-")
    grid.add_row("State", "paused" if task.paused else "enabled")
    if task.description:
        grid.add_row("Description", Text(terminal_safe(task.description)))
    for key, value in task.parameters.items():
        grid.add_row(f"  {safe_markup(key)}", Text(terminal_safe(value)))
    grid.add_row(
        "Runtime",
        f"priority {task.priority}, cap {task.concurrency_cap} ({task.on_overlap.value} beyond),"
        f" timeout {f'{task.timeout_s} s' if task.timeout_s else 'none'}",
    )
    retry = task.retry
    grid.add_row(
        "Retry",
        (
            f"{retry.max_attempts} attempts, {retry.backoff.value} from {retry.initial_delay_s:g} s"
            f" to {retry.max_delay_s:g} s, {retry.strategy.value if retry.strategy else 'default'}"
            " strategy"
            if retry.enabled
            else "off"
        ),
    )
    for i, s in enumerate(task.schedules):
        grid.add_row(
            f"Schedule {i}",
            safe_markup(
                f"{s.cron} ({s.timezone}), misfires: {s.misfire_policy.value}"
                + (" - paused" if s.paused else "")
            ),
        )
    for d in task.dependencies:
        grid.add_row("Upstream", safe_markup(f"{d.upstream} ({d.condition.value})"))
    grid.add_row("Next fire", when(summary.next_fire))
    parts: list[Any] = [grid]
    if details.preview:
        parts.append(
            Text(
                "Next: " + ", ".join(when(f.at, short=True) for f in details.preview[:5]),
                style="dim",
            )
        )
    if details.runs:
        names = {task.id: task.name}
        parts += [Text("Latest TaskRuns", style="bold"), _taskruns_table(details.runs, names)]
    print_view(out, Group(*parts))
