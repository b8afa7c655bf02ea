"""`polysync vaults ...`: register, list, show, test and remove Secret Vaults (D15)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from polysync.cli.as_json import vault_json
from polysync.cli.common import (
    EXIT_PLATFORM,
    DbOption,
    JsonOption,
    cli_actor,
    confirm_or_exit,
    err,
    out,
    print_json,
    run_async,
    session,
)
from polysync.cli.platform_cmd import AuthChoice, auth_fields
from polysync.domain.records import NewSecretVault, SecretVault

app = typer.Typer(
    help="Secret Vaults: Azure Key Vaults that vault://VAULT/SECRET references are read from.",
    no_args_is_help=True,
)

AUTH_LABELS = {
    "managed_identity": "managed identity",
    "entra_service_principal": "Entra ID service principal",
    "azure_default": "default Azure credential",
}


class VaultAuthChoice(StrEnum):
    MANAGED_IDENTITY = "managed-identity"
    SERVICE_PRINCIPAL = "service-principal"
    AZURE_DEFAULT = "azure-default"


def vault_auth(
    method: VaultAuthChoice,
    tenant_id: str | None,
    client_id: str | None,
    client_secret: str | None,
    authority_host: str | None,
    disable_instance_discovery: bool,
) -> dict[str, Any]:
    """The vault's `auth` mapping from the flags (exit 2 for a missing or a stray flag): the
    platform's service principal, managed identity and azure-default methods (`auth_fields`).
    An empty value counts as not given."""
    given = {
        "--tenant-id": tenant_id or None,
        "--client-id": client_id or None,
        "--client-secret": client_secret or None,
        "--authority-host": authority_host or None,
        "--disable-instance-discovery": disable_instance_discovery,
    }
    return auth_fields(AuthChoice(method.value), given, command="vaults add")


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Its name in references: vault://NAME/SECRET.")],
    url: Annotated[str, typer.Option("--url", help="https://<vault>.vault.azure.net")],
    auth: Annotated[
        VaultAuthChoice, typer.Option("--auth", help="How Polysync signs in to the vault.")
    ] = VaultAuthChoice.MANAGED_IDENTITY,
    tenant_id: Annotated[
        str | None, typer.Option(help="Service principal: Entra tenant id.", show_default=False)
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option(
            help="Service principal: client id; managed identity / azure-default: the "
            "user-assigned identity's client id.",
            show_default=False,
        ),
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(
            help="Service principal: secret reference env:NAME or file:PATH.", show_default=False
        ),
    ] = None,
    authority_host: Annotated[
        str | None,
        typer.Option(help="Service principal: Entra authority (the emulator).", show_default=False),
    ] = None,
    disable_instance_discovery: Annotated[
        bool,
        typer.Option(
            "--disable-instance-discovery",
            help="Service principal: trust an authority host Microsoft does not know.",
        ),
    ] = False,
    verify_challenge_resource: Annotated[
        bool | None,
        typer.Option(
            "--verify-challenge-resource/--no-verify-challenge-resource",
            help="Check that Key Vault's challenge names the vault's host (default: on, off "
            "for a vault on loopback such as the emulator).",
            show_default=False,
        ),
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(help="CA certificates to trust (the emulator's CA).", show_default=False),
    ] = None,
    cache_ttl_s: Annotated[
        float | None,
        typer.Option(
            "--cache-ttl",
            help="Seconds a secret read is reused (0-3600, default 60).",
            show_default=False,
        ),
    ] = None,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Register an Azure Key Vault; platforms and Secret parameters then name its secrets as
    vault://NAME/SECRET (or vault://NAME/SECRET/VERSION). Nothing is read from it until one
    is used."""
    options: dict[str, Any] = {}
    if verify_challenge_resource is not None:
        options["verify_challenge_resource"] = verify_challenge_resource
    if ca_bundle is not None:
        options["tls_ca_bundle"] = str(ca_bundle.expanduser().absolute())
    if cache_ttl_s is not None:
        options["cache_ttl_s"] = cache_ttl_s
    new = NewSecretVault(
        name=name,
        vault_url=url,
        auth=vault_auth(
            auth, tenant_id, client_id, client_secret, authority_host, disable_instance_discovery
        ),
        description=description,
        options=options,
    )

    async def main() -> SecretVault:
        async with session(db) as services:
            return await services.add_vault(new, actor=cli_actor())

    vault = run_async(main)
    if json_out:
        print_json(vault_json(vault))
        return
    out.print(
        f"[green]✔[/] Secret Vault [bold]{vault.name}[/] added: {vault.vault_url} "
        f"({AUTH_LABELS.get(vault.auth_method, vault.auth_method)}).",
        soft_wrap=True,
    )
    out.print(
        f"  Next: [bold]polysync vaults test {vault.name}[/], then use "
        f"[bold]vault://{vault.name}/SECRET[/] as a token or client secret.",
        soft_wrap=True,
    )


@app.command("list")
def list_(json_out: JsonOption = False, db: DbOption = None) -> None:
    """The registered Secret Vaults."""

    async def main() -> Any:
        async with session(db) as services:
            return await services.list_vaults()

    vaults = run_async(main)
    if json_out:
        print_json([vault_json(v) for v in vaults])
        return
    if not vaults:
        out.print("No Secret Vaults yet. Add one: polysync vaults add NAME --url URL")
        return
    table = Table("Id", "Name", "Vault URL", "Auth", "Reference")
    for vault in vaults:
        table.add_row(
            str(vault.id),
            vault.name,
            vault.vault_url,
            AUTH_LABELS.get(vault.auth_method, vault.auth_method),
            f"vault://{vault.name}/SECRET",
        )
    out.print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Vault name or id.")],
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """One Secret Vault: URL, sign-in (a secret reference only), options."""

    async def main() -> SecretVault:
        async with session(db) as services:
            return await services.get_vault(name)

    vault = run_async(main)
    if json_out:
        print_json(vault_json(vault))
        return
    rows = [
        ("Name", vault.name),
        ("Provider", vault.provider),
        ("Vault URL", vault.vault_url),
        ("Auth", AUTH_LABELS.get(vault.auth_method, vault.auth_method)),
        *((key, str(value)) for key, value in vault.auth.items() if key != "method"),
        *((key, str(value)) for key, value in vault.options.items()),
        ("Reference", f"vault://{vault.name}/SECRET[/VERSION]"),
        ("Description", vault.description),
    ]
    for label, value in rows:
        out.print(f"{label}: {value}", markup=False, highlight=False)


@app.command("test")
def check_connectivity(
    name: Annotated[str, typer.Argument(help="Vault name or id.")],
    secret: Annotated[
        str | None,
        typer.Option(help="A secret to read (its value is never shown).", show_default=False),
    ] = None,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Test connectivity: sign in and read a secret (exit 3 when the vault refuses)."""

    async def main() -> Any:
        async with session(db) as services:
            return await services.test_vault(name, secret)

    report = run_async(main)
    if json_out:
        print_json(
            {
                "ok": report.ok,
                "vault": report.vault.name,
                "vault_url": report.vault.vault_url,
                "signed_in_as": report.signed_in_as,
                "message": report.message,
                "secret": report.secret,
                "version": report.version,
            }
        )
    elif report.ok:
        out.print(
            f"[green]✔[/] {report.vault.vault_url} as {report.signed_in_as}: ", soft_wrap=True
        )
        out.print(report.message, markup=False, highlight=False, soft_wrap=True)
    else:
        err.print(f"✘ {report.vault.vault_url}: {report.message}", markup=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(EXIT_PLATFORM)


@app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="Vault name or id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Remove a Secret Vault (refused while a platform's credentials name it)."""
    if not yes:
        confirm_or_exit("Remove", f"Secret Vault {name!r}")

    async def main() -> SecretVault:
        async with session(db) as services:
            return await services.remove_vault(name, actor=cli_actor())

    vault = run_async(main)
    if json_out:
        print_json({"removed": vault_json(vault)})
    else:
        out.print(f"Secret Vault [bold]{vault.name}[/] removed.")
