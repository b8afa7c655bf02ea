"""`polysync serve` (REST API + web UI + engine in one process) and `polysync apikey ...`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from polysync.cli.common import (
    DbOption,
    JsonOption,
    err,
    load_settings,
    out,
    print_json,
    run_async,
    session,
)
from polysync.cli.terminal import safe_markup

if TYPE_CHECKING:
    from polysync.domain.access import ApiKey

apikey_app = typer.Typer(help="API keys for the REST API and the web UI.", no_args_is_help=True)


def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    allow_insecure_http: Annotated[
        bool,
        typer.Option(
            "--allow-insecure-http",
            help="Let platforms send credentials over plain http:// to hosts other than "
            "loopback (warned at start-up and at each use). Default: refused.",
        ),
    ] = False,
) -> None:
    """Serve the REST API (/api/v1, OpenAPI at /openapi.json), the web UI and the engine.

    Workspaces must match POLYSYNC_WORKSPACE_HOSTS (default *.azuredatabricks.net; loopback is
    always allowed); see docs/security.md for the secret scope settings.
    """
    from polysync.api.server import security_warnings, server_settings
    from polysync.api.server import serve as serve_app

    settings = server_settings(load_settings(db), allow_insecure_http=allow_insecure_http)
    for warning in security_warnings(settings):
        err.print(f"[bold yellow]Warning:[/] {safe_markup(warning)}", soft_wrap=True)
    err.print(
        f"Polysync serving http://{host}:{port}  (web UI at /, API at /api/v1, docs at /docs). "
        "Create a key with `polysync apikey create NAME --role admin`.",
        soft_wrap=True,
    )
    run_async(lambda: serve_app(settings, host, port))


@apikey_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who or what the key is for, e.g. `ci-bot`.")],
    role: Annotated[
        str, typer.Option(help="viewer (reads), operator (runs, cancels), admin.")
    ] = "viewer",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key; it is printed once and stored only as a hash."""

    async def main() -> tuple[str, str, str]:
        async with session(db) as services:
            record, plaintext = await services.create_api_key(name, role)
            return record.name, record.role.value, plaintext

    key_name, key_role, plaintext = run_async(main)
    if as_json:
        print_json({"name": key_name, "role": key_role, "key": plaintext})
        return
    out.print(
        f"[green]✔[/] API key for {safe_markup(key_name)} ({key_role}). It is shown once; keep it safe:"
    )
    out.print(plaintext, soft_wrap=True, highlight=False)


@apikey_app.command("list")
def list_keys(db: DbOption = None, as_json: JsonOption = False) -> None:
    """The keys (name, role, prefix, created, revoked); never the keys themselves."""
    from polysync.cli.render import when

    async def main() -> Sequence[ApiKey]:
        async with session(db) as services:
            return await services.list_api_keys()

    keys = run_async(main)
    if as_json:
        print_json(
            [
                {
                    "id": k.id,
                    "name": k.name,
                    "role": k.role.value,
                    "prefix": k.prefix,
                    "created_at": k.created_at.isoformat(),
                    "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                }
                for k in keys
            ]
        )
        return
    table = Table("Id", "Name", "Role", "Prefix", "Created", "Revoked")
    table.columns[1].overflow = "fold"
    for column in (0, 2, 3, 4, 5):  # never cut: an id, a prefix, a time
        table.columns[column].no_wrap = True
    for k in keys:
        table.add_row(
            str(k.id),
            safe_markup(k.name),
            k.role.value,
            k.prefix,
            when(k.created_at, short=True),
            when(k.revoked_at, short=True) if k.revoked_at else "",
        )
    out.print(table)


@apikey_app.command("revoke")
def revoke(
    ref: Annotated[
        str, typer.Argument(help="The key's id, prefix (psk_...) or name.", metavar="KEY")
    ],
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Revoke a key: it stops working at once, in the API and in web sessions."""

    async def main() -> ApiKey:
        async with session(db) as services:
            return await services.revoke_api_key(ref)

    record = run_async(main)
    if json_out:
        print_json({"id": record.id, "name": record.name, "prefix": record.prefix, "revoked": True})
        return
    out.print(
        f"[green]✔[/] Revoked the API key {safe_markup(record.name)} ({record.prefix}...).",
        soft_wrap=True,
    )
