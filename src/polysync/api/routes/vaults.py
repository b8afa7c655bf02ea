"""Secret Vaults (D15): register, list, show, test and remove (admin: a vault decides which
secrets the server reads and where it sends a Key Vault token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from polysync.api.deps import Admin, ServicesDep
from polysync.api.problems import Problem
from polysync.api.schemas import VaultIn, VaultOut, VaultTestOut
from polysync.domain.access import Actor
from polysync.domain.limits import MAX_NAME_CHARS
from polysync.domain.records import NewSecretVault

router = APIRouter(prefix="/api/v1/vaults", tags=["vaults"])
VaultRef = Annotated[str, Path(min_length=1, max_length=MAX_NAME_CHARS, description="Id or name.")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 403, 404, 409, 422, 503)
}


@router.get("", response_model=list[VaultOut], responses=_ERRORS)
async def list_vaults(services: ServicesDep, caller: Admin) -> list[VaultOut]:
    return [VaultOut.of(v) for v in await services.list_vaults()]


@router.post("", status_code=201, response_model=VaultOut, responses=_ERRORS)
async def create_vault(body: VaultIn, services: ServicesDep, caller: Admin) -> VaultOut:
    vault = await services.add_vault(
        NewSecretVault(
            name=body.name,
            vault_url=body.vault_url,
            auth=body.auth,
            description=body.description,
            options=body.options,
        ),
        actor=Actor.of_key(caller),
    )
    return VaultOut.of(vault)


@router.get("/{vault}", response_model=VaultOut, responses=_ERRORS)
async def read_vault(vault: VaultRef, services: ServicesDep, caller: Admin) -> VaultOut:
    return VaultOut.of(await services.get_vault(vault))


@router.post("/{vault}/test", response_model=VaultTestOut, responses=_ERRORS)
async def check_vault_connectivity(
    vault: VaultRef,
    services: ServicesDep,
    caller: Admin,
    secret: Annotated[
        str | None,
        Query(max_length=127, description="A secret to read (its value is never returned)."),
    ] = None,
) -> VaultTestOut:
    report = await services.test_vault(vault, secret)
    return VaultTestOut(
        ok=report.ok,
        vault=report.vault.name,
        vault_url=report.vault.vault_url,
        signed_in_as=report.signed_in_as,
        message=report.message,
        secret=report.secret,
        version=report.version,
    )


@router.delete("/{vault}", status_code=204, responses=_ERRORS)
async def delete_vault(vault: VaultRef, services: ServicesDep, caller: Admin) -> None:
    await services.remove_vault(vault, actor=Actor.of_key(caller))
