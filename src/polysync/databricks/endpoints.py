"""The Jobs API endpoints the client calls: HTTP method, path, whether a repeat is harmless."""

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

    def __init__(self, method: str, path: str, idempotent: bool) -> None:
        self.method = method
        self.path = path
        self.idempotent = idempotent

    @property
    def key(self) -> str:
        return self.name.lower()
