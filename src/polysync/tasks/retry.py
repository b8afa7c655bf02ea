"""Retry policies: how many attempts, the delay before each, and Repair or Restart (issue 12)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from polysync.domain.text import shown
from polysync.errors import RetryPolicyError
from polysync.jobtypes.databricks.parameters import (
    JobKind,  # to become a job type capability when Tasks are wired
)
from polysync.tasks.states import TaskRunStatus

E = TypeVar("E", bound=StrEnum)

MAX_ATTEMPTS = 100
"""The most attempts one TaskRun may make (the first one included)."""
MAX_DELAY_S = 86_400.0
"""The longest delay between two attempts: one day."""

REPAIRABLE_JOB_TYPES = frozenset({JobKind.WORKFLOW.value, JobKind.JOB.value})
"""Job Types whose runs `jobs/runs/repair` can rerun: both are run-now job runs (D11)."""


class Backoff(StrEnum):
    """How the delay grows from one retry to the next (Polysync's fields)."""

    FIXED = "Fixed"
    """Every retry waits `initial_delay_s`."""
    LINEAR = "Linear"
    """The k-th retry waits k x `initial_delay_s`."""
    EXPONENTIAL = "Exponential"
    """The k-th retry waits 2^(k-1) x `initial_delay_s`."""


class RetryStrategy(StrEnum):
    """What a retry does on Databricks."""

    REPAIR = "Repair"
    """`jobs/runs/repair` with `rerun_all_failed_tasks`, the run's `latest_repair_id` and the
    same `job_parameters`: only the failed and skipped tasks run again, in the same Databricks
    run (reference §5). The default for Databricks Workflow."""
    RESTART = "Restart"
    """A new run of the Job (`jobs/run-now`, with a new idempotency token, D8)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A Task's retry policy. Constructing it validates it (RetryPolicyError naming the field).

    - `enabled`: False means one attempt, whatever the other fields say.
    - `max_attempts`: attempts in all, the first included (1..MAX_ATTEMPTS). Databricks'
      `max_retries` is `max_attempts - 1`.
    - `backoff`, `initial_delay_s`, `max_delay_s`: the delay before retry k (`Backoff`), in
      seconds, never more than `max_delay_s` (0..MAX_DELAY_S, and `max_delay_s >= initial`).
    - `strategy`: Repair or Restart; None takes the Job Type's default (`strategy_for`).
    """

    enabled: bool = False
    max_attempts: int = 3
    backoff: Backoff = Backoff.EXPONENTIAL
    initial_delay_s: float = 60.0
    max_delay_s: float = 3600.0
    strategy: RetryStrategy | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise RetryPolicyError(
                "The retry policy's enabled flag must be true or false, not "
                f"{shown(self.enabled)}.",
                field="retry.enabled",
            )
        attempts = self.max_attempts
        if (
            not isinstance(attempts, int)
            or isinstance(attempts, bool)
            or not 1 <= attempts <= MAX_ATTEMPTS
        ):
            raise RetryPolicyError(
                f"The retry policy's max attempts {shown(attempts)} must be a whole number from 1 "
                f"to {MAX_ATTEMPTS} (the first attempt included: 3 means up to 2 retries).",
                field="retry.max_attempts",
            )
        object.__setattr__(self, "backoff", _member(Backoff, self.backoff, "backoff"))
        if self.strategy is not None:
            object.__setattr__(self, "strategy", _member(RetryStrategy, self.strategy, "strategy"))
        initial = _seconds(self.initial_delay_s, "initial_delay_s")
        maximum = _seconds(self.max_delay_s, "max_delay_s")
        if maximum < initial:
            raise RetryPolicyError(
                f"The retry policy's max delay ({maximum:g} s) is shorter than its initial delay "
                f"({initial:g} s). Raise the max delay to at least {initial:g} s.",
                field="retry.max_delay_s",
            )
        object.__setattr__(self, "initial_delay_s", initial)
        object.__setattr__(self, "max_delay_s", maximum)

    @property
    def attempts(self) -> int:
        """How many attempts a TaskRun may make: `max_attempts`, or 1 when disabled."""
        return self.max_attempts if self.enabled else 1

    def delay_before_attempt(self, n: int) -> float:
        """Seconds to wait, after attempt n-1 ended, before attempt `n` (1-based) starts.

        Attempt 1 waits 0. Retry k = n - 1 waits `initial_delay_s` (Fixed), k x initial
        (Linear) or 2^(k-1) x initial (Exponential), capped at `max_delay_s`. ValueError when
        `n` is not an attempt this policy makes (1..`attempts`).
        """
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.attempts:
            raise ValueError(f"attempt {shown(n)} is not one of 1..{self.attempts} of this policy")
        if n == 1:
            return 0.0
        retry = n - 1
        if self.backoff is Backoff.FIXED:
            delay = self.initial_delay_s
        elif self.backoff is Backoff.LINEAR:
            delay = retry * self.initial_delay_s
        else:
            delay = self.initial_delay_s * 2.0 ** (retry - 1)
        return min(delay, self.max_delay_s)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """After an attempt ended: whether another follows, when, and how."""

    retry: bool
    attempt: int | None = None
    """The next attempt's number, when `retry`."""
    delay_s: float = 0.0
    strategy: RetryStrategy | None = None
    reason: str = ""
    """Why not, when not `retry` (for the TaskRun's message)."""


RETRIED_OUTCOMES = frozenset({TaskRunStatus.FAILED})
"""Only a failed attempt (including a timed-out one) is retried: a cancel is the user's (or
Databricks') decision and stands, and success needs nothing."""


def strategy_for(policy: RetryPolicy, job_type: str) -> RetryStrategy:
    """The strategy retries of a Job of `job_type` use: the policy's, else Repair for
    Databricks Workflow and Restart for every other Job Type. RetryPolicyError when the policy
    asks to Repair a Job Type whose runs cannot be repaired."""
    if policy.strategy is None:
        return RetryStrategy.REPAIR if job_type == JobKind.WORKFLOW.value else RetryStrategy.RESTART
    if policy.strategy is RetryStrategy.REPAIR and job_type not in REPAIRABLE_JOB_TYPES:
        kinds = " and ".join(sorted(REPAIRABLE_JOB_TYPES))
        raise RetryPolicyError(
            f"A {shown(job_type)} run cannot be repaired (only {kinds} runs can). Choose the "
            "Restart strategy.",
            field="retry.strategy",
        )
    return policy.strategy


def retry_decision(
    policy: RetryPolicy, job_type: str, attempt: int, outcome: TaskRunStatus
) -> RetryDecision:
    """Whether attempt `attempt` (1-based), which ended `outcome`, is followed by another."""
    if outcome not in RETRIED_OUTCOMES:
        return RetryDecision(retry=False, reason=f"attempt {attempt} ended {outcome}")
    if not policy.enabled:
        return RetryDecision(retry=False, reason="retries are off for this Task")
    if attempt >= policy.attempts:
        return RetryDecision(
            retry=False, reason=f"all {policy.attempts} attempts of the retry policy were made"
        )
    following = attempt + 1
    return RetryDecision(
        retry=True,
        attempt=following,
        delay_s=policy.delay_before_attempt(following),
        strategy=strategy_for(policy, job_type),
    )


def _seconds(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RetryPolicyError(
            f"The retry policy's {field} must be a number of seconds, not {shown(value)}.",
            field=f"retry.{field}",
        )
    seconds = float(value)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DELAY_S:
        raise RetryPolicyError(
            f"The retry policy's {field} {shown(value)} must be from 0 to {MAX_DELAY_S:g} "
            "seconds (one day).",
            field=f"retry.{field}",
        )
    return seconds


def member_named(kind: type[E], value: object) -> E | None:
    """The member of the StrEnum `kind` whose value `value` names, in any case and with spaces
    around it ignored (`repair`, `Repair`, ` REPAIR `); None when it names none."""
    typed = value.strip().casefold() if isinstance(value, str) else value
    for member in kind:
        if typed == member.value.casefold():
            return member
    return None


def _member(kind: type[E], value: object, field: str) -> E:
    member = member_named(kind, value)
    if member is not None:
        return member
    choices = ", ".join(member.value for member in kind)
    raise RetryPolicyError(
        f"The retry policy's {field} {shown(value)} is not one of {choices}.",
        field=f"retry.{field}",
    )
