"""Slowing down API key guessing (failed sign-ins and refused API keys, per source address), and
capping the requests that stay open (event streams, long polls) per API key and in all.

In memory, per process (docs/security.md): several server processes each count on their own, and
a restart forgets. Behind a reverse proxy the source address is the proxy's unless uvicorn is told
to trust its X-Forwarded-For (`--forwarded-allow-ips`); then it is the client's.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict, deque

from polysync.clock import Clock

log = logging.getLogger(__name__)

MAX_FAILURES = 10
"""Failures from one address within WINDOW_S before it is answered 429."""
WINDOW_S = 60.0
MAX_SOURCES = 10_000
"""Addresses remembered at most; the one seen least recently is forgotten first."""


class FailureLimiter:
    """After `max_failures` failures from one source within `window_s`, that source is refused
    (429 with Retry-After) until the oldest of them is `window_s` old. Times on `clock`."""

    def __init__(
        self,
        clock: Clock,
        *,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self._clock = clock
        self.max_failures = max_failures
        self.window_s = window_s
        self._max_sources = max_sources
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after_s(self, source: str) -> float | None:
        """Seconds until `source` may try again, or None when it may try now."""
        failures = self._failures.get(source)
        if failures is None or len(failures) < self.max_failures:
            return None
        wait_s = failures[0] + self.window_s - self._clock.now()
        return wait_s if wait_s > 0 else None

    def failed(self, source: str, what: str) -> None:
        """Count one failure of `source` and log it (`what`: e.g. "sign-in", "API key")."""
        failures = self._failures.pop(source, None) or deque(maxlen=self.max_failures)
        failures.append(self._clock.now())
        self._failures[source] = failures  # now the most recently seen
        while len(self._failures) > self._max_sources:
            self._failures.popitem(last=False)
        log.warning("%s refused from %s (%d recent failures)", what, source, len(failures))

    def refused(self, source: str, what: str, retry_after_s: float) -> None:
        """Log a request refused because `source` failed too often."""
        log.warning(
            "%s from %s refused without checking: too many failures, retry in %.0f s",
            what,
            source,
            retry_after_s,
        )


MAX_STREAMS_PER_KEY = 8
"""Event streams and long polls one API key may hold open at once."""
MAX_STREAMS = 256
"""Event streams and long polls open at once in this process, all keys together."""
STREAM_RETRY_AFTER_S = 5


class StreamLimitError(Exception):
    """Too many open streams: for this key (`per_key`) or in all."""

    def __init__(self, message: str, *, per_key: bool) -> None:
        super().__init__(message)
        self.per_key = per_key


class StreamSlots:
    """Counts the requests held open (SSE, `?wait=` long polls) per API key and in all, so that
    one client cannot hold every connection and worker of the server (M7). In memory, per
    process, like FailureLimiter."""

    def __init__(self, *, per_key: int = MAX_STREAMS_PER_KEY, total: int = MAX_STREAMS) -> None:
        self.per_key = per_key
        self.total = total
        self._open: Counter[str] = Counter()

    @property
    def open(self) -> int:
        return sum(self._open.values())

    def acquire(self, key: str) -> None:
        """Take a slot for `key` (an API key's prefix); StreamLimitError when none is free."""
        if self._open[key] >= self.per_key:
            raise StreamLimitError(
                f"This API key already has {self.per_key} event streams or long polls open, the "
                "most one key may hold; close one (or poll without `wait`) and try again.",
                per_key=True,
            )
        if self.open >= self.total:
            raise StreamLimitError(
                f"The server already holds {self.total} event streams or long polls open, its "
                "limit; try again shortly.",
                per_key=False,
            )
        self._open[key] += 1

    def release(self, key: str) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]
