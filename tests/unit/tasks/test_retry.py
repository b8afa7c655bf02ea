"""Retry policies: delays per backoff, attempts, strategies and validation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polysync.errors import RetryPolicyError
from polysync.tasks.retry import (
    MAX_DELAY_S,
    Backoff,
    RetryPolicy,
    RetryStrategy,
    retry_decision,
    strategy_for,
)
from polysync.tasks.states import TaskRunStatus

WORKFLOW = "Databricks Workflow"


def policy(backoff: Backoff, **kwargs: object) -> RetryPolicy:
    fields: dict[str, object] = {
        "enabled": True,
        "max_attempts": 6,
        "initial_delay_s": 10,
        "max_delay_s": 100,
        **kwargs,
    }
    return RetryPolicy(backoff=backoff, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        (Backoff.FIXED, [0, 10, 10, 10, 10, 10]),
        (Backoff.LINEAR, [0, 10, 20, 30, 40, 50]),
        (Backoff.EXPONENTIAL, [0, 10, 20, 40, 80, 100]),  # 160 capped at max_delay_s
    ],
)
def test_delay_before_each_attempt(backoff: Backoff, delays: list[float]) -> None:
    retry = policy(backoff)
    assert [retry.delay_before_attempt(n) for n in range(1, 7)] == delays


def test_linear_is_capped_too() -> None:
    retry = policy(Backoff.LINEAR, max_attempts=20)
    assert retry.delay_before_attempt(20) == 100


def test_no_attempt_beyond_the_policy() -> None:
    retry = policy(Backoff.FIXED, max_attempts=3)
    for n in (0, 4, True):
        with pytest.raises(ValueError, match=r"is not one of 1\.\.3 of this policy"):
            retry.delay_before_attempt(n)
    disabled = RetryPolicy(enabled=False, max_attempts=5)
    assert disabled.attempts == 1
    with pytest.raises(ValueError, match=r"1\.\.1"):
        disabled.delay_before_attempt(2)


def test_retry_decision_follows_attempts_and_outcomes() -> None:
    retry = policy(Backoff.LINEAR, max_attempts=3)
    first = retry_decision(retry, WORKFLOW, 1, TaskRunStatus.FAILED)
    assert (first.retry, first.attempt, first.delay_s, first.strategy) == (
        True,
        2,
        10,
        RetryStrategy.REPAIR,
    )
    second = retry_decision(retry, "Databricks Pipeline", 2, TaskRunStatus.FAILED)
    assert (second.retry, second.delay_s, second.strategy) == (True, 20, RetryStrategy.RESTART)
    last = retry_decision(retry, WORKFLOW, 3, TaskRunStatus.FAILED)
    assert (last.retry, last.reason) == (False, "all 3 attempts of the retry policy were made")
    cancelled = retry_decision(retry, WORKFLOW, 1, TaskRunStatus.CANCELLED)
    assert (cancelled.retry, cancelled.reason) == (False, "attempt 1 ended Cancelled")
    off = retry_decision(RetryPolicy(), WORKFLOW, 1, TaskRunStatus.FAILED)
    assert (off.retry, off.reason) == (False, "retries are off for this Task")


def test_strategy_defaults_by_job_type_and_repair_needs_a_repairable_type() -> None:
    assert strategy_for(RetryPolicy(), WORKFLOW) is RetryStrategy.REPAIR
    assert strategy_for(RetryPolicy(), "Databricks Notebook") is RetryStrategy.RESTART
    repair = RetryPolicy(strategy=RetryStrategy.REPAIR)
    assert strategy_for(repair, "Databricks Job") is RetryStrategy.REPAIR
    with pytest.raises(
        RetryPolicyError, match=r"cannot be repaired .* Choose the Restart"
    ) as caught:
        strategy_for(repair, "Databricks Pipeline")
    assert caught.value.field == "retry.strategy"
    restart = RetryPolicy(strategy=RetryStrategy.RESTART)
    assert strategy_for(restart, WORKFLOW) is RetryStrategy.RESTART


@pytest.mark.parametrize(
    ("kwargs", "field", "says"),
    [
        ({"max_attempts": 0}, "retry.max_attempts", "from 1 to 100"),
        ({"max_attempts": 101}, "retry.max_attempts", "from 1 to 100"),
        ({"max_attempts": 2.0}, "retry.max_attempts", "whole number"),
        ({"initial_delay_s": -1}, "retry.initial_delay_s", "must be from 0 to 86400"),
        ({"initial_delay_s": math.nan}, "retry.initial_delay_s", "must be from 0"),
        ({"max_delay_s": math.inf}, "retry.max_delay_s", "must be from 0"),
        ({"max_delay_s": "60"}, "retry.max_delay_s", "must be a number of seconds"),
        ({"initial_delay_s": 60, "max_delay_s": 30}, "retry.max_delay_s", "at least 60 s"),
        ({"backoff": "Quadratic"}, "retry.backoff", "not one of Fixed, Linear, Exponential"),
        ({"strategy": "Resume"}, "retry.strategy", "not one of Repair, Restart"),
        ({"enabled": "yes"}, "retry.enabled", "true or false"),
    ],
)
def test_bad_policy_is_refused_naming_the_field(
    kwargs: dict[str, object], field: str, says: str
) -> None:
    with pytest.raises(RetryPolicyError) as caught:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert says in str(caught.value)


def test_enum_values_given_as_text_are_read() -> None:
    retry = RetryPolicy(backoff="Linear", strategy="Restart")  # type: ignore[arg-type]
    assert (retry.backoff, retry.strategy) == (Backoff.LINEAR, RetryStrategy.RESTART)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(list(Backoff)),
    st.integers(1, 100),
    st.floats(0, MAX_DELAY_S),
    st.floats(0, MAX_DELAY_S),
)
def test_delays_never_exceed_the_cap_and_never_shrink(
    backoff: Backoff, attempts: int, initial: float, extra: float
) -> None:
    maximum = min(MAX_DELAY_S, initial + extra)
    retry = RetryPolicy(True, attempts, backoff, initial, maximum)
    delays = [retry.delay_before_attempt(n) for n in range(1, attempts + 1)]
    assert delays[0] == 0
    assert all(0 <= delay <= maximum for delay in delays)
    assert delays == sorted(delays)
