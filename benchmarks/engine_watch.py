"""Benchmark: one engine watching 2,000 concurrent runs against the emulator.

The emulator runs in a subprocess at `--speed` times real time with its rate limits paced on
emulated time (`--emulated-limits`), so the whole run is a faithful, sped-up simulation of a real
workspace with its real limits. The engine runs in this process on a clock synchronised with the
emulator's. Runs last 1-30 minutes of emulated time (a fixed duration per job, spread evenly).

Prints: runs/get calls per run-hour, runs/list calls, 429s received, errors surfaced, the p50/p95
lag between a state change in the emulator and our record of it, CPU seconds and peak RSS.
Targets: <= 60 runs/get per run-hour at p95 lag < 30 s, zero 429s surfacing as errors, < 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from emulator_process import start_emulator, wait_ready

from polysync.clock import ScaledClock
from polysync.config import Settings
from polysync.domain.models import RunStatus
from polysync.domain.records import NewPlatform, RunFilter
from polysync.engine.engine import EngineSettings
from polysync.engine.polling import PollPolicy
from polysync.services import Services

TOKEN = "dapi-demo-token-0000000000000000"


def jobs_spec(count: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    jobs = []
    for index in range(count):
        duration_s = 60 + (29 * 60) * index / max(1, count - 1)  # 1 .. 30 minutes
        n_tasks = rng.choice([1, 2, 3, 4])
        per_task = duration_s / n_tasks
        tasks = []
        for t in range(n_tasks):
            task: dict[str, object] = {
                "task_key": f"t{t}",
                "notebook_task": {"notebook_path": f"/bench/{index}/{t}"},
                "emulator": {"duration_s": max(1.0, per_task - 3), "pending_s": 3},
            }
            if t:
                task["depends_on"] = [{"task_key": f"t{t - 1}"}]
            tasks.append(task)
        jobs.append({"name": f"bench-{index:04d}", "max_concurrent_runs": 1000, "tasks": tasks})
    return jobs


async def main(args: argparse.Namespace) -> None:
    server, port = start_emulator("--speed", str(args.speed), "--emulated-limits")
    base = f"http://127.0.0.1:{port}"
    home = Path(tempfile.mkdtemp(prefix="polysync-bench-"))
    os.environ["POLYSYNC_BENCH_TOKEN"] = TOKEN
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as control:
            await wait_ready(control)
            await control.post("/emulator/jobs", json={"jobs": jobs_spec(args.jobs, 1)})
            emu_now_s = (await control.get("/emulator/clock")).json()["now_ms"] / 1000
            clock = ScaledClock(args.speed, start_s=emu_now_s)
            settings = Settings(home=home, database_url=f"sqlite+aiosqlite:///{home / 'bench.db'}")
            services = await Services.open(
                settings,
                clock=clock,
                api_clock=clock,
                engine_settings=EngineSettings(policy=PollPolicy()),
            )
            await services.add_platform(
                NewPlatform(
                    name="bench",
                    workspace_url=base,
                    auth={"method": "pat", "token": "env:POLYSYNC_BENCH_TOKEN"},
                    options={"api_versions": {"jobs_list": "2.2"}},
                )
            )
            _, imported = await services.import_jobs("bench", None)
            jobs = [
                r.job for r in imported if r.job is not None and r.job.name.startswith("bench-")
            ]
            wall0, cpu0 = time.perf_counter(), time.process_time()
            runs = [await services.engine.submit(jobs[i % len(jobs)], {}) for i in range(args.runs)]
            stop = asyncio.Event()
            engine_task = asyncio.create_task(services.engine.run_forever(stop))
            stats0 = (await control.get("/emulator/stats")).json()
            deadline = time.perf_counter() + args.timeout_s
            while time.perf_counter() < deadline:
                await asyncio.sleep(1)
                active = await services.list_runs(RunFilter(active_only=True, limit=1))
                if not active:
                    break
            stop.set()
            await engine_task
            wall_s, cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
            stats1 = (await control.get("/emulator/stats")).json()
            emulated = {}
            for run in runs:
                stored = await services.store.get_run(run.id)
                if stored.run_id is None:
                    continue
                body = (
                    await control.get(
                        "/api/2.1/jobs/runs/get",
                        params={"run_id": stored.run_id},
                        headers={"Authorization": f"Bearer {TOKEN}"},
                    )
                ).json()
                emulated[run.id] = (stored, body, await services.store.run_events(run.id))
            await services.aclose()
    finally:
        server.terminate()
        server.wait(timeout=10)

    def delta(endpoint: str, status: str | None = None) -> int:
        def count(stats: dict[str, object]) -> int:
            entry = stats["endpoints"].get(endpoint, {})  # type: ignore[attr-defined]
            return int(
                entry.get("total", 0)
                if status is None
                else entry.get("by_status", {}).get(status, 0)
            )

        return count(stats1) - count(stats0)

    run_hours = 0.0
    lags: list[float] = []
    start_lags: list[float] = []
    end_lags: list[float] = []
    finished = 0
    for _stored, body, events in emulated.values():
        start_ms, end_ms = body["start_time"], body["end_time"]
        if end_ms:
            run_hours += (end_ms - start_ms) / 3_600_000
        running_ms = min(
            (t["start_time"] + t["setup_duration"] for t in body["tasks"] if t["start_time"]),
            default=None,
        )
        for event in events:
            if event.status is RunStatus.RUNNING and running_ms:
                start_lags.append(event.at.timestamp() - running_ms / 1000)
            if event.status.is_terminal and end_ms:
                end_lags.append(event.at.timestamp() - end_ms / 1000)
                finished += 1
    lags = start_lags + end_lags

    def p95(values: list[float]) -> str:
        return f"{statistics.quantiles(values, n=100)[94]:.1f}" if len(values) > 2 else "-"

    gets = delta("jobs/runs/get")
    q = statistics.quantiles(lags, n=100) if len(lags) > 2 else [0.0] * 99
    rows = [
        ("runs watched", f"{len(emulated):,} ({finished:,} finished)"),
        ("emulator speed", f"x{args.speed:g} (limits on emulated time)"),
        ("run-hours (emulated)", f"{run_hours:,.1f}"),
        ("runs/get calls", f"{gets:,}"),
        ("runs/get per run-hour", f"{gets / run_hours:.1f}" if run_hours else "n/a"),
        ("runs/list calls (sweeps)", f"{delta('jobs/runs/list'):,}"),
        ("runs/get-output calls", f"{delta('jobs/runs/get-output'):,}"),
        ("run-now calls", f"{delta('jobs/run-now'):,}"),
        (
            "429s received",
            f"{sum(delta(e, '429') for e in ('jobs/runs/get', 'jobs/runs/list', 'jobs/run-now')):,}",
        ),
        (
            "runs ending in an error",
            f"{sum(1 for s, _, _ in emulated.values() if 'Could not reach' in s.message):,}",
        ),
        (
            "lag p50 / p95 / max (emulated s)",
            f"{q[49]:.1f} / {q[94]:.1f} / {max(lags, default=0):.1f}",
        ),
        ("p95 lag Starting->Running / ->terminal", f"{p95(start_lags)} / {p95(end_lags)}"),
        ("wall time", f"{wall_s:.1f} s"),
        ("engine CPU", f"{cpu_s:.1f} s"),
        ("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nEngine: {args.runs:,} concurrent runs watched by one engine")
    print("-" * (width + 36))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--speed", type=float, default=5.0)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    asyncio.run(main(parser.parse_args()))
