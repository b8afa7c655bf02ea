"""Benchmark: one engine watching many concurrent runs over several workspaces (issue 14).

Each workspace is an emulator process (`--workspaces`, default 5) at `--speed` times real time
with its rate limits paced on emulated time (`--emulated-limits`): a faithful, sped-up
simulation of real workspaces with their real limits. The engine runs in this process on a
clock synchronised with the emulators'. Runs last `--min-minutes`..`--max-minutes` of emulated
time (a fixed duration per job, spread evenly) and are all queued at once.

Prints: calls by endpoint and per run-hour, 429s received, errors surfaced, the p50/p95/max lag
between a state change in a workspace and our record of it, CPU seconds and what they mean at
real speed, peak RSS. CPU at real speed: the engine does the same work whatever the speed (the
same calls, sweeps and writes), so its CPU seconds divided by the *emulated* seconds the watch
lasted is the share of a core it needs at real speed (idle waking, a small part, is counted
at the sped-up rate and so overstated).
Targets: p95 lag <= 30 s, <= 1 core at real speed, <= 400 MB RSS with 10,000 runs over 5.
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
from polysync.services import Services

TOKEN = "dapi-demo-token-0000000000000000"


def jobs_spec(count: int, seed: int, min_s: float, max_s: float) -> list[dict[str, object]]:
    rng = random.Random(seed)
    jobs = []
    for index in range(count):
        duration_s = min_s + (max_s - min_s) * index / max(1, count - 1)
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


async def runs_of(control: httpx.AsyncClient, run_ids: list[str]) -> dict[str, dict[str, object]]:
    """These runs of a workspace with their tasks, by RunId (runs/get after the watch: not
    counted), a few at a time."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    semaphore = asyncio.Semaphore(8)

    async def one(run_id: str) -> tuple[str, dict[str, object]]:
        async with semaphore:
            for _ in range(20):  # the workspace's runs/get limit answers 429: wait and retry
                answer = await control.get(
                    "/api/2.1/jobs/runs/get", params={"run_id": run_id}, headers=headers
                )
                if answer.status_code != 429:
                    return run_id, answer.json()
                await asyncio.sleep(0.5)
            return run_id, {}

    found = await asyncio.gather(*(one(run_id) for run_id in run_ids))
    return {run_id: body for run_id, body in found if body.get("start_time")}


async def main(args: argparse.Namespace) -> None:
    servers = [
        start_emulator("--speed", str(args.speed), "--emulated-limits")
        for _ in range(args.workspaces)
    ]
    bases = [f"http://127.0.0.1:{port}" for _, port in servers]
    home = Path(tempfile.mkdtemp(prefix="polysync-bench-"))
    os.environ["POLYSYNC_BENCH_TOKEN"] = TOKEN
    controls = [httpx.AsyncClient(base_url=base, timeout=120) for base in bases]
    try:
        for control in controls:
            await wait_ready(control)
            spec = jobs_spec(args.jobs, 1, args.min_minutes * 60, args.max_minutes * 60)
            await control.post("/emulator/jobs", json={"jobs": spec})
        emu_now_s = (await controls[0].get("/emulator/clock")).json()["now_ms"] / 1000
        clock = ScaledClock(args.speed, start_s=emu_now_s)
        settings = Settings(home=home, database_url=f"sqlite+aiosqlite:///{home / 'bench.db'}")
        services = await Services.open(settings, clock=clock, api_clock=clock)
        jobs = []
        for index, base in enumerate(bases):
            name = f"bench-{index}"
            await services.add_platform(
                NewPlatform(
                    name=name,
                    workspace_url=base,
                    auth={"method": "pat", "token": "env:POLYSYNC_BENCH_TOKEN"},
                    options={"api_versions": {"jobs_list": "2.2"}},
                )
            )
            _, imported = await services.import_jobs(name, None)
            jobs.append(
                [r.job for r in imported if r.job is not None and r.job.name.startswith("bench-")]
            )
        wall0, cpu0 = time.perf_counter(), time.process_time()
        emulated0 = clock.now()
        runs = [
            await services.engine.submit(jobs[i % len(jobs)][(i // len(jobs)) % len(jobs[0])], {})
            for i in range(args.runs)
        ]
        submit_cpu_s = time.process_time() - cpu0
        stop = asyncio.Event()
        engine_task = asyncio.create_task(services.engine.run_forever(stop))
        stats0 = [(await c.get("/emulator/stats")).json() for c in controls]
        deadline = time.perf_counter() + args.timeout_s
        while time.perf_counter() < deadline:
            await asyncio.sleep(1)
            if not await services.list_runs(RunFilter(active_only=True, limit=1)):
                break
        stop.set()
        await engine_task
        wall_s, cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
        emulated_s = clock.now() - emulated0
        stats1 = [(await c.get("/emulator/stats")).json() for c in controls]
        # RunIds are per workspace (two emulators may hand out the same one): look up each run
        # in its own workspace.
        stored_runs = [await services.store.get_run(run.id) for run in runs]
        in_databricks: dict[int, dict[str, dict[str, object]]] = {}
        for index, control in enumerate(controls):
            platform = await services.store.get_platform(f"bench-{index}")
            ids = [r.run_id for r in stored_runs if r.platform_id == platform.id and r.run_id]
            in_databricks[platform.id] = await runs_of(control, ids)
        emulated = {}
        for run in runs:
            stored = await services.store.get_run(run.id)
            workspace = in_databricks[stored.platform_id]
            if stored.run_id is None or stored.run_id not in workspace:
                continue
            emulated[run.id] = (
                stored,
                workspace[stored.run_id],
                await services.store.run_events(run.id),
            )
        await services.aclose()
    finally:
        for control in controls:
            await control.aclose()
        for server, _ in servers:
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

        return sum(
            count(after) - count(before) for before, after in zip(stats0, stats1, strict=True)
        )

    run_hours = 0.0
    start_lags: list[float] = []
    end_lags: list[float] = []
    finished = 0
    for _stored, body, events in emulated.values():
        start_ms, end_ms = body["start_time"], body.get("end_time") or 0  # type: ignore[assignment]
        if end_ms:
            run_hours += (end_ms - start_ms) / 3_600_000  # type: ignore[operator]
        running_ms = min(
            (t["start_time"] + t["setup_duration"] for t in body["tasks"] if t["start_time"]),  # type: ignore[attr-defined, index]
            default=None,
        )
        for event in events:
            if event.status is RunStatus.RUNNING and running_ms:
                start_lags.append(event.at.timestamp() - running_ms / 1000)
            if event.status.is_terminal and end_ms:
                end_lags.append(event.at.timestamp() - end_ms / 1000)  # type: ignore[operator]
                finished += 1
    lags = start_lags + end_lags

    def p95(values: list[float]) -> str:
        return f"{statistics.quantiles(values, n=100)[94]:.1f}" if len(values) > 2 else "-"

    endpoints = ("jobs/run-now", "jobs/runs/list", "jobs/runs/get", "jobs/runs/get-output")
    total = sum(delta(e) for e in endpoints)
    q = statistics.quantiles(lags, n=100) if len(lags) > 2 else [0.0] * 99
    watch_cpu_s = cpu_s - submit_cpu_s
    rows = [
        ("workspaces (emulator processes)", f"{args.workspaces}"),
        ("runs watched", f"{len(emulated):,} ({finished:,} finished)"),
        ("emulator speed", f"x{args.speed:g} (limits on emulated time)"),
        ("run-hours (emulated)", f"{run_hours:,.1f}"),
        *((f"{e} calls", f"{delta(e):,}") for e in endpoints),
        (
            "calls per run / per run-hour",
            f"{total / max(1, len(emulated)):.2f} / {total / run_hours:.1f}"
            if run_hours
            else "n/a",
        ),
        ("429s received", f"{sum(delta(e, '429') for e in endpoints):,}"),
        (
            "runs ending in an error",
            f"{sum(1 for s, _, _ in emulated.values() if 'Could not' in s.message):,}",
        ),
        (
            "lag p50 / p95 / max (emulated s)",
            f"{q[49]:.1f} / {q[94]:.1f} / {max(lags, default=0):.1f}",
        ),
        ("p95 lag Starting->Running / ->terminal", f"{p95(start_lags)} / {p95(end_lags)}"),
        ("wall time / emulated time", f"{wall_s:.0f} s / {emulated_s:.0f} s"),
        ("engine CPU (submit / watch)", f"{cpu_s:.1f} s ({submit_cpu_s:.1f} / {watch_cpu_s:.1f})"),
        ("CPU at real speed (cores)", f"{cpu_s / emulated_s:.3f}" if emulated_s else "n/a"),
        ("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nEngine: {args.runs:,} concurrent runs over {args.workspaces} workspaces, one engine")
    print("-" * (width + 36))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--workspaces", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=200, help="jobs per workspace")
    parser.add_argument("--min-minutes", type=float, default=1.0)
    parser.add_argument("--max-minutes", type=float, default=30.0)
    parser.add_argument("--speed", type=float, default=5.0)
    parser.add_argument("--timeout-s", type=float, default=1200.0)
    asyncio.run(main(parser.parse_args()))
