"""Slowing down API key guessing: failed sign-ins and refused API keys, per source address.

In memory, per process (docs/security.md): several server processes each count on their own, and
a restart forgets. Behind a reverse proxy the source address is the proxy's unless uvicorn is told
to trust its X-Forwarded-For (`--forwarded-allow-ips`); then it is the client's.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque

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
