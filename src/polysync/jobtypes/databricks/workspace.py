"""What every Databricks job type holds: the workspace's client (one connection pool and one rate
limiter, shared) and its platform (attributes such as a notebook run's compute)."""

from __future__ import annotations

from typing import Any, Self

from polysync.databricks.client import DatabricksClient
from polysync.domain.records import Platform


class WorkspaceJobType:
    """The base of the Databricks job types: built by the registry for one platform."""

    def __init__(self, client: DatabricksClient, platform: Platform | None = None) -> None:
        self.client = client
        self.platform = platform

    @classmethod
    def for_platform(cls, platform: Platform, client: Any) -> Self:
        """The registry's factory (`polysync.jobtypes.registry`)."""
        return cls(client, platform)

    @property
    def workspace_url(self) -> str:
        return self.client.settings.url
