"""Whether a failed Jobs API call may be repeated, and after how long (D8; reference §7)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from polysync.databricks.settings import RetrySettings
from polysync.errors import DatabricksError, DatabricksRateLimitError, TokenExpiredError

# A lock conflict inside the Jobs service, answered with 400; Airflow retries it (reference §11).
TRANSIENT_ERROR_CODES = frozenset({"COULD_NOT_ACQUIRE_LOCK"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Budget and backoff shape for one call."""

    deadline_s: float = 300.0
    max_attempts: int = 10
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: RetrySettings) -> RetryPolicy:
        return cls(
            deadline_s=settings.deadline_s,
            max_attempts=settings.max_attempts,
            backoff_base_s=settings.backoff_base_s,
            backoff_max_s=settings.backoff_max_s,
        )


def may_retry(error: DatabricksError, *, idempotent: bool, request_sent: bool) -> bool:
    """Whether repeating the call cannot do harm and may succeed.

    `idempotent`: a GET, a cancel, or a run-now carrying an idempotency token (D8) - repeating it
    cannot start a second run, so lost answers, 5xx and transport errors are retried.
    `request_sent`: False when the request never left (connect failure, no token yet): any
    retryable error is then safe to retry, whatever the method.
    """
    if isinstance(error, TokenExpiredError):
        return False  # the client refreshes the token and repeats once, without backoff
    if not request_sent:
        return error.retryable
    if isinstance(error, DatabricksRateLimitError):
        return True  # refused before doing anything, whatever the method
    if not idempotent:
        # A lost answer, 5xx or 503 on a plain POST may come after the backend acted: never
        # repeated blindly (sdk-go PR #733 on 504s; the duplicate-run reports in peers.md §3).
        return False
    return error.retryable or error.error_code in TRANSIENT_ERROR_CODES


def backoff_s(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential backoff with jitter: between half and all of base * 2^(attempt-1), capped."""
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2.0 ** min(attempt - 1, 30))
    return rng.uniform(ceiling / 2.0, ceiling)


def retry_delay_s(
    error: DatabricksError,
    *,
    attempt: int,
    idempotent: bool,
    request_sent: bool,
    remaining_s: float,
    policy: RetryPolicy,
    rng: random.Random,
) -> float | None:
    """Seconds to wait before attempt `attempt + 1`, or None to give up and raise `error`.

    Retry-After (429/503) is honoured exactly; a wait that would pass the deadline gives up now,
    so the caller gets the error (with its `retry_after_s`) instead of a late answer.
    """
    if attempt >= policy.max_attempts:
        return None
    if not may_retry(error, idempotent=idempotent, request_sent=request_sent):
        return None
    if error.retry_after_s is not None:
        delay = error.retry_after_s
    else:
        delay = backoff_s(attempt, policy, rng)
    if delay > remaining_s:
        return None
    return delay
