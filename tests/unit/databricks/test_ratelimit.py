"""Token bucket arithmetic and sharing, on a ManualClock (no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from polysync.clock import ManualClock
from polysync.databricks.endpoints import Endpoint
from polysync.databricks.ratelimit import RateLimiterRegistry, TokenBucket, WorkspaceRateLimiter
from polysync.databricks.settings import RateLimits


async def settle() -> None:
    """Let every ready task run until it blocks (no time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_full_bucket_serves_a_burst_then_paces() -> None:
    clock = ManualClock()
    bucket = TokenBucket(20.0, clock)
    for _ in range(20):
        await bucket.acquire()  # would hang if it had to wait: the clock never moves here
    assert bucket.available() == pytest.approx(0.0)

    waiter = asyncio.create_task(bucket.acquire())
    await settle()
    assert not waiter.done()
    assert clock.next_deadline() == pytest.approx(clock.now() + 0.05)
    clock.advance(0.05)
    await settle()
    assert waiter.done()


async def test_refill_is_capped_at_capacity() -> None:
    clock = ManualClock()
    bucket = TokenBucket(5.0, clock, capacity=2.0)
    await bucket.acquire()
    await bucket.acquire()
    clock.advance(3600)
    assert bucket.available() == pytest.approx(2.0)
    clock.advance(0.1)
    assert bucket.available() == pytest.approx(2.0)


async def test_partial_refill() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10.0, clock)
    for _ in range(10):
        await bucket.acquire()
    clock.advance(0.25)
    assert bucket.available() == pytest.approx(2.5)


async def test_waiters_are_served_in_order_at_the_rate() -> None:
    clock = ManualClock()
    bucket = TokenBucket(2.0, clock, capacity=1.0)
    await bucket.acquire()
    served: list[int] = []

    async def caller(n: int) -> None:
        await bucket.acquire()
        served.append(n)

    tasks = [asyncio.create_task(caller(n)) for n in range(4)]
    await settle()
    assert served == []
    for expected in ([0], [0, 1], [0, 1, 2], [0, 1, 2, 3]):
        clock.advance(0.5)
        await settle()
        assert served == expected
    await asyncio.gather(*tasks)


async def test_pause_holds_everyone_then_restarts_empty() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10.0, clock)
    start = clock.now()
    bucket.pause_until(start + 3.0)
    assert bucket.paused_until_s == start + 3.0
    tasks = [asyncio.create_task(bucket.acquire()) for _ in range(3)]
    await settle()
    clock.advance(2.99)
    await settle()
    assert not any(t.done() for t in tasks)
    clock.advance(0.01)  # the pause is over, but the bucket restarts empty
    await settle()
    assert not any(t.done() for t in tasks)
    clock.advance(0.1)
    await settle()
    assert sum(t.done() for t in tasks) == 1
    clock.advance(0.2)
    await settle()
    assert all(t.done() for t in tasks)


async def test_a_shorter_pause_does_not_cut_a_longer_one() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10.0, clock)
    bucket.pause_until(clock.now() + 5.0)
    bucket.pause_until(clock.now() + 1.0)
    assert bucket.paused_until_s == clock.now() + 5.0


async def test_a_pause_extended_while_waiting_is_honoured() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10.0, clock)
    start = clock.now()
    bucket.pause_until(start + 1.0)
    task = asyncio.create_task(bucket.acquire())
    await settle()
    bucket.pause_until(start + 4.0)
    clock.advance(1.5)
    await settle()
    assert not task.done()
    clock.advance(2.6)
    await settle()
    assert task.done()


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        TokenBucket(0.0, ManualClock())


def test_workspace_limiter_uses_the_rate_per_endpoint() -> None:
    limiter = WorkspaceRateLimiter(RateLimits(runs_get=250.0), ManualClock())
    assert limiter.bucket(Endpoint.RUNS_GET).rate_per_s == 250.0
    assert limiter.bucket(Endpoint.RUN_NOW).rate_per_s == 20.0
    assert limiter.bucket(Endpoint.JOBS_DELETE).rate_per_s == 10.0
    assert limiter.bucket(Endpoint.RUNS_LIST).rate_per_s == 30.0


def test_workspace_limiter_starts_with_half_the_workspaces_burst() -> None:
    # The workspace's bucket holds a second's worth: for run-now half of it stays as slack for
    # requests that arrive bunched, so starting at the full rate never earns a 429.
    limiter = WorkspaceRateLimiter(RateLimits(runs_get=250.0), ManualClock())
    assert limiter.bucket(Endpoint.RUN_NOW).capacity == 10.0
    assert limiter.bucket(Endpoint.RUNS_GET).capacity == 250.0  # reads: a second's burst
    assert WorkspaceRateLimiter(RateLimits(run_now=1.0), ManualClock()).bucket(
        Endpoint.RUN_NOW
    ).capacity == pytest.approx(1.0)


async def test_a_pause_affects_only_its_endpoint() -> None:
    clock = ManualClock()
    limiter = WorkspaceRateLimiter(RateLimits(), clock)
    limiter.pause_until(Endpoint.RUNS_GET, clock.now() + 10.0)
    await limiter.acquire(Endpoint.JOBS_GET)  # not held
    held = asyncio.create_task(limiter.acquire(Endpoint.RUNS_GET))
    await settle()
    assert not held.done()
    clock.advance(10.01)
    await settle()
    assert held.done()


def test_registry_shares_limits_per_workspace() -> None:
    registry = RateLimiterRegistry(ManualClock())
    first = registry.for_workspace("https://adb-1.2.azuredatabricks.net", RateLimits())
    same = registry.for_workspace("HTTPS://ADB-1.2.azuredatabricks.net/", RateLimits(runs_get=1.0))
    other = registry.for_workspace("https://adb-3.4.azuredatabricks.net", RateLimits())
    assert same is first
    assert other is not first
    # The first client's limits stay.
    assert same.bucket(Endpoint.RUNS_GET).rate_per_s == 100.0
