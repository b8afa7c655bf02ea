"""Fire-time CPU (issue 12, the pure part): what deciding schedule fires costs a scheduler loop.

N schedules with rhythms from every minute to daily, over a spread of time zones, are driven
through an emulated hour with a tick every `--tick-s` seconds, the way the engine's scheduler loop
will drive them: a heap of each schedule's next fire time, and `due_fires` only for those due.
The "scan" row calls `due_fires` for every schedule on every tick instead (no index), on a tenth of
the schedules, to show why the engine keeps the heap. Prints one table row per mode.

    .venv/bin/python benchmarks/fire_times.py [--schedules 10000] [--hours 1] [--tick-s 5]
"""

from __future__ import annotations

import argparse
import heapq
import time
from datetime import UTC, datetime, timedelta

from polysync.tasks.schedule import Schedule, due_fires, next_fire_time

RHYTHMS = ["* * * * *", "*/5 * * * *", "*/15 * * * *", "0 * * * *", "30 */6 * * *", "0 2 * * *"]
ZONES = ["UTC", "Europe/London", "Australia/Sydney", "America/New_York", "Asia/Kolkata"]
START = datetime(2026, 10, 25, 0, 0, tzinfo=UTC)  # London's clocks go back inside the hour


def schedules(count: int) -> list[Schedule]:
    return [
        Schedule(RHYTHMS[i % len(RHYTHMS)], ZONES[(i // len(RHYTHMS)) % len(ZONES)])
        for i in range(count)
    ]


def with_heap(items: list[Schedule], hours: float, tick_s: float) -> tuple[int, int, float]:
    """(due_fires calls, fires, CPU seconds) with a next-fire heap."""
    cpu = time.process_time()
    watermarks = [START] * len(items)
    heap: list[tuple[datetime, int]] = []
    for index, schedule in enumerate(items):
        upcoming = next_fire_time(schedule, START)
        if upcoming is not None:
            heap.append((upcoming, index))
    heapq.heapify(heap)
    calls = fires = 0
    now = START
    end = START + timedelta(hours=hours)
    while now < end:
        now += timedelta(seconds=tick_s)
        while heap and heap[0][0] <= now:
            _, index = heapq.heappop(heap)
            due = due_fires(items[index], watermarks[index], now)
            calls += 1
            fires += len(due.fires)
            watermarks[index] = due.last_fired_for
            if due.next_fire is not None:
                heapq.heappush(heap, (due.next_fire, index))
    return calls, fires, time.process_time() - cpu


def scan(items: list[Schedule], hours: float, tick_s: float) -> tuple[int, int, float]:
    """(due_fires calls, fires, CPU seconds) calling due_fires for every schedule every tick."""
    cpu = time.process_time()
    watermarks = [START] * len(items)
    calls = fires = 0
    now = START
    end = START + timedelta(hours=hours)
    while now < end:
        now += timedelta(seconds=tick_s)
        for index, schedule in enumerate(items):
            due = due_fires(schedule, watermarks[index], now)
            calls += 1
            fires += len(due.fires)
            watermarks[index] = due.last_fired_for
    return calls, fires, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--tick-s", type=float, default=5.0)
    args = parser.parse_args()
    print(
        f"{'mode':<6} {'schedules':>9} {'ticks':>6} {'calls':>9} {'fires':>9} "
        f"{'CPU s':>7} {'CPU s / emulated h':>19} {'µs / call':>9}"
    )
    ticks = int(args.hours * 3600 / args.tick_s)
    for mode, function, count in (
        ("heap", with_heap, args.schedules),
        ("scan", scan, max(1, args.schedules // 10)),
    ):
        calls, fires, cpu_s = function(schedules(count), args.hours, args.tick_s)
        print(
            f"{mode:<6} {count:>9,} {ticks:>6,} {calls:>9,} {fires:>9,} {cpu_s:>7.2f} "
            f"{cpu_s / args.hours:>19.2f} {cpu_s / max(calls, 1) * 1e6:>9.0f}"
        )


if __name__ == "__main__":
    main()
