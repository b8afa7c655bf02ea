"""Every exception Polysync raises, in one tree.

    PolysyncError
    ├── UsageError                     bad input from the user (CLI exit code 2, API 4xx)
    │   ├── InvalidExternalIdError     the External Id is not a numeric Databricks Job Id (D4)
    │   ├── JobDeletedError            Databricks says the job does not exist (D4)
    │   ├── ParameterValueError        a parameter value does not fit its Data Type (D2)
    │   │   └── ParameterTextError     a parameter name or value holds text that cannot be sent
    │   ├── TaskScopedParameterError   an override of a task-scoped parameter (D3)
    │   ├── UnknownParameterError      an override of a parameter the Job does not have
    │   ├── NotFoundError              a Polysync record (platform, job, run) that does not exist
    │   └── ConflictError              the request conflicts with what is stored (API 409, exit 2)
    ├── ConfigError                    settings or a secret reference that cannot be used
    │   └── SecretReferenceError       an `env:` / `file:` secret reference that cannot be resolved
    ├── WorkspaceFileError             an emulator workspace file that cannot be loaded
    ├── StoreError                     the database refused a request (a value it cannot store)
    │   └── StoreUnavailableError      the database cannot be reached now; retry with back-off
    └── DatabricksError                Databricks answered with an error, or could not be reached
        ├── DatabricksAuthError        401 / 403: the credentials were refused
        │   └── TokenExpiredError      the token expired; refresh and retry once
        ├── DatabricksBadRequestError  400: the request was refused as invalid
        ├── DatabricksNotFoundError    404, or the legacy 400 "Job N does not exist."
        ├── DatabricksConflictError    409
        ├── DatabricksRateLimitError   429 (or REQUEST_LIMIT_EXCEEDED): slow down, honour Retry-After
        ├── DatabricksServerError      5xx
        │   └── DatabricksUnavailableError  503: temporarily unavailable, honour Retry-After
        └── DatabricksTransportError   no HTTP answer: connection refused/reset, timeout, TLS failure
            └── DatabricksTimeoutError no answer within the engine's time budget for one run

Each class's docstring is its default message; `retryable` says whether the same call may be
tried again as it is. Messages never contain secret values.
"""

from __future__ import annotations


class PolysyncError(Exception):
    """Polysync failed."""

    retryable: bool = False

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (type(self).__doc__ or "").strip()
        super().__init__(self.message)


class UsageError(PolysyncError):
    """The input is not valid."""


class InvalidExternalIdError(UsageError):
    """INVALID_PARAMETER_VALUE: job_id: the External Id is not a valid numeric Job Id."""


class JobDeletedError(UsageError):
    """INVALID_PARAMETER_VALUE: job_id: the Job was deleted in Databricks."""


class ParameterValueError(UsageError):
    """A parameter value does not fit its Data Type."""


class ParameterTextError(ParameterValueError):
    """A parameter name or value holds text that cannot be sent (a lone surrogate or a control
    character)."""


class TaskScopedParameterError(UsageError):
    """A task-scoped parameter cannot be set at run time."""


class UnknownParameterError(UsageError):
    """The Job has no parameter of that name."""


class NotFoundError(UsageError):
    """No such record."""


class ConflictError(UsageError):
    """The request conflicts with what is stored (a name taken, a platform with active runs)."""


class ConfigError(PolysyncError):
    """The configuration is not valid."""


class SecretReferenceError(ConfigError):
    """A secret reference cannot be resolved."""


class WorkspaceFileError(PolysyncError):
    """The emulator workspace file cannot be loaded."""


class StoreError(PolysyncError):
    """The database refused the request."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached."""

    retryable = True


class DatabricksError(PolysyncError):
    """Databricks answered with an error."""

    def __init__(
        self,
        message: str | None = None,
        *,
        http_status: int | None = None,
        error_code: str | None = None,
        method: str | None = None,
        path: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.http_status = http_status
        self.error_code = error_code
        self.method = method
        self.path = path
        self.retry_after_s = retry_after_s
        super().__init__(message)

    def __str__(self) -> str:
        where = f" ({self.method} {self.path})" if self.method and self.path else ""
        status = f"HTTP {self.http_status} " if self.http_status else ""
        code = f"{self.error_code}: " if self.error_code else ""
        return f"{status}{code}{self.message}{where}"


class DatabricksAuthError(DatabricksError):
    """Databricks refused the credentials."""


class TokenExpiredError(DatabricksAuthError):
    """The Databricks access token expired."""

    retryable = True


class DatabricksBadRequestError(DatabricksError):
    """Databricks refused the request as invalid."""


class DatabricksNotFoundError(DatabricksError):
    """Databricks says the resource does not exist."""


class DatabricksConflictError(DatabricksError):
    """Databricks reported a conflict."""


class DatabricksRateLimitError(DatabricksError):
    """Databricks rate limit reached; slow down."""

    retryable = True


class DatabricksServerError(DatabricksError):
    """Databricks had an internal error."""

    retryable = True


class DatabricksUnavailableError(DatabricksServerError):
    """Databricks is temporarily unavailable."""


class DatabricksTransportError(DatabricksError):
    """Databricks could not be reached."""

    retryable = True


class DatabricksTimeoutError(DatabricksTransportError):
    """Databricks did not answer in time."""
