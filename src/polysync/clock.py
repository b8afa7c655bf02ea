"""Clocks: the one source of time for the engine and the emulator, injectable so tests advance time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time in epoch seconds, and an async sleep measured in the same time."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class AdvanceableClock(Clock, Protocol):
    """A clock that can also be moved ahead (manual clocks, and the emulator's served clock)."""

    def advance(self, seconds: float) -> None: ...


class SystemClock:
    """Real time."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Real time running `speed` times faster from the moment it is made (the emulator's served clock)."""

    def __init__(self, speed: float = 1.0, start_s: float | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be > 0, got {speed}")
        self.speed = speed
        self._start_wall_s = time.time() if start_s is None else start_s
        self._start_mono_s = time.monotonic()
        self._offset_s = 0.0

    def now(self) -> float:
        elapsed_s = (time.monotonic() - self._start_mono_s) * self.speed
        return self._start_wall_s + elapsed_s + self._offset_s

    def advance(self, seconds: float) -> None:
        """Jump ahead (the emulator's control plane can do this on a served clock too)."""
        if seconds < 0:
            raise ValueError(f"cannot advance a clock backwards ({seconds} s)")
        self._offset_s += seconds

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)


class ManualClock:
    """Time that moves only when a test calls `advance`; sleepers wake when their deadline passes."""

    def __init__(self, start_s: float = 1_750_000_000.0) -> None:
        self._now_s = start_s
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now_s

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot advance a clock backwards ({seconds} s)")
        self._now_s += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now_s:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting (lets a test know a task has parked)."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    def next_deadline(self) -> float | None:
        live = [deadline for deadline, _, fut in self._sleepers if not fut.done()]
        return min(live) if live else None

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now_s + seconds, next(self._seq), fut))
        await fut
