"""How records look to people: Rich tables, panels and status lines (`as_json` is for scripts)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from polysync.cli.terminal import link_style, safe_markup, terminal_safe
from polysync.domain.models import JobTypeName, Parameter, RunSnapshot, RunStatus, TaskRunState
from polysync.domain.records import Job, Platform, Run, RunEvent
from polysync.jobtypes.base import DiscoveredJob
from polysync.presentation import (
    AUTH_LABELS,
    STATUS_COLOURS,
    STATUS_ICONS,
    counts_text,
    duration_text,
    local_time_text,
    run_duration_ms,
    short_label,
    shown_default,
    shown_value,
    shown_values,
)

if TYPE_CHECKING:
    from polysync.services import ImportResult

OPTION_LABELS = {"api_versions": "API versions", "tls_ca_bundle": "CA bundle"}
# Terminal states in bold: the line a user waited for stands out.
STATUS_STYLES = {
    status: f"bold {colour}" if status.is_terminal else colour
    for status, colour in STATUS_COLOURS.items()
}


# --------------------------------------------------------------------------- small pieces
def kind_label(kind: JobTypeName) -> str:
    """The Job Type shown in tables ("Databricks Workflow" -> "Workflow", `short_label`)."""
    return short_label(kind)


def status_text(status: RunStatus) -> Text:
    return Text(status.value, style=STATUS_STYLES[status])


def when(moment: datetime | None, *, short: bool = False) -> str:
    """Local time; `short` for tables (a month abbreviation, to the minute)."""
    return local_time_text(moment, short=short)


def tags_text(tags: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(tags.items())) or "-"


def first_line(text: str, limit: int = 70) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def latest_attempts(run: Run) -> tuple[TaskRunState, ...]:
    """The last attempt of each task (the one that decides), in Databricks' order."""
    return RunSnapshot(status=run.status, tasks=run.tasks).latest_attempts()


def task_state(task: TaskRunState) -> Text:
    text = status_text(task.status)
    detail = task.result_state or task.life_cycle_state
    if detail and detail.upper() != task.status.value.upper():
        text.append(f" ({terminal_safe(detail)})", style="dim")
    return text


def _field_grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def _table() -> Table:
    return Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False)


def _id_column(table: Table, header: str, values: Iterable[str], **options: Any) -> None:
    """A column of ids (Polysync ids, External Ids): never cut. Ids up to MAX_ID_WIDTH are
    never wrapped either (the column is as wide as its longest value, whatever the terminal's
    width); longer ones (a notebook's workspace path) fold onto several lines, so the other
    columns keep room."""
    width = max([len(header), *(len(v) for v in values)])
    if width <= MAX_ID_WIDTH:
        table.add_column(header, no_wrap=True, min_width=width, **options)
    else:
        table.add_column(header, overflow="fold", min_width=MAX_ID_WIDTH, **options)


MAX_ID_WIDTH = 19
"""The widest id kept on one line in a table: a 64-bit Databricks id (19 digits)."""


def task_count_text(job: DiscoveredJob) -> str:
    """The task count; "100+" when jobs/list cut the task list (API 2.2 pages tasks at 100,
    `has_more`) and no jobs/get gave the true count."""
    return f"{job.task_count}+" if job.tasks_truncated else str(job.task_count)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# --------------------------------------------------------------------------- platforms
def platforms_table(platforms: Sequence[Platform]) -> Table:
    table = _table()
    table.add_column("Name", overflow="fold")
    # A URL is folded only when the terminal is too narrow for it (`platform show` prints it whole).
    table.add_column("Workspace URL", overflow="fold")
    table.add_column("Authentication", overflow="fold")
    _id_column(table, "Id", (str(p.id) for p in platforms))
    for p in platforms:
        table.add_row(
            safe_markup(p.name),
            safe_markup(p.workspace_url),
            AUTH_LABELS.get(p.auth_method, p.auth_method),
            str(p.id),
        )
    return table


def platform_view(platform: Platform, job_count: int) -> RenderableType:
    grid = _field_grid()
    grid.add_row("Name", safe_markup(platform.name))
    grid.add_row("Provider", "Azure Databricks")
    grid.add_row("Workspace URL", safe_markup(platform.workspace_url))
    grid.add_row("Authentication", AUTH_LABELS.get(platform.auth_method, platform.auth_method))
    for key, value in platform.auth.items():
        if key != "method" and value not in (None, False):
            grid.add_row(f"  {key}", safe_markup(str(value)))
    grid.add_row("Cluster Id", safe_markup(platform.cluster_id or "-"))
    if platform.description:
        grid.add_row("Description", safe_markup(platform.description))
    for key, value in platform.options.items():
        label = OPTION_LABELS.get(key, key)
        shown = (
            ", ".join(f"{k}={v}" for k, v in value.items())
            if isinstance(value, Mapping)
            else str(value)
        )
        grid.add_row(label, safe_markup(shown))
    grid.add_row("Jobs imported", str(job_count))
    grid.add_row("Id", str(platform.id))
    grid.add_row("Created", when(platform.created_at))
    return grid


# --------------------------------------------------------------------------- jobs
def discover_table(found: Sequence[DiscoveredJob], imported: set[str]) -> Table:
    table = _table()
    _id_column(table, "External Id", (job.external_id for job in found))
    table.add_column("Name", overflow="fold", ratio=2)
    table.add_column("Type", no_wrap=True)
    table.add_column("Tasks", justify="right", no_wrap=True)
    table.add_column("Tags", overflow="fold", ratio=1)
    show_imported = any(job.external_id in imported for job in found)
    if show_imported:
        table.add_column("Imported", justify="center")
    for job in found:
        row: list[RenderableType] = [
            job.external_id,
            safe_markup(job.name),
            Text(kind_label(job.kind), style="bold" if job.task_count > 1 else ""),
            task_count_text(job),
            safe_markup(tags_text(job.tags)),
        ]
        if show_imported:
            row.append("✔" if job.external_id in imported else "")
        table.add_row(*row)
    return table


def discover_summary(found: Sequence[DiscoveredJob]) -> str:
    return f"{plural(len(found), 'job')} found: {kinds_summary(j.kind for j in found)}."


def kinds_summary(kinds: Iterable[JobTypeName]) -> str:
    """How many of each Job Type, most first: "7 Databricks Workflows, 3 Databricks Jobs"."""
    return counts_text(kinds)


def import_table(results: Sequence[ImportResult]) -> Table:
    table = _table()
    _id_column(table, "External Id", (r.external_id for r in results if r.job is not None))
    table.add_column("Name", overflow="fold")
    table.add_column("Type", no_wrap=True)
    table.add_column("Outcome", no_wrap=True)
    table.add_column("Parameters", overflow="fold")
    for r in results:
        if r.job is None:
            continue
        job_level = sum(1 for p in r.job.parameters if p.is_job_level)
        table.add_row(
            r.external_id,
            safe_markup(r.job.name),
            kind_label(r.job.job_type),
            Text("created", style="green") if r.created else Text("updated", style="cyan"),
            f"{job_level} job-level, {len(r.job.parameters) - job_level} task-scoped",
        )
    return table


def jobs_table(jobs: Sequence[Job], platform_names: Mapping[int, str]) -> Table:
    several_platforms = len({job.platform_id for job in jobs}) > 1
    table = _table()
    _id_column(table, "Id", (str(job.id) for job in jobs), justify="right")
    table.add_column("Name", overflow="fold", ratio=1)
    table.add_column("Type", no_wrap=True)
    _id_column(table, "External Id", (job.external_id for job in jobs))
    if several_platforms:
        table.add_column("Platform", overflow="fold")
    table.add_column("Tasks", justify="right", no_wrap=True, min_width=5)
    table.add_column("Params", justify="right", no_wrap=True, min_width=6)
    for job in jobs:
        row = [str(job.id), safe_markup(job.name), kind_label(job.job_type), job.external_id]
        if several_platforms:
            row.append(safe_markup(platform_names.get(job.platform_id, str(job.platform_id))))
        row += [str(job.task_count), str(sum(1 for p in job.parameters if p.is_job_level))]
        table.add_row(*row)
    return table


def job_view(job: Job, platform_name: str) -> RenderableType:
    general = _field_grid()
    general.add_row("Name", safe_markup(job.name))
    general.add_row("Job Type", str(job.job_type))
    general.add_row("External Id", job.external_id)
    general.add_row("Platform", safe_markup(platform_name))
    if job.description:
        general.add_row("Description", safe_markup(job.description))
    general.add_row("Tags", safe_markup(tags_text(job.tags)))
    general.add_row("Tasks", safe_markup(f"{job.task_count}: {', '.join(job.task_keys) or '-'}"))
    general.add_row("Id", str(job.id))
    general.add_row("Imported", when(job.imported_at))
    general.add_row("Synced", when(job.synced_at))
    parts: list[RenderableType] = [Text("General", style="bold underline"), general, Text()]
    parts.append(Text("Parameters", style="bold underline"))
    parts.append(parameters_table(job.parameters))
    if any(not p.is_job_level for p in job.parameters):
        parts.append(
            Text(
                "Task-scoped parameters are reference-only: Polysync sends only job-level "
                "parameters. To set one at run time, declare it on the Databricks Job's "
                "job-level parameters, then run `polysync jobs sync-params`.",
                style="dim",
            )
        )
    return Group(*parts)


def default_text(parameter: Parameter) -> Text:
    """A parameter's Databricks default: "no default" and an empty default look different."""
    default = shown_default(parameter)
    if default is None:
        return Text("(no default)", style="dim")
    if default == "":
        return Text.assemble('""', (" (empty text)", "dim"))
    return Text(terminal_safe(default))


def parameters_table(parameters: Sequence[Parameter]) -> RenderableType:
    if not parameters:
        return Text("This job has no parameters.", style="dim")
    stored = any(p.stored_value is not None for p in parameters)
    table = _table()
    table.add_column("Name", no_wrap=True)
    table.add_column("Data Type", no_wrap=True)
    table.add_column("Default", overflow="fold")
    table.add_column("Direction", no_wrap=True)
    table.add_column("Scope", overflow="fold")
    if stored:
        table.add_column("Stored value", overflow="fold")
    for p in parameters:
        # Unset behaves like Input (spec): shown as Input, dimmed.
        direction = Text(p.direction.value) if p.direction else Text("Input", style="dim")
        if p.reference_only:
            scope = Text(f"{terminal_safe(str(p.source))}, reference-only", style="yellow")
        elif not p.is_job_level:
            scope = Text(f"task {terminal_safe(p.task_key or '')}, reference-only", style="yellow")
        else:
            scope = Text("job level")
            if p.choices:
                scope.append(f"; choices: {terminal_safe(', '.join(p.choices))}", style="dim")
        row: list[RenderableType] = [
            safe_markup(p.name),
            p.data_type.value,
            default_text(p),
            direction,
            scope,
        ]
        if stored:
            value = shown_value(p.data_type, p.stored_value)
            row.append(safe_markup(value) if value is not None else "")
        table.add_row(*row)
    return table


# --------------------------------------------------------------------------- runs
def runs_table(runs: Sequence[Run], jobs: Mapping[int, Job]) -> Table:
    table = _table()
    _id_column(table, "Id", (str(run.id) for run in runs), justify="right")
    table.add_column("Job", overflow="fold", ratio=2)
    table.add_column("Status", no_wrap=True)
    table.add_column("Created", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    # The one column that gives way on a narrow terminal (to nothing at 80 columns with long
    # job names); `runs show ID` has the whole message.
    table.add_column("Message", ratio=1, min_width=0)
    for run in runs:
        job = jobs.get(run.job_id)
        table.add_row(
            str(run.id),
            safe_markup(job.name if job else str(run.job_id)),
            status_text(run.status),
            when(run.created_at, short=True),
            duration_text(run_duration_ms(run), nothing="-"),
            Text(
                terminal_safe(first_line(run.message, 200)),
                style="dim",
                no_wrap=True,
                overflow="ellipsis",
            ),
        )
    return table


def tasks_table(tasks: Iterable[TaskRunState], *, full_detail: bool = True) -> Table:
    """One row per task attempt. `full_detail=False` keeps each row on one line (the live
    display: the run message printed afterwards carries the full text)."""
    tasks = list(tasks)
    table = _table()
    # A task key is an identifier: whole on one line; the Detail column gives way.
    _id_column(
        table, "Task", (terminal_safe(t.task_key or f"(task run {t.run_id})") for t in tasks)
    )
    table.add_column("State", no_wrap=True)
    table.add_column("Attempt", justify="right")
    table.add_column("Duration", justify="right")
    # Detail is the one column that gives way when the terminal is narrow.
    table.add_column("Detail", overflow="fold")
    for task in tasks:
        detail = terminal_safe(task.error or task.state_message)
        table.add_row(
            safe_markup(task.task_key or f"(task run {task.run_id})"),
            task_state(task),
            str(task.attempt_number + 1),
            duration_text(task.duration_ms, nothing="-") if task.status.is_terminal else "…",
            Text(detail, style="red" if task.error else "dim")
            if full_detail
            else Text(
                first_line(detail, 200),
                style="red" if task.error else "dim",
                no_wrap=True,
                overflow="ellipsis",
            ),
        )
    return table


def run_header(run: Run, job: Job) -> Text:
    return Text.assemble(
        (terminal_safe(job.name), "bold"),
        f"  ·  run {run.id}",
        f"  ·  Databricks run {run.run_id}" if run.run_id else "  ·  submitting",
    )


def url_line(url: str) -> Text:
    """A URL alone on its line, never wrapped or cut (a terminal wraps it for the eye, and a
    copy or a pipe keeps it whole); a hyperlink where the terminal supports them."""
    return Text(
        terminal_safe(url), style=link_style(url), no_wrap=True, overflow="ignore", end="\n"
    )


def print_view(console: Console, view: Group) -> None:
    """Print a view part by part: a URL line (`url_line`) without cropping or wrapping."""
    for part in view.renderables:
        whole = isinstance(part, Text) and part.no_wrap and part.overflow == "ignore"
        console.print(part, soft_wrap=whole, crop=not whole)


def run_link(run: Run) -> Text:
    if not run.run_page_url:
        return Text("Run page: (known once Databricks accepts the run)", style="dim")
    # One line in the live display (a hyperlink where the terminal supports them); the whole
    # URL is printed on its own line once the display ends (`watch.print_link`).
    return Text.assemble(
        "Run page: ",
        (terminal_safe(run.run_page_url), link_style(run.run_page_url)),
        no_wrap=True,
        overflow="ellipsis",
    )


def refused(run: Run) -> bool:
    """Whether the run ended without Databricks ever accepting it (a refused start: deleted
    job, credentials refused, workspace unreachable)."""
    return run.is_terminal and run.run_id is None and run.status is RunStatus.FAILED


def run_outcome(run: Run) -> Text:
    """The status line: icon, status, and how long Databricks ran it (or that it never
    started it)."""
    icon = STATUS_ICONS.get(run.status, "•")
    text = Text(f"{icon} ", style=STATUS_STYLES[run.status])
    text.append_text(status_text(run.status))
    duration = run_duration_ms(run)
    if refused(run):
        text.append(f": Databricks did not start run {run.id}")
    elif run.is_terminal and run.run_id is None:
        text.append(f": run {run.id} was never started in Databricks")
    elif duration is not None:
        text.append(f" after {duration_text(duration)}")
    return text


def run_view(run: Run, job: Job, events: Sequence[RunEvent], now: datetime | None = None) -> Group:
    """Everything about one run. `now` (the clock's) tells whether an engine is tracking it."""
    grid = _field_grid()
    grid.add_row("Run", f"{run.id} of job {safe_markup(job.name)} (id {job.id}, {job.job_type!s})")
    grid.add_row("Status", status_text(run.status))
    grid.add_row("Message", safe_markup(run.message) or "-")
    grid.add_row("Databricks run", run.run_id or "-")
    # The run page URL is not in the grid: it is printed whole on its own line below.
    grid.add_row("Run page", "(below)" if run.run_page_url else "-")
    shown = shown_values(job.parameters, run.parameters_sent)
    sent = ", ".join(f"{k}={v}" for k, v in shown.items()) or "(none)"
    grid.add_row("Parameters sent", safe_markup(sent))
    if run.overrides:
        overrides = shown_values(job.parameters, run.overrides)
        grid.add_row("Overrides", safe_markup(", ".join(f"{k}={v}" for k, v in overrides.items())))
    grid.add_row("Created", when(run.created_at))
    if run.executed_by:
        grid.add_row("Executed by", safe_markup(run.executed_by))
    grid.add_row("Submitted", when(run.submitted_at))
    if run.cancel_requested_at:
        by = f" by {run.cancelled_by}" if run.cancelled_by else ""
        grid.add_row("Cancel requested", safe_markup(when(run.cancel_requested_at) + by))
    grid.add_row("Ended", when(run.ended_at))
    grid.add_row("Duration", duration_text(run_duration_ms(run), nothing="-"))
    parts: list[RenderableType] = [grid]
    if run.run_page_url:
        parts.append(url_line(run.run_page_url))
    parts.append(Text())
    untracked = (
        now is not None
        and not run.is_terminal
        and (run.lease_expires_at is None or run.lease_expires_at < now)
    )
    if untracked:
        parts += [
            Text(
                f"No engine is tracking this run now, so this may be out of date: follow it "
                f"live with `polysync runs watch {run.id}`, or keep `polysync engine` running.",
                style="yellow",
            ),
            Text(),
        ]
    if run.tasks:
        parts += [Text("Tasks", style="bold underline"), tasks_table(run.tasks), Text()]
    history = _table()
    history.add_column("At", no_wrap=True)
    history.add_column("Status")
    history.add_column("Source")
    history.add_column("Message", overflow="fold")
    for event in events:
        history.add_row(
            when(event.at), status_text(event.status), event.source, safe_markup(event.message)
        )
    parts += [Text("Status history", style="bold underline"), history]
    return Group(*parts)
