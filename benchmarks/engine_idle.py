"""Benchmark: the CPU an idle engine burns (issue 14 target: < 0.5 CPU s per 10 idle minutes).

An engine with nothing to watch runs `--minutes` of its clock at `--speed` times real time (a
ScaledClock), over a SQLite file with one platform. Its wakes are counted in its own clock (every
`idle_s` it looks for runs other processes added; its heartbeat every `heartbeat_s`), so the CPU
measured is the CPU of that many real minutes: the work per wake does not depend on the speed.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from polysync.clock import ScaledClock
from polysync.config import Settings
from polysync.services import Services


async def main(args: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="polysync-idle-"))
    clock = ScaledClock(args.speed)
    settings = Settings(home=home, database_url=f"sqlite+aiosqlite:///{home / 'idle.db'}")
    services = await Services.open(settings, clock=clock, api_clock=clock)
    try:
        stop = asyncio.Event()
        engine = asyncio.create_task(services.engine.run_forever(stop))
        await asyncio.sleep(2 / args.speed)  # started, reconciled
        cycles0, cpu0, t0 = services.engine.health.cycles, time.process_time(), clock.now()
        await asyncio.sleep(args.minutes * 60 / args.speed)
        cpu_s, minutes = time.process_time() - cpu0, (clock.now() - t0) / 60
        cycles = services.engine.health.cycles - cycles0
        stop.set()
        await engine
    finally:
        await services.aclose()
    s = services.engine.settings
    rows = [
        ("engine minutes (its clock)", f"{minutes:.1f} (x{args.speed:g})"),
        ("cycles (looks for new runs)", f"{cycles} (every {s.idle_s:g} s)"),
        ("heartbeats", f"every {s.heartbeat_s:g} s"),
        ("CPU s", f"{cpu_s:.2f}"),
        ("CPU s per 10 idle minutes", f"{cpu_s * 10 / minutes:.2f}"),
        ("CPU ms per cycle", f"{1000 * cpu_s / max(1, cycles):.2f} (heartbeats included)"),
    ]
    width = max(len(r[0]) for r in rows)
    print("\nIdle engine")
    print("-" * (width + 30))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--speed", type=float, default=20.0)
    asyncio.run(main(parser.parse_args()))
