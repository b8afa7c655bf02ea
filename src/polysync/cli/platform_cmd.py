"""`polysync platform ...`: register, list, show, test and remove Azure Databricks workspaces."""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from polysync.cli.as_json import platform_json
from polysync.cli.common import (
    EXIT_USAGE,
    DbOption,
    JsonOption,
    cli_actor,
    confirm_or_exit,
    fail,
    out,
    print_json,
    run_async,
    session,
    store_session,
)
from polysync.cli.render import platform_view, platforms_table, plural
from polysync.cli.terminal import safe_markup
from polysync.databricks.settings import ApiVersions
from polysync.domain.records import PLATFORM_ATTRIBUTES, NewPlatform, Platform
from polysync.errors import SecretReferenceError
from polysync.lookup import find_platform
from polysync.presentation import AUTH_LABELS
from polysync.secrets import SecretReference

app = typer.Typer(help="Azure Databricks workspaces Polysync connects to.", no_args_is_help=True)


class AuthChoice(StrEnum):
    PAT = "pat"
    SERVICE_PRINCIPAL = "service-principal"
    MANAGED_IDENTITY = "managed-identity"
    AZURE_DEFAULT = "azure-default"
    OAUTH_M2M = "oauth-m2m"


class ApiVersionChoice(StrEnum):
    V2_0 = "2.0"
    V2_1 = "2.1"
    V2_2 = "2.2"


# Which flags each method takes; any other auth flag given with it is a mistake worth saying.
_AUTH_FLAGS: dict[AuthChoice, tuple[set[str], set[str]]] = {
    # method: (required, optional)
    AuthChoice.PAT: ({"--token"}, set()),
    AuthChoice.SERVICE_PRINCIPAL: (
        {"--tenant-id", "--client-id", "--client-secret"},
        {"--authority-host", "--disable-instance-discovery"},
    ),
    AuthChoice.MANAGED_IDENTITY: (set(), {"--client-id"}),
    AuthChoice.AZURE_DEFAULT: (set(), {"--client-id"}),
    AuthChoice.OAUTH_M2M: ({"--client-id", "--client-secret"}, set()),
}


def secret_reference(flag: str, value: str) -> str:
    """The reference in `value`, or exit 2 without ever repeating `value` (it may be a secret)."""
    try:
        return str(SecretReference.parse(value))
    except SecretReferenceError as exc:
        if value.strip().startswith(("env:", "file:", "vault:")):  # a reference, incomplete
            fail(f"{flag}: {exc.message}.", EXIT_USAGE)
        fail(
            f"{flag} takes a secret reference, not a secret: write `env:NAME` to read the "
            f"environment variable NAME, `file:PATH` to read the file at PATH, or "
            f"`vault://VAULT/SECRET` to read a Secret Vault's secret (the value given "
            f"is not shown). Polysync never stores a secret, and one typed on a command line ends "
            f"up in your shell history: e.g. `export DATABRICKS_TOKEN=...` then "
            f"`{flag} env:DATABRICKS_TOKEN`.",
            EXIT_USAGE,
        )


def auth_fields(
    method: AuthChoice, given: dict[str, Any], command: str = "platform add"
) -> dict[str, Any]:
    """The platform's (or with `command` "vaults add", a Secret Vault's) `auth` mapping for
    `method` from the flags given (None = not given); exit 2 naming a missing or stray flag."""
    present = {flag for flag, value in given.items() if value not in (None, False)}
    required, optional = _AUTH_FLAGS[method]
    missing = sorted(required - present)
    if missing:
        fail(
            f"--auth {method} needs {', '.join(missing)}. "
            f"See `polysync {command} --help` for each method's flags."
        )
    unused = sorted(present - required - optional)
    if unused:
        fail(f"{', '.join(unused)} does not apply to --auth {method}; remove it.")
    if method is AuthChoice.PAT:
        return {"method": "pat", "token": secret_reference("--token", given["--token"])}
    if method is AuthChoice.SERVICE_PRINCIPAL:
        auth: dict[str, Any] = {
            "method": "entra_service_principal",
            "tenant_id": given["--tenant-id"],
            "client_id": given["--client-id"],
            "client_secret": secret_reference("--client-secret", given["--client-secret"]),
        }
        if given["--authority-host"]:
            auth["authority_host"] = given["--authority-host"]
        if given["--disable-instance-discovery"]:
            auth["disable_instance_discovery"] = True
        return auth
    if method is AuthChoice.MANAGED_IDENTITY:
        return {"method": "managed_identity", "client_id": given["--client-id"]}
    if method is AuthChoice.AZURE_DEFAULT:
        return {"method": "azure_default", "managed_identity_client_id": given["--client-id"]}
    return {
        "method": "databricks_oauth_m2m",
        "client_id": given["--client-id"],
        "client_secret": secret_reference("--client-secret", given["--client-secret"]),
    }


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A name for the platform, e.g. `prod`.")],
    url: Annotated[
        str,
        typer.Option(
            "--url", help="Workspace URL, e.g. https://adb-1234567890123456.7.azuredatabricks.net"
        ),
    ],
    auth: Annotated[AuthChoice, typer.Option("--auth", help="Authentication method.")] = (
        AuthChoice.PAT
    ),
    token: Annotated[
        str | None,
        typer.Option(help="PAT: secret reference env:NAME or file:PATH.", show_default=False),
    ] = None,
    tenant_id: Annotated[
        str | None, typer.Option(help="Service principal: Entra tenant id.", show_default=False)
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option(
            help="Service principal / OAuth M2M: client id; managed identity / azure-default: "
            "the user-assigned identity's client id.",
            show_default=False,
        ),
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(
            help="Service principal / OAuth M2M: secret reference env:NAME or file:PATH.",
            show_default=False,
        ),
    ] = None,
    authority_host: Annotated[
        str | None,
        typer.Option(
            help="Service principal: Entra authority (sovereign clouds, the emulator).",
            show_default=False,
        ),
    ] = None,
    disable_instance_discovery: Annotated[
        bool,
        typer.Option(
            "--disable-instance-discovery",
            help="Service principal: trust an authority host Microsoft does not know.",
        ),
    ] = False,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            help="CA certificates to trust for HTTPS (a TLS proxy, the emulator's CA).",
            show_default=False,
        ),
    ] = None,
    api_version_list: Annotated[
        ApiVersionChoice | None,
        typer.Option(
            help="Jobs API version of jobs/list (default "
            f"{ApiVersions.model_fields['jobs_list'].default}, see docs/decisions.md D5).",
            show_default=False,
        ),
    ] = None,
    cluster_id: Annotated[str | None, typer.Option(show_default=False)] = None,
    description: Annotated[str, typer.Option()] = "",
    attribute: Annotated[
        list[str] | None,
        typer.Option(
            "--attribute",
            help="A platform attribute KEY=VALUE, repeatable (e.g. default_notebook_path=/Shared, "
            "spark_version=..., node_type_id=..., num_workers=2, instance_pool_id=..., "
            "serverless=true: docs/job-types.md).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Register a workspace. Secrets are given as references (env:NAME, file:PATH), never values."""
    fields = auth_fields(
        auth,
        {
            "--token": token,
            "--tenant-id": tenant_id,
            "--client-id": client_id,
            "--client-secret": client_secret,
            "--authority-host": authority_host,
            "--disable-instance-discovery": disable_instance_discovery,
        },
    )
    options: dict[str, Any] = {}
    if ca_bundle is not None:
        if not ca_bundle.is_file():
            fail(f"--ca-bundle {ca_bundle}: no such file. Give the path of a PEM CA bundle.")
        options["tls_ca_bundle"] = str(ca_bundle.resolve())
    if api_version_list is not None:
        options["api_versions"] = {"jobs_list": api_version_list.value}
    if attribute:
        options[PLATFORM_ATTRIBUTES] = parse_attributes(attribute)
    new = NewPlatform(
        name=name,
        workspace_url=url,
        auth={k: v for k, v in fields.items() if v is not None},
        cluster_id=cluster_id,
        description=description,
        options=options,
    )

    async def main() -> Any:
        async with session(db) as services:
            return await services.add_platform(new, actor=cli_actor())

    platform = run_async(main)
    if json_out:
        print_json(platform_json(platform))
        return
    out.print(
        f"[green]✔[/] Platform [bold]{platform.name}[/] added: {platform.workspace_url} "
        f"({AUTH_LABELS.get(platform.auth_method, platform.auth_method)}).",
        soft_wrap=True,
    )
    out.print(f"  Next: [bold]polysync platform test {platform.name}[/]", soft_wrap=True)


def parse_attributes(pairs: list[str]) -> dict[str, str]:
    """KEY=VALUE pairs (the value may contain '='); exits 2 naming a pair without '='."""
    attributes: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--attribute {pair!r}: expected KEY=VALUE, e.g. default_notebook_path=/Shared.")
        attributes[key.strip()] = value.strip()
    return attributes


@app.command("attributes")
def attributes(
    name: Annotated[str, typer.Argument(help="Platform name.")],
    pairs: Annotated[
        list[str] | None, typer.Argument(help="KEY=VALUE attributes to set.", show_default=False)
    ] = None,
    unset: Annotated[
        list[str] | None,
        typer.Option("--unset", help="An attribute to remove, repeatable.", show_default=False),
    ] = None,
    db: DbOption = None,
) -> None:
    """Show or change a platform's attributes: what job types read (a notebook run's compute,
    the Default Notebook Path of discovery, ...)."""
    changes = parse_attributes(pairs or [])

    async def main() -> Platform:
        async with session(db) as services:
            platform = await services.store.get_platform(name)
            if not changes and not unset:
                return platform
            current = dict(platform.attributes)
            current.update(changes)
            for key in unset or []:
                current.pop(key, None)
            options = {**platform.options, PLATFORM_ATTRIBUTES: current}
            return await services.update_platform(
                replace(platform, options=options), actor=cli_actor()
            )

    platform = run_async(main)
    if not platform.attributes:
        out.print(f"Platform [bold]{name}[/] has no attributes.")
    for key, value in sorted(platform.attributes.items()):
        out.print(f"{key} = {value}", markup=False, highlight=False)


@app.command("list")
def list_(json_out: JsonOption = False, db: DbOption = None) -> None:
    """The registered platforms."""

    async def main() -> Any:
        async with store_session(db) as store:
            return await store.list_platforms()

    platforms = run_async(main)
    if json_out:
        print_json([platform_json(p) for p in platforms])
    elif not platforms:
        out.print("No platforms yet. Add one: polysync platform add NAME --url URL --token env:VAR")
    else:
        out.print(platforms_table(platforms))


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Platform name.")],
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """One platform: URL, authentication (secret references only), options."""

    async def main() -> Any:
        async with store_session(db) as store:
            platform = await find_platform(store, name)
            return platform, len(await store.list_jobs(platform.id))

    platform, job_count = run_async(main)
    if json_out:
        print_json(platform_json(platform) | {"jobs": job_count})
    else:
        out.print(platform_view(platform, job_count))


@app.command("test")
def check_connectivity(
    name: Annotated[str, typer.Argument(help="Platform name.")],
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Test connectivity: one authenticated jobs/list call (exit 3 if Databricks refuses)."""

    async def main() -> Any:
        async with session(db) as services:
            return await services.test_platform(name)

    report = run_async(main)
    if json_out:
        print_json(
            {
                "platform": name,
                "ok": True,
                "workspace_url": report.workspace_url,
                "auth_method": report.auth_method,
                "principal": report.principal,
                "workspace_id": report.workspace_id,
                "api_version": report.api_version,
                "jobs_visible": report.jobs_visible,
            }
        )
        return
    who = f" as {report.principal}" if report.principal else ""
    workspace = f" (workspace {report.workspace_id})" if report.workspace_id else ""
    jobs = "jobs are visible" if report.jobs_visible else "no jobs visible to this identity"
    out.print(
        f"[green]✔[/] Connected to {report.workspace_url}{workspace} with "
        f"{report.auth_method}{who}: jobs/list (API {report.api_version}) answered; {jobs}.",
        soft_wrap=True,
        markup=True,
    )


@app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="Platform name (or id).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Remove a platform with its imported jobs and their run history."""

    async def find() -> Any:
        async with store_session(db) as store:
            platform = await find_platform(store, name)
            return platform, len(await store.list_jobs(platform.id))

    platform, job_count = run_async(find)  # a platform that does not exist is said first
    what = f"platform {platform.name!r} with its {plural(job_count, 'imported job')} and their runs"
    if not yes:
        confirm_or_exit("Remove", what)

    async def main() -> None:
        async with session(db) as services:
            await services.remove_platform(platform.id, actor=cli_actor())

    run_async(main)
    if json_out:
        print_json({"removed": platform_json(platform), "jobs_removed": job_count})
    else:
        out.print(f"[green]✔[/] Removed {safe_markup(what)}.", soft_wrap=True)
