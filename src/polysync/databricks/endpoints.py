"""The Databricks REST endpoints the client calls: HTTP method, path (with `{placeholders}` for
ids in the path), whether a repeat is harmless."""

from __future__ import annotations

import enum


class Endpoint(enum.Enum):
    """One Jobs API endpoint; `key` names it in settings (api_versions, rate_limits) and metrics."""

    JOBS_LIST = ("GET", "jobs/list", True)
    JOBS_GET = ("GET", "jobs/get", True)
    JOBS_CREATE = ("POST", "jobs/create", False)
    # Repeating a delete that landed answers "Job N does not exist.": not idempotent in effect.
    JOBS_DELETE = ("POST", "jobs/delete", False)
    # Repeatable only with an idempotency_token (reference §3; D8): the client decides per call.
    RUN_NOW = ("POST", "jobs/run-now", False)
    RUNS_GET = ("GET", "jobs/runs/get", True)
    RUNS_GET_OUTPUT = ("GET", "jobs/runs/get-output", True)
    RUNS_LIST = ("GET", "jobs/runs/list", True)
    # Idempotent by nature: cancelling a cancelled or finished run is a no-op (reference §5).
    RUNS_CANCEL = ("POST", "jobs/runs/cancel", True)
    RUNS_CANCEL_ALL = ("POST", "jobs/runs/cancel-all", True)
    # One-time runs; repeatable only with an idempotency_token, like run-now (D11).
    RUNS_SUBMIT = ("POST", "jobs/runs/submit", False)
    # A repeat that landed is refused as stale (`latest_repair_id`, D13): never retried blindly.
    RUNS_REPAIR = ("POST", "jobs/runs/repair", False)
    # Workspace API (2.0): the notebooks of the Databricks Notebook job type.
    WORKSPACE_LIST = ("GET", "workspace/list", True)
    WORKSPACE_GET_STATUS = ("GET", "workspace/get-status", True)
    WORKSPACE_EXPORT = ("GET", "workspace/export", True)
    # Pipelines API (2.0): the Databricks Pipeline job type.
    PIPELINES_LIST = ("GET", "pipelines", True)
    PIPELINES_GET = ("GET", "pipelines/{pipeline_id}", True)
    # A repeated start would start a second update (or meet the first one's 409): never retried.
    PIPELINES_START_UPDATE = ("POST", "pipelines/{pipeline_id}/updates", False)
    PIPELINES_LIST_UPDATES = ("GET", "pipelines/{pipeline_id}/updates", True)
    PIPELINES_GET_UPDATE = ("GET", "pipelines/{pipeline_id}/updates/{update_id}", True)
    # Stopping a stopped pipeline is a no-op.
    PIPELINES_STOP = ("POST", "pipelines/{pipeline_id}/stop", True)
    PIPELINES_EVENTS = ("GET", "pipelines/{pipeline_id}/events", True)

    def __init__(self, method: str, path: str, idempotent: bool) -> None:
        self.method = method
        self.path = path
        self.idempotent = idempotent

    @property
    def key(self) -> str:
        return self.name.lower()
