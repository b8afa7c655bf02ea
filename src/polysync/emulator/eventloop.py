"""The workspace's one queue of events on emulated time, advanced to the injected clock.

Every state change of a run or a pipeline update is an event scheduled at an exact emulated time.
Before any read or write the workspace is advanced to `clock.now()`, processing due events in time
order, so what a client sees depends only on the clock, never on how often it polls.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from polysync.clock import Clock


def seconds_to_ms(seconds: float) -> int:
    """Emulated seconds as whole milliseconds (rounded)."""
    return round(seconds * 1000)


class EventLoop:
    """Actions due at emulated times in ms, run in time order (equal times in scheduling order)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._events: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._now_ms = seconds_to_ms(clock.now())

    @property
    def now_ms(self) -> int:
        """Emulated now in ms: the time of the event being processed, else the last advance."""
        return self._now_ms

    def advance(self) -> None:
        """Process every event due by the clock's current time, in time order."""
        target = seconds_to_ms(self.clock.now())
        while self._events and self._events[0][0] <= target:
            when, _, action = heapq.heappop(self._events)
            self._now_ms = max(self._now_ms, when)
            action()
        self._now_ms = max(self._now_ms, target)

    def schedule_at(self, when_ms: int, action: Callable[[], None]) -> None:
        """Run `action` when emulated time reaches `when_ms` (never earlier than now)."""
        heapq.heappush(self._events, (max(when_ms, self._now_ms), next(self._seq), action))

    def next_event_ms(self) -> int | None:
        """When the earliest pending event is due, in ms; None when nothing is pending."""
        return self._events[0][0] if self._events else None
