"""The engine's Task scheduler under load (issue 12): 10,000 Tasks with schedules from every
minute to daily over five time zones, driven through emulated time by one engine and by two
engines sharing one PostgreSQL database.

Each tick (`--tick-s` emulated seconds) every engine takes one scheduler step: due schedules
fire, their TaskRuns are recorded under the unique (task, trigger, scheduled-for) constraint.
Dispatch is off (no runs start): this measures the scheduler, not Databricks.

- CPU s per emulated hour: this process's CPU time over the window, scaled to an hour (both
  engines run in this process, so the two-engine row is their sum; the database server's CPU
  is not counted).
- Fire lag: for each fire, how late its TaskRun was committed: the emulated time from its fire
  time to the tick that saw it (at most one tick), plus the real time that tick's step took
  until its batch was committed.
- Exactly once: every (task, trigger, scheduled-for) is counted in the database afterwards.

    .venv/bin/python benchmarks/scheduler.py [--tasks 10000] [--minutes 60] [--tick-s 5]
        [--postgres URL]   (default: $POLYSYNC_TEST_POSTGRES_URL; without it, SQLite only)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from polysync.clock import ManualClock
from polysync.config import Settings
from polysync.domain.models import ImportedJob
from polysync.domain.records import NewPlatform
from polysync.engine.engine import EngineSettings
from polysync.engine.scheduler import SchedulerSettings
from polysync.services import Services
from polysync.store.tables import task_schedules, tasks
from polysync.tasks.schedule import MAX_PREVIEW, Schedule, next_fire_times

RHYTHMS = ["* * * * *", "*/5 * * * *", "*/15 * * * *", "0 * * * *", "30 */6 * * *", "0 2 * * *"]
ZONES = ["UTC", "Europe/London", "Australia/Sydney", "America/New_York", "Asia/Kolkata"]
START = datetime(2026, 10, 25, 0, 0, 1, tzinfo=UTC)  # London's clocks go back in the first hour


async def seed(services: Services, count: int) -> None:
    """A platform, a job and `count` Tasks with one schedule each (bulk inserted: setup only)."""
    now = services.now()
    platform = await services.store.add_platform(
        NewPlatform(name="bench", workspace_url="https://adb-1.1.azuredatabricks.net",
                    auth={"method": "pat", "token": "env:BENCH_TOKEN"}),
        now,
    )  # fmt: skip
    job, _ = await services.store.upsert_job(
        platform.id,
        ImportedJob(external_id="1", name="bench", kind="Databricks Job", task_count=1),
        now,
    )
    engine: Any = services.store.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        for first in range(0, count, 1000):
            ids = range(first, min(count, first + 1000))
            await conn.execute(
                insert(tasks),
                [
                    {
                        "id": i + 1,
                        "name": f"task-{i}",
                        "job_id": job.id,
                        "parameters": {},
                        "paused": False,
                        "description": "",
                        "tags": {},
                        "priority": 50,
                        "concurrency_cap": 1000,
                        "on_overlap": "queue",
                        "timeout_s": None,
                        "retry": {},
                        "dependencies_saved_at": START,
                        "created_at": START,
                        "updated_at": START,
                    }
                    for i in ids
                ],
            )
            await conn.execute(
                insert(task_schedules),
                [
                    {
                        "task_id": i + 1,
                        "position": 0,
                        "cron": RHYTHMS[i % len(RHYTHMS)],
                        "timezone": ZONES[(i // len(RHYTHMS)) % len(ZONES)],
                        "paused": False,
                        "misfire_policy": "run-latest",
                        "misfire_cap": 10,
                        "last_fired_for": START,
                    }
                    for i in ids
                ],
            )
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('tasks', 'id'), (SELECT max(id) FROM tasks))"
            )


def expected_fires(count: int, start: datetime, end: datetime) -> int:
    """How many fire times the `count` Tasks have in (start, end]: one walk per distinct
    (rhythm, zone), times how many Tasks share it."""
    shared: dict[tuple[str, str], int] = {}
    for i in range(count):
        key = (RHYTHMS[i % len(RHYTHMS)], ZONES[(i // len(RHYTHMS)) % len(ZONES)])
        shared[key] = shared.get(key, 0) + 1
    total = 0
    for (cron, zone), tasks_sharing in shared.items():
        times = next_fire_times(Schedule(cron, zone), start, MAX_PREVIEW)
        within = sum(1 for t in times if t <= end)
        if within == MAX_PREVIEW:  # a long window: walk on
            after = times[-1]
            while True:
                more = [
                    t for t in next_fire_times(Schedule(cron, zone), after, MAX_PREVIEW) if t <= end
                ]
                within += len(more)
                if len(more) < MAX_PREVIEW:
                    break
                after = more[-1]
        total += within * tasks_sharing
    return total


def instrument(services: Services, stamps: list[tuple[float, int]]) -> None:
    """Record (monotonic time, fires committed) after each `record_fires` of this engine."""
    store: Any = services.store
    original = store.record_fires

    async def record_fires(groups: Sequence[Any]) -> Any:
        result = await original(groups)
        stamps.append((time.monotonic(), sum(len(inserted) for _, inserted, _ in result)))
        return result

    store.record_fires = record_fires


async def measure(urls: list[str], count: int, minutes: float, tick_s: float) -> dict[str, Any]:
    clock = ManualClock(START.timestamp())
    settings = EngineSettings(
        scheduler=SchedulerSettings(slots=0, refresh_s=10**9, sweep_s=10**9), tasks_enabled=True
    )
    home = Path(tempfile.mkdtemp())
    engines = [
        await Services.open(Settings(home=home, database_url=url), clock=clock, engine_settings=settings)
        for url in urls
    ]  # fmt: skip
    try:
        await seed(engines[0], count)
        stamps: list[list[tuple[float, int]]] = [[] for _ in engines]
        for services, own in zip(engines, stamps, strict=True):
            instrument(services, own)
            await services.engine.tasks.step()  # builds the heap (start-up, not measured)
        lags: list[float] = []
        cpu = time.process_time()
        ticks = int(minutes * 60 / tick_s)
        for _ in range(ticks):
            clock.advance(tick_s)
            now = clock.now()
            for own in stamps:
                own.clear()
            began = time.monotonic()
            reports = await asyncio.gather(*(s.engine.tasks.step() for s in engines))
            for report, own in zip(reports, stamps, strict=True):
                emulated = [now - f.timestamp() for _, f in report.fired]
                # The fires of a batch were committed when its record_fires returned.
                offsets = [at - began for at, n in own for _ in range(n)]
                lags += [e + o for e, o in zip(emulated, offsets, strict=True)]
        cpu_s = time.process_time() - cpu
        counts = await engines[0].store.count_task_runs()
        twice = sum(1 for n in counts.values() if n > 1)
        return {
            "engines": len(engines),
            "fires": len(lags),
            "keys": len(counts),
            "expected": expected_fires(count, START, START + timedelta(seconds=ticks * tick_s)),
            "twice": twice,
            "cpu_per_hour_s": cpu_s * 3600 / (minutes * 60),
            "p50_s": statistics.median(lags) if lags else 0.0,
            "p99_s": statistics.quantiles(lags, n=100)[98] if len(lags) > 1 else 0.0,
        }
    finally:
        for services in engines:
            await services.aclose()


async def fresh_postgres(server: str) -> tuple[str, str]:
    name = f"polysync_bench_{secrets.token_hex(4)}"
    admin = make_url(server).set(drivername="postgresql", database="postgres")
    conninfo = admin.render_as_string(hide_password=False)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(server).set(database=name).render_as_string(hide_password=False), conninfo


async def drop_postgres(url: str, conninfo: str) -> None:
    name = make_url(url).database
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--tick-s", type=float, default=5.0)
    parser.add_argument("--postgres", default=os.environ.get("POLYSYNC_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    rows: list[tuple[str, dict[str, Any]]] = []
    sqlite = Path(tempfile.mkdtemp()) / "bench.db"
    rows.append(
        ("SQLite", await measure([f"sqlite+aiosqlite:///{sqlite}"], args.tasks, args.minutes, args.tick_s))
    )  # fmt: skip
    if args.postgres:
        for count in (1, 2):
            url, admin = await fresh_postgres(args.postgres)
            try:
                row = await measure([url] * count, args.tasks, args.minutes, args.tick_s)
            finally:
                await drop_postgres(url, admin)
            rows.append(("PostgreSQL", row))
    window = timedelta(minutes=args.minutes)
    print(
        f"{args.tasks:,} Tasks, rhythms {', '.join(RHYTHMS)} over {len(ZONES)} zones; "
        f"emulated {window} from {START.isoformat()}, a tick every {args.tick_s:g} s"
    )
    header = (
        "| database | engines | fires expected | TaskRuns recorded | fired twice | "
        "CPU s per emulated hour | lag p50 s | lag p99 s |"
    )
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for database, r in rows:
        print(
            f"| {database} | {r['engines']} | {r['expected']:,} | {r['keys']:,} | {r['twice']} | "
            f"{r['cpu_per_hour_s']:.1f} | {r['p50_s']:.2f} | {r['p99_s']:.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
