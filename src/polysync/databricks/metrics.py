"""Counters of what the client did: calls by endpoint and status, 429s, retries, token refreshes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TRANSPORT_ERROR = "transport_error"


@dataclass
class ClientMetrics:
    """Cumulative since the client was made; the engine and the service read them."""

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(endpoint key, HTTP status or "transport_error") -> count of requests sent."""
    rate_limited: Counter[str] = field(default_factory=Counter)
    """endpoint key -> 429 answers (and REQUEST_LIMIT_EXCEEDED)."""
    retries: Counter[str] = field(default_factory=Counter)
    """endpoint key -> repeats after a retryable failure."""
    retry_wait_s: float = 0.0
    """Total seconds spent waiting before retries (Retry-After and backoff)."""
    token_fetches: int = 0
    """Tokens obtained from an identity provider (the first one and every refresh)."""
    token_refreshes: int = 0
    """Tokens obtained to replace an older one: ahead of expiry or after an expired-token answer."""
    token_rejections: int = 0
    """Answers saying the token expired, each followed by one refresh and one retry."""

    def record_call(self, endpoint_key: str, outcome: int | str) -> None:
        self.calls[(endpoint_key, str(outcome))] += 1

    def record_retry(self, endpoint_key: str, delay_s: float) -> None:
        self.retries[endpoint_key] += 1
        self.retry_wait_s += delay_s

    def snapshot(self) -> dict[str, Any]:
        """A plain, JSON-ready copy."""
        return {
            "calls": {
                f"{endpoint} {outcome}": n for (endpoint, outcome), n in sorted(self.calls.items())
            },
            "rate_limited": dict(sorted(self.rate_limited.items())),
            "retries": dict(sorted(self.retries.items())),
            "retry_wait_s": self.retry_wait_s,
            "token_fetches": self.token_fetches,
            "token_refreshes": self.token_refreshes,
            "token_rejections": self.token_rejections,
        }
