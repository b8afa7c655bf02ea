"""Where credentials may go: the workspace host allow-list, plain HTTP, the secret scope.

A platform's URL decides where its bearer token is sent, and its secret references decide what
the server reads: an admin who can edit platforms could otherwise send any server secret to any
host. `ConnectionPolicy.check` refuses such a platform when it is saved and again before any
client is built for it (docs/security.md "Where credentials may go").
"""

from __future__ import annotations

import ipaddress
import logging
import re
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
    """`localhost`, or a literal loopback address (127.0.0.0/8, ::1): this machine (the
    emulator). No other name: `x.localhost` or a name that resolves to 127.0.0.1 today is a DNS
    answer, and DNS may answer otherwise tomorrow."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def parse_host_patterns(text: str | None) -> tuple[str, ...] | None:
    """`*.azuredatabricks.net, adb.example.org` -> patterns (lower case, no trailing dot);
    None or blank -> None. A pattern is a DNS name, or `*.` and a DNS name (any subdomain of
    it); ConfigError for anything else (other wildcards, spaces, a URL)."""
    if text is None or not text.strip():
        return None
    patterns = []
    for part in text.split(","):
        pattern = part.strip().lower().rstrip(".")
        if not pattern:
            continue
        name = pattern[2:] if pattern.startswith("*.") else pattern
        labels = name.split(".")
        if not all(_DNS_LABEL.fullmatch(label) for label in labels) or len(name) > 253:
            raise ConfigError(
                f"POLYSYNC_WORKSPACE_HOSTS: {part.strip()[:80]!r} is not a host pattern: write a "
                "DNS name (adb.example.org) or `*.` and one (*.azuredatabricks.net)."
            )
        patterns.append(pattern)
    return tuple(patterns) or None


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """Whether `host` matches one of `patterns` (`parse_host_patterns`), as DNS names."""
    return _host_allowed(host, patterns)


def _host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """DNS-name matching, case-blind, a trailing dot ignored: `*.example.org` is any subdomain
    of example.org (not example.org itself, nor evilexample.org); anything else exactly."""
    name = host.rstrip(".").lower()
    for pattern in patterns:
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]) and len(name) > len(pattern) - 1:
                return True
        elif name == pattern:
            return True
    return False


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """What this process lets a platform do.

    `workspace_hosts`: host patterns (`parse_host_patterns`) the workspace host (and an Entra authority host outside
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
