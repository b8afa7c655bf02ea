"""Settings: built once from the environment (prefix POLYSYNC_) and passed explicitly."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path.home() / ".polysync"


class Settings(BaseSettings):
    """Where Polysync keeps its data and how its engine watches runs."""

    model_config = SettingsConfigDict(env_prefix="POLYSYNC_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    # SQLite file under `home` by default; a PostgreSQL URL for teams and several engines.
    database_url: str | None = None
    # Engine: the first retry of a failed poll and its cap, and the cancel confirmation (s).
    poll_min_s: float = Field(default=5.0, gt=0)
    poll_max_s: float = Field(default=120.0, gt=0)
    # Every active run is swept (runs/list) at this rhythm: its longest detection lag (s).
    sweep_interval_s: float = Field(default=10.0, gt=0)
    lease_s: float = Field(default=60.0, gt=0)
    # A run waiting on a full concurrency profile is looked at again after this long (D14).
    profile_recheck_s: float = Field(default=5.0, gt=0)
    log_level: str = "WARNING"
    # Security (docs/security.md). Secret references may read only variables starting with this
    # prefix ("" = any) and only files inside this directory (None = any readable file).
    secret_env_prefix: str = ""
    secrets_dir: Path | None = None
    # Comma-separated host patterns a workspace (and a non-Microsoft Entra authority) must match,
    # e.g. "*.azuredatabricks.net"; loopback is always allowed. Unset: any host, except that
    # `polysync serve` then applies "*.azuredatabricks.net".
    workspace_hosts: str | None = None
    # Plain http:// to a host that is not loopback sends credentials in clear: refused unless set.
    allow_insecure_http: bool = False
    # Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For /
    # X-Forwarded-Proto `serve` believes (e.g. "10.0.0.5,10.1.0.0/16"). Unset: no one's, so a
    # client cannot pick the address its failures are counted and logged under.
    trusted_proxies: str | None = None

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        # The store creates the directory (0700) and the file (0600) when it opens it.
        return f"sqlite+aiosqlite:///{self.home / 'polysync.db'}"
