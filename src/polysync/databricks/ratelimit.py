"""Rate limits shared by every caller of one workspace: an async token bucket per endpoint."""

from __future__ import annotations

import asyncio

from polysync.clock import Clock
from polysync.databricks.endpoints import Endpoint
from polysync.databricks.settings import RateLimits

# Epoch seconds (~1.7e9) as floats resolve only ~2.4e-7 s, so a wait of exactly one token's time
# can refill 0.99999 of one: within this much time of a token (or of a pause's end) counts as there.
_TIME_EPSILON_S = 1e-6


class TokenBucket:
    """`rate_per_s` requests per second, bursts up to `capacity`; waiters are served in order."""

    def __init__(self, rate_per_s: float, clock: Clock, capacity: float | None = None) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate must be > 0 requests per second, got {rate_per_s}")
        self.rate_per_s = rate_per_s
        # One second's worth: enough for a burst of pages, too little to trip the server's bucket.
        self.capacity = capacity if capacity is not None else max(1.0, rate_per_s)
        self._clock = clock
        self._tokens = self.capacity
        self._updated_s = clock.now()
        self._paused_until_s = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def paused_until_s(self) -> float:
        return self._paused_until_s

    def available(self) -> float:
        """Tokens in the bucket now (for tests and metrics)."""
        self._refill(self._clock.now())
        return self._tokens

    def _refill(self, now_s: float) -> None:
        if now_s > self._updated_s:
            self._tokens = min(
                self.capacity, self._tokens + (now_s - self._updated_s) * self.rate_per_s
            )
            self._updated_s = now_s

    async def acquire(self) -> None:
        """Wait for a token. The lock queues callers so the first to ask is the first served."""
        async with self._lock:
            while True:
                now_s = self._clock.now()
                if now_s + _TIME_EPSILON_S < self._paused_until_s:
                    await self._clock.sleep(self._paused_until_s - now_s)
                    continue
                self._refill(now_s)
                if self._tokens + _TIME_EPSILON_S * self.rate_per_s >= 1.0:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return
                await self._clock.sleep((1.0 - self._tokens) / self.rate_per_s)

    def pause_until(self, until_s: float) -> None:
        """Hold every caller until `until_s` (a 429's Retry-After), then restart empty.

        Restarting empty means the callers that waited resume at the steady rate instead of in one
        burst that would earn the next 429.
        """
        if until_s <= self._paused_until_s:
            return
        self._paused_until_s = until_s
        self._tokens = 0.0
        self._updated_s = max(self._updated_s, until_s)


# The workspace's bucket holds a second's worth of requests; for run-now ours holds half of that.
# At the same steady rate the server's bucket then always keeps half a second of slack, which
# absorbs requests arriving bunched (concurrent connections, clock skew between hosts): a queue of
# 1,000 run-nows goes out at the ceiling without a single 429 (issue 14). Reads keep a second's
# burst (an import of many jobs), and a 429 there only pauses their bucket.
START_BURST_S = 0.5


class WorkspaceRateLimiter:
    """One token bucket per endpoint for one workspace, at the workspace's rates; run-now with
    half the workspace's burst (START_BURST_S)."""

    def __init__(self, limits: RateLimits, clock: Clock) -> None:
        self.limits = limits
        self._buckets = {
            endpoint: TokenBucket(
                limits.for_endpoint(endpoint),
                clock,
                capacity=max(1.0, limits.for_endpoint(endpoint) * START_BURST_S)
                if endpoint is Endpoint.RUN_NOW
                else None,
            )
            for endpoint in Endpoint
        }

    def bucket(self, endpoint: Endpoint) -> TokenBucket:
        return self._buckets[endpoint]

    async def acquire(self, endpoint: Endpoint) -> None:
        await self._buckets[endpoint].acquire()

    def pause_until(self, endpoint: Endpoint, until_s: float) -> None:
        self._buckets[endpoint].pause_until(until_s)


class RateLimiterRegistry:
    """Rate limiters by workspace, so two clients of one workspace share one set of limits.

    The first client to ask for a workspace sets its limits; later clients share them as they are.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._limiters: dict[str, WorkspaceRateLimiter] = {}

    def for_workspace(self, workspace_url: str, limits: RateLimits) -> WorkspaceRateLimiter:
        key = workspace_url.rstrip("/").lower()
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = WorkspaceRateLimiter(limits, self.clock)
        return limiter
