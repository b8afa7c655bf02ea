"""Benchmark: contention profiles across two engines, one of them killed (issue 13, D14).

`--runs` runs (default 300) are executed at once on two platforms (one emulated workspace, in
process, on a manual clock) under a global concurrency profile of 5 and a global rate profile of
10 per 60 s (token bucket). Two engines share the database (PostgreSQL with `--db` or
POLYSYNC_TEST_POSTGRES_URL, a fresh database made and dropped; else a SQLite file) and step in
turn every `--step-s` emulated seconds; the first stops abruptly (its leases left to expire)
after `--kill-after-s`. The emulator's active runs are sampled after every engine step.

Prints: the most runs active at once in the workspace, the most starts in any 60 s window (the
workspace's run start times), the emulated time to drain every run, the wall time it took, the
runs that succeeded, and the database. Targets: <= 5 active, <= 10 starts per 60 s window, every
run done; the drain cannot be shorter than runs / 10 per minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from polysync.clock import ManualClock
from polysync.config import Settings
from polysync.domain.models import RunStatus
from polysync.domain.records import NewPlatform, RunFilter
from polysync.emulator.app import create_app
from polysync.emulator.serving import InProcessTransport
from polysync.emulator.spec import parse_workspace
from polysync.engine.engine import EngineSettings
from polysync.engine.polling import PollPolicy
from polysync.services import Services

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' harness

from tests.acceptance.contention_chaos import most_in_any_window

TOKEN = "dapi-bench-token-0123456789abcdef"
HOST = "https://adb-1234567890123456.7.azuredatabricks.net"
JOB_ID = 700000000000001


@contextlib.asynccontextmanager
async def database(url: str | None, home: Path) -> AsyncIterator[str]:
    if not url:
        yield f"sqlite+aiosqlite:///{home / 'polysync.db'}"
        return
    name = f"polysync_bench_{secrets.token_hex(6)}"
    admin = make_url(url).set(drivername="postgresql", database="postgres")
    conninfo = admin.render_as_string(hide_password=False)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main(args: argparse.Namespace) -> None:
    os.environ["POLYSYNC_BENCH_TOKEN"] = TOKEN
    spec = parse_workspace(
        {
            "workspace": {"default_pending_s": 2, "terminating_s": 1},
            "auth": {"tokens": [TOKEN]},
            "jobs": [
                {
                    "job_id": JOB_ID,
                    "name": "load",
                    "max_concurrent_runs": 1000,
                    "tasks": [
                        {
                            "task_key": "load",
                            "notebook_task": {"notebook_path": "/load"},
                            "emulator": {"duration_s": args.duration_s},
                        }
                    ],
                }
            ],
        }
    )
    clock, api_clock = ManualClock(), ManualClock()
    app = create_app(spec, clock=clock, real_clock=api_clock)
    with tempfile.TemporaryDirectory() as tmp:
        async with database(args.db, Path(tmp)) as url:
            engines: list[Services] = []
            for name in ("a", "b"):
                (Path(tmp) / name).mkdir()
                engines.append(
                    await Services.open(
                        Settings(home=Path(tmp) / name, database_url=url),
                        clock=clock,
                        api_clock=api_clock,
                        transport_factory=lambda _p: InProcessTransport(app=app),
                        engine_settings=EngineSettings(policy=PollPolicy(), lease_s=60),
                    )
                )
            first, second = engines
            try:
                await run(args, app, clock, api_clock, first, second, url)
            finally:
                await second.aclose()
                await first.connections.aclose()  # killed: no release, its leases expire
                await first.store.aclose()  # type: ignore[attr-defined]


async def run(
    args: argparse.Namespace,
    app: object,
    clock: ManualClock,
    api_clock: ManualClock,
    first: Services,
    second: Services,
    url: str,
) -> None:
    for name in ("east", "west"):
        await first.add_platform(
            NewPlatform(
                name=name,
                workspace_url=HOST,
                auth={"method": "pat", "token": "env:POLYSYNC_BENCH_TOKEN"},
            )
        )
        await first.import_jobs(name, [str(JOB_ID)])
    both = ["east", "west"]
    await first.profiles.create(
        {"name": "cap", "type": "concurrency", "scope": "global", "max_concurrent": 5},
        platforms=both,
    )
    await first.profiles.create(
        {"name": "pace", "type": "rate", "scope": "global", "limit": 10, "window_s": 60},
        platforms=both,
    )
    jobs = [await first.get_job(str(JOB_ID), platform=name) for name in both]
    for index in range(args.runs):
        await first.execute(jobs[index % 2], {})

    workspace = app.emulator.workspace  # type: ignore[attr-defined]
    started_s = clock.now()
    wall_s = time.perf_counter()
    most_active = 0
    alive = [first, second]
    while True:
        if alive[0] is first and clock.now() - started_s >= args.kill_after_s:
            alive = [second]
        for services in alive:
            await services.engine.step()
            workspace.advance()
            most_active = max(most_active, workspace.active_runs)
        active = await second.list_runs(RunFilter(limit=1, active_only=True))
        if not active:
            break
        clock.advance(args.step_s)
        api_clock.advance(args.step_s)
    drained_s = clock.now() - started_s
    wall_s = time.perf_counter() - wall_s
    final = await second.list_runs(RunFilter(limit=args.runs + 10))
    succeeded = sum(1 for run in final if run.status is RunStatus.SUCCESS)
    starts_s = [run.start_time_ms / 1000 for run in workspace.runs.values()]
    floor_s = (args.runs - 10) / 10 * 60
    rows = [
        (
            "runs / platforms / engines",
            f"{args.runs} / 2 / 2 (engine a killed at {args.kill_after_s:g} s)",
        ),
        ("database", make_url(url).get_backend_name()),
        ("max active in the workspace (cap 5)", str(most_active)),
        ("max starts in any 60 s window (cap 10)", str(most_in_any_window(starts_s, 60))),
        ("runs succeeded", f"{succeeded} of {args.runs}"),
        ("started in Databricks (never twice)", str(len(workspace.runs))),
        ("time to drain (emulated)", f"{drained_s:,.0f} s (floor at 10/min: {floor_s:,.0f} s)"),
        ("wall time", f"{wall_s:,.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print("\nContention profiles: concurrency 5 + rate 10 per 60 s, global, two engines")
    print("-" * (width + 40))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--duration-s", type=float, default=15.0, help="emulated run length")
    parser.add_argument("--step-s", type=float, default=5.0)
    parser.add_argument("--kill-after-s", type=float, default=600.0)
    parser.add_argument("--db", default=os.environ.get("POLYSYNC_TEST_POSTGRES_URL"))
    asyncio.run(main(parser.parse_args()))
