"""Which failures are retried for which calls, and how long the client waits (D8)."""

from __future__ import annotations

import random

import pytest

from polysync.clock import ManualClock
from polysync.databricks.endpoints import Endpoint
from polysync.databricks.retry import RetryPolicy, backoff_s, may_retry, retry_delay_s
from polysync.databricks.settings import RetrySettings
from polysync.errors import (
    DatabricksAuthError,
    DatabricksBadRequestError,
    DatabricksError,
    DatabricksNotFoundError,
    DatabricksRateLimitError,
    DatabricksServerError,
    DatabricksTransportError,
    DatabricksUnavailableError,
    TokenExpiredError,
)

RATE_LIMITED = DatabricksRateLimitError("slow down", http_status=429, retry_after_s=7.0)
UNAVAILABLE = DatabricksUnavailableError("later", http_status=503, retry_after_s=2.0)
SERVER = DatabricksServerError("boom", http_status=500)
TRANSPORT = DatabricksTransportError("connection reset")
NOT_FOUND = DatabricksNotFoundError("Job 1 does not exist.", http_status=400)
BAD_REQUEST = DatabricksBadRequestError("bad", http_status=400, error_code="MALFORMED_REQUEST")
LOCKED = DatabricksBadRequestError("busy", http_status=400, error_code="COULD_NOT_ACQUIRE_LOCK")
AUTH = DatabricksAuthError("Invalid access token.", http_status=403)
EXPIRED = TokenExpiredError("Token is expired", http_status=401)


@pytest.mark.parametrize(
    ("error", "idempotent", "sent", "expected"),
    [
        # GETs, cancels, run-now with a token: everything transient is retried.
        (RATE_LIMITED, True, True, True),
        (UNAVAILABLE, True, True, True),
        (SERVER, True, True, True),
        (TRANSPORT, True, True, True),  # includes a lost answer
        (LOCKED, True, True, True),
        (NOT_FOUND, True, True, False),
        (BAD_REQUEST, True, True, False),
        (AUTH, True, True, False),
        (EXPIRED, True, True, False),  # refreshed once by the client instead, not backed off
        # Plain POSTs (run-now without a token, create, delete): only refusals.
        (RATE_LIMITED, False, True, True),
        (UNAVAILABLE, False, True, False),
        (SERVER, False, True, False),
        (TRANSPORT, False, True, False),  # the answer was lost: it may have run
        (LOCKED, False, True, False),
        (NOT_FOUND, False, True, False),
        # Nothing left the client (connect failure, token endpoint down): any method.
        (TRANSPORT, False, False, True),
        (SERVER, False, False, True),
        (AUTH, False, False, False),
        (BAD_REQUEST, False, False, False),
    ],
)
def test_what_is_retried(
    error: DatabricksError, idempotent: bool, sent: bool, expected: bool
) -> None:
    assert may_retry(error, idempotent=idempotent, request_sent=sent) is expected


def test_endpoint_retry_safety() -> None:
    repeatable = {endpoint for endpoint in Endpoint if endpoint.idempotent}
    assert repeatable == {
        Endpoint.JOBS_LIST,
        Endpoint.JOBS_GET,
        Endpoint.RUNS_GET,
        Endpoint.RUNS_GET_OUTPUT,
        Endpoint.RUNS_LIST,
        Endpoint.RUNS_CANCEL,
        Endpoint.RUNS_CANCEL_ALL,
        Endpoint.WORKSPACE_LIST,
        Endpoint.WORKSPACE_GET_STATUS,
        Endpoint.WORKSPACE_EXPORT,
        Endpoint.PIPELINES_LIST,
        Endpoint.PIPELINES_GET,
        Endpoint.PIPELINES_LIST_UPDATES,
        Endpoint.PIPELINES_GET_UPDATE,
        Endpoint.PIPELINES_STOP,
        Endpoint.PIPELINES_EVENTS,
    }
    stops = {Endpoint.RUNS_CANCEL, Endpoint.RUNS_CANCEL_ALL, Endpoint.PIPELINES_STOP}
    assert all(e.method == "GET" for e in repeatable - stops)
    # Starts are never repeated blindly: run-now and runs/submit only with a token (D8).
    assert (
        not {Endpoint.RUN_NOW, Endpoint.RUNS_SUBMIT, Endpoint.PIPELINES_START_UPDATE} & repeatable
    )


POLICY = RetryPolicy(deadline_s=60.0, max_attempts=5, backoff_base_s=1.0, backoff_max_s=8.0)


def delay(
    error: DatabricksError, *, attempt: int = 1, remaining_s: float = 60.0, idempotent: bool = True
) -> float | None:
    return retry_delay_s(
        error,
        attempt=attempt,
        idempotent=idempotent,
        request_sent=True,
        remaining_s=remaining_s,
        policy=POLICY,
        rng=random.Random(7),
    )


def test_retry_after_is_honoured_exactly() -> None:
    assert delay(RATE_LIMITED) == 7.0
    assert delay(UNAVAILABLE, attempt=4) == 2.0
    assert delay(RATE_LIMITED, idempotent=False) == 7.0


def test_backoff_grows_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (40, 8.0)]:
        for _ in range(50):
            value = backoff_s(attempt, POLICY, rng)
            assert ceiling / 2 <= value <= ceiling
    # Jitter: not every caller waits the same.
    assert len({round(backoff_s(3, POLICY, rng), 6) for _ in range(20)}) > 1


def test_the_deadline_is_respected_on_a_manual_clock() -> None:
    clock = ManualClock()
    deadline_s = clock.now() + POLICY.deadline_s
    waited_s = 0.0
    attempt = 0
    rng = random.Random(3)
    policy = RetryPolicy(deadline_s=60.0, max_attempts=100, backoff_base_s=1.0, backoff_max_s=8.0)
    while True:
        attempt += 1
        wait = retry_delay_s(
            SERVER,
            attempt=attempt,
            idempotent=True,
            request_sent=True,
            remaining_s=deadline_s - clock.now(),
            policy=policy,
            rng=rng,
        )
        if wait is None:
            break
        clock.advance(wait)
        waited_s += wait
    assert waited_s <= 60.0
    assert attempt > 5  # it did keep trying until the budget ran out
    assert deadline_s - clock.now() < 8.0  # gave up only when the next wait would overrun


def test_a_retry_after_beyond_the_deadline_gives_up_now() -> None:
    assert delay(RATE_LIMITED, remaining_s=6.9) is None
    assert delay(RATE_LIMITED, remaining_s=7.0) == 7.0


def test_attempts_are_capped() -> None:
    assert delay(SERVER, attempt=4) is not None
    assert delay(SERVER, attempt=5) is None


def test_policy_from_settings() -> None:
    policy = RetryPolicy.from_settings(RetrySettings(deadline_s=10, max_attempts=3))
    assert policy == RetryPolicy(
        deadline_s=10.0, max_attempts=3, backoff_base_s=1.0, backoff_max_s=30.0
    )
