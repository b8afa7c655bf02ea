"""Reads one Azure Key Vault's secrets with azure-keyvault-secrets' aio client and azure-identity.

Both run on azure-core's AsyncioRequestsTransport (requests in the loop's executor): nothing
here blocks the event loop, and no aiohttp is needed. Every failure becomes a
SecretReferenceError naming the reference and Key Vault's answer - never a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from polysync.databricks.errors import redact
from polysync.errors import SecretReferenceError
from polysync.secrets import SecretReference, SecretScope
from polysync.vaults.settings import (
    KeyVaultSettings,
    VaultDefaultCredential,
    VaultManagedIdentity,
    VaultServicePrincipal,
)

CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 30
RETRIES = 2
PROBE_SECRET = "polysync-connectivity-probe"  # noqa: S105 - a secret name, not a secret
"""What Test connectivity reads when no secret is named: a 404 proves sign-in and permission."""


@dataclass(frozen=True, slots=True)
class SecretRead:
    """A secret as read (the value stays in memory only; `version` is safe to show)."""

    value: str
    version: str | None
    enabled: bool | None


def describe_auth(settings: KeyVaultSettings) -> str:
    """Who signs in to the vault, for messages (never a secret)."""
    auth = settings.auth
    if isinstance(auth, VaultServicePrincipal):
        return f"Entra ID service principal {auth.client_id}"
    if isinstance(auth, VaultManagedIdentity):
        return f"managed identity {auth.client_id}" if auth.client_id else "managed identity"
    return "default Azure credential"


class KeyVaultReader:
    """One vault's aio SecretClient and credential, built at the first read."""

    def __init__(self, name: str, settings: KeyVaultSettings, scope: SecretScope) -> None:
        self.name = name
        self.settings = settings
        self._scope = scope
        self._client: Any = None
        self._credential: Any = None

    def _transport(self) -> Any:
        from azure.core.pipeline.transport import AsyncioRequestsTransport

        options: dict[str, Any] = {
            "connection_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": READ_TIMEOUT_S,
        }
        if self.settings.tls_ca_bundle is not None:
            options["connection_verify"] = str(self.settings.tls_ca_bundle)
        return AsyncioRequestsTransport(**options)

    async def _credential_for(self) -> Any:
        from azure.identity.aio import (
            ClientSecretCredential,
            DefaultAzureCredential,
            ManagedIdentityCredential,
        )

        auth = self.settings.auth
        transport = self._transport()
        if isinstance(auth, VaultServicePrincipal):
            secret = await SecretReference.parse(auth.client_secret, self._scope).resolve_async()
            return ClientSecretCredential(
                auth.tenant_id,
                auth.client_id,
                secret.get_secret_value(),
                authority=auth.authority_host,
                disable_instance_discovery=auth.disable_instance_discovery,
                transport=transport,
            )
        if isinstance(auth, VaultManagedIdentity):
            return ManagedIdentityCredential(client_id=auth.client_id, transport=transport)
        assert isinstance(auth, VaultDefaultCredential)
        return DefaultAzureCredential(
            managed_identity_client_id=auth.managed_identity_client_id, transport=transport
        )

    async def _secret_client(self) -> Any:
        if self._client is None:
            from azure.keyvault.secrets.aio import SecretClient

            try:
                self._credential = await self._credential_for()
            except ValueError as exc:  # azure-identity validates tenant ids and authority URLs
                raise SecretReferenceError(
                    f"Secret Vault {self.name!r}: its sign-in settings are refused: "
                    f"{_first_line(exc)}"
                ) from None
            self._client = SecretClient(
                self.settings.url,
                self._credential,
                verify_challenge_resource=self.settings.verifies_challenge,
                transport=self._transport(),
                retry_total=RETRIES,
            )
        return self._client

    async def get(self, secret: str, version: str | None, *, what: str) -> SecretRead:
        """The secret `secret` (its latest version unless `version`); `what` names it in
        messages (the reference). SecretReferenceError on any failure."""
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
        )

        client = await self._secret_client()
        try:
            found = await client.get_secret(secret, version)
        except ResourceNotFoundError as exc:
            raise SecretReferenceError(
                f"{what}: Key Vault {self.settings.url} has no such secret ({_answer(exc)})"
            ) from None
        except ClientAuthenticationError as exc:
            raise SecretReferenceError(
                f"{what}: cannot sign in to Key Vault {self.settings.url} as the "
                f"{describe_auth(self.settings)}: {_first_line(exc)}"
            ) from None
        except HttpResponseError as exc:
            raise SecretReferenceError(
                f"{what}: Key Vault {self.settings.url} refused the read ({_answer(exc)})"
            ) from None
        except ServiceRequestError as exc:
            raise SecretReferenceError(
                f"{what}: could not reach Key Vault {self.settings.url}: {_first_line(exc)}"
            ) from None
        except (AzureError, ValueError) as exc:
            raise SecretReferenceError(
                f"{what}: Key Vault {self.settings.url} could not be read: {_first_line(exc)}"
            ) from None
        value = found.value
        if not isinstance(value, str):
            raise SecretReferenceError(f"{what}: Key Vault returned the secret without a value")
        properties = found.properties
        return SecretRead(value, properties.version, properties.enabled)

    async def aclose(self) -> None:
        client, credential = self._client, self._credential
        self._client = self._credential = None
        if client is not None:
            await client.close()
        if credential is not None:
            await credential.close()


def _answer(exc: Any) -> str:
    """`403 Forbidden: <message>` from an azure-core HttpResponseError (first line, redacted)."""
    status = getattr(exc, "status_code", None)
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or getattr(exc, "reason", None) or "error"
    message = getattr(error, "message", None) or str(exc)
    prefix = f"{status} {code}" if status else str(code)
    return f"{prefix}: {_first_line_text(str(message))}"


def _first_line(exc: BaseException) -> str:
    return _first_line_text(str(getattr(exc, "message", None) or exc) or type(exc).__name__)


def _first_line_text(text: str) -> str:
    lines = text.strip().splitlines()
    return redact(lines[0][:500] if lines else "no detail")
