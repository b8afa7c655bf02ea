"""Where credentials may go: the workspace host allow-list, plain HTTP, the secret scope.

A platform's URL decides where its bearer token is sent, and its secret references decide what
the server reads: an admin who can edit platforms could otherwise send any server secret to any
host. `ConnectionPolicy.check` refuses such a platform when it is saved and again before any
client is built for it (docs/security.md "Where credentials may go").
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from polysync.databricks.settings import (
    DatabricksOAuthM2MAuthSettings,
    EntraServicePrincipalAuthSettings,
    PatAuthSettings,
    WorkspaceSettings,
)
from polysync.errors import ConfigError
from polysync.secrets import UNRESTRICTED, SecretReference, SecretScope

log = logging.getLogger(__name__)

AZURE_DATABRICKS_HOSTS = ("*.azuredatabricks.net",)
"""The allow-list `polysync serve` applies when POLYSYNC_WORKSPACE_HOSTS is not set."""
MICROSOFT_AUTHORITY_HOSTS = (
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
)
"""Entra ID authorities of the public and sovereign clouds (reference §9.2), always allowed."""


def is_loopback(host: str) -> bool:
    """`localhost` (and `*.localhost`), 127.0.0.0/8 or ::1: this machine (the emulator)."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_host_patterns(text: str | None) -> tuple[str, ...] | None:
    """`*.azuredatabricks.net, adb.example.org` -> patterns (lower case); None or blank -> None."""
    if text is None or not text.strip():
        return None
    return tuple(part.strip().lower() for part in text.split(",") if part.strip())


def _host_allowed(host: str, patterns: Iterable[str]) -> bool:
    name = host.rstrip(".").lower()
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """What this process lets a platform do.

    `workspace_hosts`: fnmatch patterns the workspace host (and an Entra authority host outside
    Microsoft's) must match; loopback is always allowed; None lets any host through
    (POLYSYNC_WORKSPACE_HOSTS; `serve` defaults to `*.azuredatabricks.net`).
    `allow_insecure_http`: lets `http://` reach a host that is not loopback, with a warning
    (`serve --allow-insecure-http`, POLYSYNC_ALLOW_INSECURE_HTTP).
    `secret_scope`: which `env:`/`file:` references may be resolved.
    """

    workspace_hosts: tuple[str, ...] | None = None
    allow_insecure_http: bool = False
    secret_scope: SecretScope = UNRESTRICTED

    def check(self, settings: WorkspaceSettings, *, platform: str = "The platform") -> None:
        """ConfigError naming the rule and the setting that widens it, or None when allowed.

        Plain HTTP to a host that is not loopback is refused unless `allow_insecure_http` (then
        logged as a warning); the workspace host and a non-Microsoft Entra authority host must
        match `workspace_hosts` when set; every secret reference must be within the scope.
        """
        url = httpx.URL(settings.url)
        host = url.host
        if url.scheme == "http" and not is_loopback(host):
            if not self.allow_insecure_http:
                raise ConfigError(
                    f"{platform}'s workspace URL {settings.url} is plain http://: its credential "
                    "would cross the network in clear. Use https:// (http:// is allowed on "
                    "loopback, e.g. the emulator), or start the server with "
                    "--allow-insecure-http (POLYSYNC_ALLOW_INSECURE_HTTP=1) if you must."
                )
            log.warning(
                "INSECURE: %s sends its credential over plain http:// to %s "
                "(--allow-insecure-http is set)",
                platform,
                settings.url,
            )
        if self.workspace_hosts is not None and not (
            is_loopback(host) or _host_allowed(host, self.workspace_hosts)
        ):
            raise ConfigError(
                f"{platform}'s workspace host {host} is not allowed here: this server sends "
                f"credentials only to {', '.join(self.workspace_hosts)} and loopback. An "
                "administrator of the server can widen POLYSYNC_WORKSPACE_HOSTS (comma-separated "
                "patterns such as *.azuredatabricks.net)."
            )
        auth = settings.auth
        if isinstance(auth, EntraServicePrincipalAuthSettings) and self.workspace_hosts is not None:
            authority = httpx.URL(auth.authority_host).host
            if not (
                is_loopback(authority)
                or _host_allowed(authority, MICROSOFT_AUTHORITY_HOSTS)
                or _host_allowed(authority, self.workspace_hosts)
            ):
                raise ConfigError(
                    f"{platform}'s Entra authority host {authority} is not allowed here: the "
                    f"client secret is sent only to Microsoft's authorities "
                    f"({', '.join(MICROSOFT_AUTHORITY_HOSTS)}), loopback and "
                    "POLYSYNC_WORKSPACE_HOSTS."
                )
        for reference in secret_references(settings):
            SecretReference.parse(reference, self.secret_scope)


def secret_references(settings: WorkspaceSettings) -> list[str]:
    """Every secret reference of a workspace's auth settings."""
    auth = settings.auth
    if isinstance(auth, PatAuthSettings):
        return [auth.token]
    if isinstance(auth, EntraServicePrincipalAuthSettings | DatabricksOAuthM2MAuthSettings):
        return [auth.client_secret]
    return []
