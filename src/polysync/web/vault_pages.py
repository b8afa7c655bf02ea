"""Secret Vault pages (D15, admin): list, add, Test connectivity, remove."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from polysync.domain.access import Role
from polysync.domain.records import NewSecretVault
from polysync.errors import PolysyncError
from polysync.services import VaultTestReport
from polysync.web.context import WebContext
from polysync.web.security import Visitor

VAULT_AUTH_LABELS = {
    "managed_identity": "Managed identity",
    "entra_service_principal": "Entra ID service principal",
    "azure_default": "Default Azure credential",
}
_FIELDS = (
    "name",
    "vault_url",
    "auth_method",
    "tenant_id",
    "client_id",
    "client_secret",
    "authority_host",
    "ca_bundle",
    "cache_ttl_s",
    "description",
)


def _auth(form: dict[str, str]) -> dict[str, Any]:
    method = form.get("auth_method", "managed_identity")
    client_id = form.get("client_id") or None
    if method == "entra_service_principal":
        auth: dict[str, Any] = {
            "method": method,
            "tenant_id": form.get("tenant_id", ""),
            "client_id": form.get("client_id", ""),
            "client_secret": form.get("client_secret", ""),
        }
        if form.get("authority_host"):
            auth["authority_host"] = form["authority_host"]
            auth["disable_instance_discovery"] = True
        return auth
    if method == "azure_default":
        return {"method": method, "managed_identity_client_id": client_id}
    return {"method": method, "client_id": client_id}


def _options(form: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if form.get("ca_bundle"):
        options["tls_ca_bundle"] = form["ca_bundle"]
    if form.get("cache_ttl_s"):
        try:
            options["cache_ttl_s"] = float(form["cache_ttl_s"])
        except ValueError:
            options["cache_ttl_s"] = form["cache_ttl_s"]  # refused by the one validation path
    return options


def vault_router(ctx: WebContext) -> APIRouter:
    router = ctx.router()
    services = ctx.services
    admin = ctx.guard(Role.ADMIN)

    async def page(
        request: Request,
        visitor: Visitor,
        *,
        status_code: int = 200,
        form: dict[str, str] | None = None,
        error: str | None = None,
        notice: str | None = None,
        report: VaultTestReport | None = None,
    ) -> Response:
        return ctx.render(
            request,
            visitor,
            "vaults.html",
            status_code=status_code,
            vaults=list(await services.list_vaults()),
            form=form or {"auth_method": "managed_identity"},
            error=error,
            notice=notice,
            report=report,
            VAULT_AUTH_LABELS=VAULT_AUTH_LABELS,
        )

    @router.get("/vaults", include_in_schema=False)
    async def vaults(request: Request, visitor: Annotated[Visitor, Depends(admin)]) -> Response:
        return await page(request, visitor)

    @router.post("/vaults", include_in_schema=False)
    async def add_vault(request: Request, visitor: Annotated[Visitor, Depends(admin)]) -> Response:
        raw = await request.form()
        form = {key: str(raw.get(key, "")).strip() for key in _FIELDS}
        try:
            vault = await services.add_vault(
                NewSecretVault(
                    name=form["name"],
                    vault_url=form["vault_url"],
                    auth=_auth(form),
                    description=form["description"],
                    options=_options(form),
                ),
                actor=visitor.actor,
            )
        except PolysyncError as exc:
            # The client secret field holds a reference, but it is never echoed back.
            return await page(
                request,
                visitor,
                status_code=422,
                form={**form, "client_secret": ""},
                error=exc.message,
            )
        return await page(request, visitor, notice=f"Secret Vault {vault.name} added.")

    @router.post("/vaults/{vault_id}/test", include_in_schema=False)
    async def test_vault(
        request: Request, vault_id: int, visitor: Annotated[Visitor, Depends(admin)]
    ) -> Response:
        raw = await request.form()
        secret = str(raw.get("secret", "")).strip() or None
        try:
            report = await services.test_vault(vault_id, secret)
        except PolysyncError as exc:
            return await page(request, visitor, status_code=422, error=exc.message)
        return await page(request, visitor, report=report)

    @router.post("/vaults/{vault_id}/delete", include_in_schema=False)
    async def remove_vault(
        request: Request, vault_id: int, visitor: Annotated[Visitor, Depends(admin)]
    ) -> Response:
        try:
            vault = await services.remove_vault(vault_id, actor=visitor.actor)
        except PolysyncError as exc:
            return await page(request, visitor, status_code=409, error=exc.message)
        return await page(request, visitor, notice=f"Secret Vault {vault.name} removed.")

    return router
