"""The platform editor's form: its fields, the auth mapping they make, and inline validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from polysync.databricks.settings import WorkspaceSettings
from polysync.domain.limits import (
    MAX_DESCRIPTION_CHARS,
    MAX_FIELD_CHARS,
    MAX_NAME_CHARS,
    MAX_URL_CHARS,
    check_text,
)
from polysync.domain.records import Platform
from polysync.errors import SecretReferenceError, UsageError
from polysync.secrets import SecretReference

# method -> (form field, auth key, label, kind) ; kind: "text", "optional", "secret"
AUTH_FIELDS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "pat": (("pat_token", "token", "Token reference", "secret"),),
    "entra_service_principal": (
        ("sp_tenant_id", "tenant_id", "Tenant Id", "text"),
        ("sp_client_id", "client_id", "Client Id", "text"),
        ("sp_client_secret", "client_secret", "Client secret reference", "secret"),
    ),
    "managed_identity": (
        ("mi_client_id", "client_id", "Client Id of a user-assigned identity", "optional"),
    ),
    "azure_default": (
        (
            "default_client_id",
            "managed_identity_client_id",
            "Managed identity client Id",
            "optional",
        ),
    ),
    "databricks_oauth_m2m": (
        ("m2m_client_id", "client_id", "Client Id", "text"),
        ("m2m_client_secret", "client_secret", "Client secret reference", "secret"),
    ),
}
NOT_A_REFERENCE = (
    "Enter a secret reference, not the secret itself: env:NAME reads the environment variable "
    "NAME, file:PATH reads the file at PATH. Polysync never stores secrets; what you typed was "
    "not kept."
)


@dataclass(slots=True)
class PlatformForm:
    name: str = ""
    workspace_url: str = ""
    cluster_id: str = ""
    description: str = ""
    method: str = "pat"
    attributes: str = ""
    """Job type attributes, one KEY=VALUE per line (docs/job-types.md)."""
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_form(cls, form: Mapping[str, Any]) -> PlatformForm:
        def text(key: str) -> str:
            value = form.get(key)
            return value.strip() if isinstance(value, str) else ""

        method = text("auth_method")
        values = {
            form_field: text(form_field)
            for fields in AUTH_FIELDS.values()
            for form_field, *_ in fields
        }
        return cls(
            name=text("name"),
            workspace_url=text("workspace_url"),
            cluster_id=text("cluster_id"),
            description=text("description"),
            method=method if method in AUTH_FIELDS else "pat",
            attributes=text("attributes"),
            values=values,
        )

    @classmethod
    def from_platform(cls, platform: Platform) -> PlatformForm:
        method = platform.auth_method
        values = {
            form_field: str(platform.auth.get(auth_key) or "")
            for form_field, auth_key, _, _ in AUTH_FIELDS.get(method, ())
        }
        return cls(
            name=platform.name,
            workspace_url=platform.workspace_url,
            cluster_id=platform.cluster_id or "",
            description=platform.description,
            method=method,
            attributes="\n".join(f"{k}={v}" for k, v in sorted(platform.attributes.items())),
            values=values,
        )

    def attribute_map(self) -> dict[str, str]:
        """The attributes typed, by name (the lines `validate` accepted)."""
        parsed: dict[str, str] = {}
        for line in self.attributes.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip():
                parsed[key.strip()] = value.strip()
        return parsed

    def auth(self) -> dict[str, Any]:
        auth: dict[str, Any] = {"method": self.method}
        for form_field, auth_key, _, _ in AUTH_FIELDS[self.method]:
            if self.values.get(form_field):
                auth[auth_key] = self.values[form_field]
        return auth

    def validate(self) -> bool:
        """Fill `errors` (form field -> message); a refused secret field is emptied."""
        self.errors.clear()
        self._check_limits()
        if not self.name:
            self.errors["name"] = "Give the platform a name, e.g. prod."
        if not self.workspace_url:
            self.errors["workspace_url"] = (
                "Enter the Workspace Url, e.g. https://adb-1234567890123456.7.azuredatabricks.net"
            )
        for form_field, _, label, kind in AUTH_FIELDS[self.method]:
            value = self.values.get(form_field, "")
            if kind == "text" and not value:
                self.errors[form_field] = f"{label} is required for this method."
            elif kind == "secret":
                if not value:
                    self.errors[form_field] = f"{label} is required, e.g. env:DATABRICKS_TOKEN."
                    continue
                try:
                    self.values[form_field] = str(SecretReference.parse(value))
                except SecretReferenceError:
                    self.values[form_field] = ""  # never echo what may be a secret
                    self.errors[form_field] = NOT_A_REFERENCE
        bad = [line for line in self.attributes.splitlines() if line.strip() and "=" not in line]
        if bad:
            self.errors["attributes"] = (
                f"Write one KEY=VALUE per line, e.g. serverless=true; {bad[0][:40]!r} has no '='."
            )
        if not self.errors:
            self._check_settings()
        return not self.errors

    def _check_limits(self) -> None:
        """Caps and refused characters of polysync.domain.limits, per field (a refused secret
        field is emptied: what was typed may be a secret)."""
        fields: list[tuple[str, str, str, int, bool]] = [
            ("name", "The name", self.name, MAX_NAME_CHARS, False),
            ("workspace_url", "The Workspace Url", self.workspace_url, MAX_URL_CHARS, False),
            ("cluster_id", "The Cluster Id", self.cluster_id, MAX_FIELD_CHARS, False),
            ("description", "The description", self.description, MAX_DESCRIPTION_CHARS, True),
            ("attributes", "The attributes", self.attributes, MAX_DESCRIPTION_CHARS, True),
        ]
        fields += [
            (form_field, label, self.values.get(form_field, ""), MAX_FIELD_CHARS, False)
            for form_field, _, label, kind in AUTH_FIELDS[self.method]
            if kind != "secret"
        ]
        for form_field, label, value, max_chars, multiline in fields:
            try:
                check_text(value, field=label, max_chars=max_chars, multiline=multiline)
            except UsageError as exc:
                self.errors[form_field] = exc.message

    def _check_settings(self) -> None:
        try:
            WorkspaceSettings.model_validate({"url": self.workspace_url, "auth": self.auth()})
        except ValidationError as exc:
            for error in exc.errors():
                location = [str(part) for part in error["loc"]]
                message = str(error["msg"]).removeprefix("Value error, ")
                target = "workspace_url" if location[:1] == ["url"] else "auth_method"
                for form_field, auth_key, _, _ in AUTH_FIELDS[self.method]:
                    if location[-1:] == [auth_key]:
                        target = form_field
                self.errors.setdefault(target, message[:1].upper() + message[1:])
