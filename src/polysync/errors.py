"""Every exception Polysync raises, in one tree.

    PolysyncError
    ├── UsageError                     bad input from the user (CLI exit code 2, API 4xx)
    │   ├── InvalidExternalIdError     the External Id is not a numeric Databricks Job Id (D4)
    │   ├── JobDeletedError            Databricks says the job does not exist (D4)
    │   ├── ParameterValueError        a parameter value does not fit its Data Type (D2)
    │   │   └── ParameterTextError     a parameter name or value holds text that cannot be sent
    │   ├── TaskScopedParameterError   an override of a task-scoped parameter (D3)
    │   ├── UnknownParameterError      an override of a parameter the Job does not have
    │   ├── AccessDeniedError          the caller's role may not do this (API 403)
    │   ├── NotFoundError              a Polysync record (platform, job, run) that does not exist
    │   ├── ConflictError              the change conflicts with the record's state (HTTP 409)
    │   │   └── RepairNotSupportedError  a run of a Job Type that cannot be repaired (D13)
    │   ├── TaskDefinitionError        a Task setting that cannot be saved (names the field and the fix)
    │   │   ├── ScheduleError          a cron expression, time zone, start/end or misfire setting
    │   │   ├── RetryPolicyError       a retry policy field (attempts, delays, backoff, strategy)
    │   │   ├── DependencyError        an upstream edge that cannot be saved
    │   │   │   └── DependencyCycleError  the edges would make a loop (the loop is named)
    │   │   └── ParameterMappingError  a `{{upstream.<task>.<field>}}` reference that cannot resolve
    │   └── TaskRunTransitionError     a TaskRun status change that is not allowed (e.g. cancel a
    │                                  Succeeded TaskRun)
    ├── ConfigError                    settings or a secret reference that cannot be used
    │   └── SecretReferenceError       an `env:` / `file:` / `vault://` reference that cannot be resolved
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
        ├── DatabricksAnswerError      a 2xx answer that is not what the API documents
        │   └── DatabricksUnconfirmedError  a start that was not confirmed: retry with its token
        ├── DatabricksServerError      5xx
        │   └── DatabricksUnavailableError  503: temporarily unavailable, honour Retry-After
        └── DatabricksTransportError   no HTTP answer: connection refused/reset, timeout, TLS failure
            └── DatabricksTimeoutError no answer within the engine's time budget for one run

Each class's docstring is its default message; `retryable` says whether the same call may be
tried again as it is. Messages never contain secret values, and name no interface: what the user
can do next is a `Hint` that each interface renders its own way (the CLI as a command to type,
the API and the web UI as text).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Hint:
    """What the user can do next. `action` names it for the interfaces that render it their
    own way (the CLI: `polysync.cli.errors.CLI_HINTS`); `text` says it in words, for the rest;
    `subject` is the record it is about (a job's or a platform's name or id), when one is."""

    action: str
    text: str
    subject: str = ""


LIST_VAULTS = Hint("list_vaults", "List the Secret Vaults to see their names and ids.")
LIST_PLATFORMS = Hint("list_platforms", "List the platforms to see their names and ids.")
LIST_JOBS = Hint("list_jobs", "List the imported jobs to see their ids, External Ids and names.")
LIST_RUNS = Hint("list_runs", "List the runs to see their ids.")
LIST_TASKS = Hint("list_tasks", "List the Tasks.")
LIST_PROFILES = Hint("list_profiles", "List the contention profiles to see their names and ids.")
LIST_API_KEYS = Hint("list_api_keys", "List the API keys to see their names and prefixes.")


def sync_parameters_hint(job: str = "") -> Hint:
    """Sync Parameters of the Polysync Job `job` (its name or id, when known)."""
    return Hint("sync_parameters", "Sync the Polysync Job's parameters (Sync Parameters).", job)


class PolysyncError(Exception):
    """Polysync failed."""

    retryable: bool = False
    hint: Hint | None = None

    def __init__(self, message: str | None = None, *, hint: Hint | None = None) -> None:
        self.message = message or (type(self).__doc__ or "").strip()
        if hint is not None:
            self.hint = hint
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


class AccessDeniedError(UsageError):
    """Your role may not do this."""


class NotFoundError(UsageError):
    """No such record."""


def not_found(noun: str, ref: int | str, hint: Hint) -> NotFoundError:
    """ "No <noun> with id 3." for an id, "No <noun> named 'x'." for a name; `hint` says where
    to look the names and ids up."""
    what = f"with id {ref}" if isinstance(ref, int) else f"named {ref!r}"
    return NotFoundError(f"No {noun} {what}.", hint=hint)


class ConflictError(UsageError):
    """The change conflicts with the current state of the record."""


class RepairNotSupportedError(ConflictError):
    """Runs of this Job Type cannot be repaired; start a new run instead."""


class TaskDefinitionError(UsageError):
    """The Task cannot be saved as it is."""

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.field = field
        """The field at fault, dotted (e.g. "schedules[0].cron"), when one is."""
        super().__init__(message)


class ScheduleError(TaskDefinitionError):
    """The schedule is not valid."""


class RetryPolicyError(TaskDefinitionError):
    """The retry policy is not valid."""


class DependencyError(TaskDefinitionError):
    """The dependency is not valid."""


class DependencyCycleError(DependencyError):
    """The dependencies would make a loop."""

    def __init__(self, message: str | None = None, *, cycle: tuple[str, ...] = ()) -> None:
        self.cycle = cycle
        """The loop as Task names, first name repeated last: ("a", "b", "a")."""
        super().__init__(message, field="dependencies")


class ParameterMappingError(TaskDefinitionError):
    """A mapped parameter value refers to something that does not exist."""


class TaskRunTransitionError(UsageError):
    """The TaskRun cannot move to that status from the one it is in."""


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


class DatabricksAnswerError(DatabricksError):
    """Databricks answered, but not with what the API documents."""


class DatabricksUnconfirmedError(DatabricksAnswerError):
    """Databricks did not confirm the call; retry it with its idempotency token."""

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
