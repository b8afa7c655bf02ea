"""`polysync discover`, `polysync import` and `polysync jobs ...`: Get Pipelines, import, inspect."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from polysync.cli.as_json import discovered_json, job_json, parameter_json
from polysync.cli.common import (
    EXIT_PLATFORM,
    EXIT_USAGE,
    DbOption,
    JsonOption,
    PlatformOption,
    cli_actor,
    error_text,
    exit_code,
    fail,
    out,
    print_json,
    run_async,
    session,
    store_session,
)
from polysync.cli.render import (
    discover_summary,
    discover_table,
    import_table,
    job_view,
    jobs_table,
    parameters_table,
)
from polysync.cli.terminal import safe_markup
from polysync.domain.models import DataType, Direction
from polysync.domain.parameters import Keep, describe_diff
from polysync.lookup import find_job, find_platform

app = typer.Typer(
    help="Imported jobs: list, show, Sync Parameters, set a parameter.", no_args_is_help=True
)

PlatformArgument = Annotated[str, typer.Argument(help="Platform name.")]
JobArgument = Annotated[
    str,
    typer.Argument(help="Polysync job id, or External Id / name (with --platform).", metavar="JOB"),
]


def discover(platform: PlatformArgument, json_out: JsonOption = False, db: DbOption = None) -> None:
    """Get Pipelines: every job on the platform, classified Workflow (> 1 task) or Job."""

    async def main() -> Any:
        async with session(db) as services:
            found_on, found = await services.discover(platform)
            imported = {
                job.external_id: job.id for job in await services.store.list_jobs(found_on.id)
            }
            return found, imported

    found, imported = run_async(main)
    if json_out:
        print_json([discovered_json(job, imported.get(job.external_id)) for job in found])
        return
    out.print(discover_table(found, set(imported)))
    out.print(discover_summary(found))
    out.print(
        f"Import them: [bold]polysync import {safe_markup(platform)} --all[/] "
        f"(or --job-id ID for some).",
        soft_wrap=True,
    )


def import_(
    platform: PlatformArgument,
    job_ids: Annotated[
        list[str] | None,
        typer.Option(
            "--external-id",
            "--job-id",
            help="External Id to import (a Job Id, a notebook path, a pipeline id); repeatable.",
            metavar="ID",
        ),
    ] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Import every discovered job.")] = False,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Import jobs with their parameter schema; re-importing updates and keeps your settings."""
    if all_jobs == bool(job_ids):
        fail("Say what to import: --all, or --job-id ID (repeatable) - one of the two.")

    async def main() -> Any:
        async with session(db) as services:
            return await services.import_jobs(
                platform, None if all_jobs else job_ids, actor=cli_actor()
            )

    _, results = run_async(main)
    if json_out:
        print_json(
            [
                {
                    "external_id": r.external_id,
                    "outcome": "failed" if r.error else ("created" if r.created else "updated"),
                    "job": job_json(r.job, platform) if r.job else None,
                    "error": error_text(r.error) if r.error else None,
                }
                for r in results
            ]
        )
    else:
        imported = [r for r in results if r.job is not None]
        if imported:
            out.print(import_table(imported))
        for r in results:
            if r.error is not None:
                out.print(
                    Text.assemble(("✘ ", "red"), f"{r.external_id}: {error_text(r.error)}"),
                    soft_wrap=True,
                )
        created = sum(1 for r in imported if r.created)
        out.print(
            f"{created} created, {len(imported) - created} updated, "
            f"{len(results) - len(imported)} failed."
        )
    errors = [r.error for r in results if r.error is not None]
    if errors:
        raise typer.Exit(
            EXIT_PLATFORM if any(exit_code(e) == EXIT_PLATFORM for e in errors) else EXIT_USAGE
        )


@app.command("list")
def list_(
    platform: Annotated[
        str | None, typer.Option("--platform", help="Only this platform's jobs.")
    ] = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The imported jobs."""

    async def main() -> Any:
        async with store_session(db) as store:
            platforms = {p.id: p.name for p in await store.list_platforms()}
            platform_id = (await find_platform(store, platform)).id if platform else None
            return platforms, await store.list_jobs(platform_id)

    platforms, jobs = run_async(main)
    if json_out:
        print_json([job_json(job, platforms.get(job.platform_id)) for job in jobs])
    elif not jobs:
        out.print("No jobs imported yet: polysync discover PLATFORM, then polysync import ...")
    else:
        out.print(jobs_table(jobs, platforms))


@app.command("show")
def show(
    job: JobArgument,
    platform: PlatformOption = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """One job: General (name, Job Type, External Id, Platform) and its Parameters."""

    async def main() -> Any:
        async with store_session(db) as store:
            found = await find_job(store, job, platform)
            return found, (await store.get_platform(found.platform_id)).name

    found, platform_name = run_async(main)
    if json_out:
        print_json(job_json(found, platform_name))
    else:
        out.print(job_view(found, platform_name))


@app.command("sync-params")
def sync_params(
    job: JobArgument,
    platform: PlatformOption = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Sync Parameters: re-read the job from Databricks and report what changed."""

    async def main() -> Any:
        async with session(db) as services:
            saved, diff = await services.sync_parameters(
                await services.get_job(job, platform), actor=cli_actor()
            )
            return saved, diff, (await services.store.get_platform(saved.platform_id)).name

    saved, diff, platform_name = run_async(main)
    lines = describe_diff(diff)
    if json_out:
        print_json(
            {
                "job": job_json(saved, platform_name),
                "changed": not diff.is_empty,
                "changes": list(lines),
                "added": [parameter_json(p) for p in diff.added],
                "removed": [parameter_json(p) for p in diff.removed],
                "modified": [
                    {"name": c.name, "fields": list(c.fields), "after": parameter_json(c.new)}
                    for c in diff.changed
                ],
                "job_type_changed": [k.value for k in diff.kind_changed]
                if diff.kind_changed
                else None,
            }
        )
        return
    if diff.is_empty:
        out.print(
            f"[green]✔[/] {safe_markup(saved.name)}: parameters already match Databricks; nothing changed."
        )
        return
    out.print(f"[green]✔[/] {safe_markup(saved.name)}: parameters synced from Databricks:")
    for line in lines:
        out.print(f"  • {safe_markup(line)}", soft_wrap=True)


_DIRECTION_CHOICES = {d.value.lower(): d for d in Direction}
_DATA_TYPE_CHOICES = {t.value.lower(): t for t in DataType}


@app.command("set-param")
def set_param(
    job: JobArgument,
    parameter: Annotated[str, typer.Argument(help="Parameter name.", metavar="PARAMETER")],
    data_type: Annotated[
        str | None,
        typer.Option(
            "--data-type",
            metavar="TYPE",
            help=f"{' | '.join(t.value for t in DataType)}. Sync Parameters keeps it (D9). "
            "A Secret's value is a reference: env:NAME or file:PATH.",
            show_default=False,
        ),
    ] = None,
    direction: Annotated[
        str | None,
        typer.Option(
            "--direction",
            metavar="DIRECTION",
            help="Input | Output | Input&Output | unset (unset behaves like Input).",
            show_default=False,
        ),
    ] = None,
    value: Annotated[
        str | None,
        typer.Option(
            "--value",
            metavar="VALUE",
            help="The Job's stored value, sent unless a run overrides it; it must fit the Data "
            "Type and is kept as typed. For a Secret: env:NAME or file:PATH, never the secret.",
            show_default=False,
        ),
    ] = None,
    clear_value: Annotated[
        bool,
        typer.Option(
            "--clear-value", help="Remove the stored value (the Databricks default applies)."
        ),
    ] = False,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            metavar="TASK_KEY",
            help="The parameter's task, when its name is on several scopes.",
            show_default=False,
        ),
    ] = None,
    platform: PlatformOption = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Set a parameter's Data Type, Direction or stored value (what is not given is kept)."""
    if value is not None and clear_value:
        fail("Give --value VALUE or --clear-value, not both.")
    if data_type is None and direction is None and value is None and not clear_value:
        fail("Say what to set: --data-type, --direction, --value or --clear-value.")
    chosen_type: DataType | Keep = Keep.KEEP
    if data_type is not None:
        if data_type.strip().lower() not in _DATA_TYPE_CHOICES:
            fail(
                f"--data-type {data_type!r} is not a Data Type; use one of: "
                f"{', '.join(t.value for t in DataType)}."
            )
        chosen_type = _DATA_TYPE_CHOICES[data_type.strip().lower()]
    chosen_direction: Direction | Keep | None = Keep.KEEP
    if direction is not None:
        key = direction.strip().lower()
        if key != "unset" and key not in _DIRECTION_CHOICES:
            fail(
                f"--direction {direction!r} is not a Direction; use one of: Input, Output, "
                "Input&Output, unset."
            )
        chosen_direction = None if key == "unset" else _DIRECTION_CHOICES[key]
    stored: str | Keep | None = None if clear_value else (Keep.KEEP if value is None else value)

    async def main() -> Any:
        async with session(db) as services:
            found = await services.get_job(job, platform)
            saved = await services.set_parameter(
                found,
                parameter,
                task_key=task if task is not None else Keep.KEEP,
                data_type=chosen_type,
                direction=chosen_direction,
                stored_value=stored,
                actor=cli_actor(),
            )
            return saved, (await services.store.get_platform(saved.platform_id)).name

    saved, platform_name = run_async(main)
    changed = [
        p for p in saved.parameters if p.name == parameter and (task is None or p.task_key == task)
    ]
    if json_out:
        print_json({"job": job_json(saved, platform_name), "parameter": parameter_json(changed[0])})
        return
    out.print(
        f"[green]✔[/] {safe_markup(saved.name)}: parameter {safe_markup(parameter)} saved.",
        soft_wrap=True,
    )
    out.print(parameters_table(changed))
