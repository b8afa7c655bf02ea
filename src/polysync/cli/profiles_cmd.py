"""`polysync profiles ...`: contention profiles (D14) - create, list, show, edit, delete, link,
unlink. Values are checked by the one validation of the use cases (exit 2 with the field named)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import RenderableType
from rich.table import Table

from polysync.cli.as_json import json_object
from polysync.cli.common import (
    DbOption,
    JsonOption,
    cli_actor,
    confirm_or_exit,
    fail,
    out,
    print_json,
    run_async,
    session,
)
from polysync.cli.render import _field_grid, _table
from polysync.cli.terminal import safe_markup
from polysync.domain.contention import ContentionProfile, ProfileType
from polysync.profiles import counter_fields
from polysync.shapes import profile_fields

if TYPE_CHECKING:
    from polysync.services import Services

app = typer.Typer(
    help="Contention profiles: cap the runs started on platforms (concurrency or rate).",
    no_args_is_help=True,
)

RefArgument = Annotated[str, typer.Argument(help="Profile name or id.")]
PlatformOption = Annotated[
    list[str] | None,
    typer.Option("--platform", "-P", help="A platform (name or id) to link; repeat for more."),
]
TaskOption = Annotated[
    list[str] | None, typer.Option("--task", help="A Task id to link; repeat for more.")
]
TypeOption = Annotated[
    str, typer.Option("--type", "-t", help="concurrency or rate (fixed once created).")
]
MaxConcurrent = Annotated[
    str | None, typer.Option("--max-concurrent", help="Concurrency: runs active at once.")
]
Limit = Annotated[str | None, typer.Option("--limit", help="Rate: starts per window.")]
WindowS = Annotated[
    str | None,
    typer.Option("--window-s", help="Rate: the window in seconds; concurrency: Defer's window."),
]
Algorithm = Annotated[
    str | None, typer.Option("--algorithm", help="token-bucket (bursts) or leaky-bucket (smooth).")
]
Scope = Annotated[
    str | None,
    typer.Option("--scope", help="per-platform (a counter per platform; default) or global."),
]
QueueSize = Annotated[str | None, typer.Option("--queue-size-limit", help="Runs that may wait.")]
QueueTimeout = Annotated[
    str | None, typer.Option("--queue-timeout-s", help="Waits longer than this fail.")
]
Exceed = Annotated[
    str | None, typer.Option("--exceed-action", help="queue (default), reject or defer.")
]
Description = Annotated[str | None, typer.Option("--description", help="What it is for.")]


def _fields(**given: Any) -> dict[str, Any]:
    return {key: value for key, value in given.items() if value is not None}


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The profile's name.")],
    type_: TypeOption,
    max_concurrent: MaxConcurrent = None,
    limit: Limit = None,
    window_s: WindowS = None,
    algorithm: Algorithm = None,
    scope: Scope = None,
    queue_size_limit: QueueSize = None,
    queue_timeout_s: QueueTimeout = None,
    exceed_action: Exceed = None,
    description: Description = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    platform: PlatformOption = None,
    task: TaskOption = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Create a profile, linked to the platforms given."""
    fields = _fields(
        name=name,
        type=type_,
        max_concurrent=max_concurrent,
        limit=limit,
        window_s=window_s,
        algorithm=algorithm,
        scope=scope,
        queue_size_limit=queue_size_limit,
        queue_timeout_s=queue_timeout_s,
        exceed_action=exceed_action,
        description=description,
    ) | ({"enabled": False} if disabled else {})

    async def main() -> Any:
        async with session(db) as services:
            profile = await services.profiles.create(
                fields, platforms=platform or [], tasks=task or [], actor=cli_actor()
            )
            return profile, await _names(services)

    profile, names = run_async(main)
    _print_one(profile, names, json_out, done="Created")


@app.command("list")
def list_(json_out: JsonOption = False, db: DbOption = None) -> None:
    """Every contention profile."""

    async def main() -> Any:
        async with session(db) as services:
            return await services.profiles.all(), await _names(services)

    profiles, names = run_async(main)
    if json_out:
        print_json([json_object(profile_fields(p)) for p in profiles])
    elif not profiles:
        out.print(
            "No contention profiles yet. Create one: polysync profiles create NAME --type "
            "concurrency --max-concurrent 5 --platform PLATFORM"
        )
    else:
        out.print(profiles_table(profiles, names))


@app.command("show")
def show(ref: RefArgument, json_out: JsonOption = False, db: DbOption = None) -> None:
    """One profile: its settings and links."""

    async def main() -> Any:
        async with session(db) as services:
            uses = services.profiles
            profile = await uses.get(ref)
            return profile, await _names(services), await uses.usage(profile)

    profile, names, usage = run_async(main)
    if json_out:
        print_json(
            json_object(profile_fields(profile)) | {"now": [counter_fields(c) for c in usage]}
        )
        return
    out.print(profile_view(profile, names))
    for counter in usage:
        out.print(f"Now  {safe_markup(counter.text)}", soft_wrap=True)


@app.command("edit")
def edit(
    ref: RefArgument,
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    max_concurrent: MaxConcurrent = None,
    limit: Limit = None,
    window_s: WindowS = None,
    algorithm: Algorithm = None,
    scope: Scope = None,
    queue_size_limit: QueueSize = None,
    queue_timeout_s: QueueTimeout = None,
    exceed_action: Exceed = None,
    description: Description = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Turn it on or off.")
    ] = None,
    no_queue_size_limit: Annotated[
        bool, typer.Option("--no-queue-size-limit", help="Remove the Queue Size Limit.")
    ] = False,
    no_queue_timeout: Annotated[
        bool, typer.Option("--no-queue-timeout", help="Remove the Queue Timeout.")
    ] = False,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Change the settings given (the type cannot change); applies at once, no restart."""
    fields = _fields(
        name=name,
        max_concurrent=max_concurrent,
        limit=limit,
        window_s=window_s,
        algorithm=algorithm,
        scope=scope,
        queue_size_limit=queue_size_limit,
        queue_timeout_s=queue_timeout_s,
        exceed_action=exceed_action,
        description=description,
        enabled=enabled,
    )
    if no_queue_size_limit:
        fields["queue_size_limit"] = None
    if no_queue_timeout:
        fields["queue_timeout_s"] = None
    if not fields:
        fail("Nothing to change: give at least one option (see --help).")

    async def main() -> Any:
        async with session(db) as services:
            profile = await services.profiles.edit(ref, fields, actor=cli_actor())
            return profile, await _names(services)

    profile, names = run_async(main)
    _print_one(profile, names, json_out, done="Saved")


@app.command("delete")
def delete(
    ref: RefArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Delete a profile; runs waiting on it are looked at again at once."""

    async def find() -> ContentionProfile:
        async with session(db) as services:
            return await services.profiles.get(ref)

    profile = run_async(find)
    if not yes:
        confirm_or_exit("Delete", f"contention profile {profile.name!r}")

    async def main() -> None:
        async with session(db) as services:
            await services.profiles.delete(profile.id, actor=cli_actor())

    run_async(main)
    if json_out:
        print_json({"deleted": json_object(profile_fields(profile))})
    else:
        out.print(f"[green]✔[/] Deleted contention profile {safe_markup(profile.name)!r}.")


def _link(
    ref: str,
    platform: Sequence[str],
    task: Sequence[str],
    unlink: bool,
    json_out: bool,
    db: str | None,
) -> None:
    async def main() -> Any:
        async with session(db) as services:
            profile = await services.profiles.link(
                ref, platforms=platform, tasks=task, unlink=unlink, actor=cli_actor()
            )
            return profile, await _names(services)

    profile, names = run_async(main)
    _print_one(profile, names, json_out, done="Unlinked" if unlink else "Linked")


@app.command("link")
def link(
    ref: RefArgument,
    platform: PlatformOption = None,
    task: TaskOption = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Link platforms (and Tasks): their runs must then satisfy this profile."""
    _link(ref, platform or [], task or [], False, json_out, db)


@app.command("unlink")
def unlink(
    ref: RefArgument,
    platform: PlatformOption = None,
    task: TaskOption = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Unlink platforms (and Tasks)."""
    _link(ref, platform or [], task or [], True, json_out, db)


# ------------------------------------------------------------------ rendering


async def _names(services: Services) -> dict[int, str]:
    return {p.id: p.name for p in await services.store.list_platforms()}


def _print_one(
    profile: ContentionProfile, names: Mapping[int, str], json_out: bool, *, done: str = ""
) -> None:
    if json_out:
        print_json(json_object(profile_fields(profile)))
        return
    if done:
        out.print(f"[green]✔[/] {done} contention profile {safe_markup(profile.name)!r}.")
    out.print(profile_view(profile, names))


def limit_text(profile: ContentionProfile) -> str:
    """ "5 running at once" or "10 per 60 s (token bucket)"."""
    s = profile.settings
    if s.type is ProfileType.CONCURRENCY:
        return f"{s.max_concurrent} running at once"
    return f"{s.limit} per {s.window_s:g} s ({s.algorithm.value.replace('_', ' ')})"


def _platforms(profile: ContentionProfile, names: Mapping[int, str]) -> str:
    return ", ".join(names.get(i, f"id {i}") for i in profile.platform_ids) or "-"


def profiles_table(profiles: Sequence[ContentionProfile], names: Mapping[int, str]) -> Table:
    table = _table()
    table.add_column("Name", overflow="fold")
    for header in ("Type", "Limit", "Scope", "Exceed", "Enabled"):
        table.add_column(header, no_wrap=header != "Limit")
    table.add_column("Platforms", overflow="fold")
    table.add_column("Id", no_wrap=True)
    for p in profiles:
        s = p.settings
        table.add_row(
            safe_markup(p.name),
            s.type.value,
            limit_text(p),
            s.scope.value.replace("_", "-"),
            s.exceed_action.value,
            "yes" if s.enabled else "no",
            safe_markup(_platforms(p, names)),
            str(p.id),
        )
    return table


def profile_view(profile: ContentionProfile, names: Mapping[int, str]) -> RenderableType:
    s = profile.settings
    grid = _field_grid()
    rows = [
        ("Name", safe_markup(s.name)),
        ("Id", str(profile.id)),
        ("Type", s.type.value),
        ("Enabled", "yes" if s.enabled else "no"),
        ("Scope", s.scope.value.replace("_", "-")),
        ("Limit", limit_text(profile)),
        ("Exceed Action", s.exceed_action.value),
        ("Queue Size Limit", str(s.queue_size_limit or "none")),
        ("Queue Timeout", f"{s.queue_timeout_s:g} s" if s.queue_timeout_s else "none"),
        ("Platforms", safe_markup(_platforms(profile, names))),
        ("Tasks", ", ".join(str(t) for t in profile.task_ids) or "-"),
    ]
    if s.description:
        rows.append(("Description", safe_markup(s.description)))
    for label, value in rows:
        grid.add_row(label, value)
    return grid
