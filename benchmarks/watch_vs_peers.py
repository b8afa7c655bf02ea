"""Benchmark: watching the same runs with Polysync's engine, the databricks-sdk waiter and
Airflow's polling policy, each against its own emulator (issue 14).

The workload: `--runs` runs (default 100) of 2-10 minutes at real speed (spread evenly over
`--jobs` jobs of two tasks; every `--fail-every`-th job's second task fails), all queued at once.
Each tool runs in its own child process against its own emulator process started with
`--speed S --emulated-limits`: the workspace runs S times faster than real time and its rate
limits (run-now 20/s, runs/get 100/s, runs/list 30/s) hold per *emulated* second. Every tool's
waits run on emulated time too (the SDK's `time.sleep`/`time.time` and its retry clock are
scaled, Airflow's 30 s poll becomes 30/S real seconds, Polysync's engine runs on a ScaledClock),
so calls, 429s and detection lags are those of a real-speed run; wall time is 1/S of it.

- Polysync: the engine of this repository (`Engine.run_forever`) over a SQLite file.
- databricks-sdk: one thread per run, `w.jobs.run_now(...).result()` (the SDK's waiter: runs/get
  every 1, 2, ... 10 s plus jitter; 429/503 honour Retry-After), as its users write it.
- Airflow: the provider's policy reproduced with httpx (installing apache-airflow does not fit
  CI's time): run-now and one runs/get for the run page URL, then one runs/get per run every
  30 s (`polling_period_seconds`), runs/get-output per failed task; retries as its hook does
  (3 retries, exponential 1-8 s, on 429, >= 500 and connection errors; Retry-After ignored).

Printed: calls by endpoint, calls per run and per run-hour, detection lag of each run's end
(p50/p95/max, emulated seconds: when the tool knew the run had ended minus its end_time), CPU
seconds, peak RSS, peak threads, 429s received, runs lost to errors, the ratios Polysync/peer, and
the floor (see `floor_calls`) beside Polysync's figure.

How figures scale with the speed factor: calls, 429s and lags are per emulated time and do not
depend on it. CPU seconds measure the work done (same number of calls and records at any speed);
the only part that grows with wall time is idle waking, which is small (see engine_watch.py).
Threads and RSS do not depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from emulator_process import start_emulator, wait_ready

TOKEN = "dapi-demo-token-0000000000000000"
GRID_S = 10.0  # the floor's sweep interval: p95 detection lag just under 10 s
RUNS_PER_PAGE = 25
ENDPOINTS = ("jobs/run-now", "jobs/runs/list", "jobs/runs/get", "jobs/runs/get-output")


# ------------------------------------------------------------------ the workload
def jobs_spec(count: int, fail_every: int, min_s: float, max_s: float) -> list[dict[str, Any]]:
    jobs = []
    for index in range(count):
        duration_s = min_s + (max_s - min_s) * index / max(1, count - 1)
        fails = fail_every > 0 and index % fail_every == fail_every - 1
        first: dict[str, Any] = {
            "task_key": "extract",
            "notebook_task": {"notebook_path": f"/bench/{index}/extract"},
            "emulator": {"duration_s": duration_s / 2 - 3, "pending_s": 3},
        }
        second: dict[str, Any] = {
            "task_key": "load",
            "depends_on": [{"task_key": "extract"}],
            "notebook_task": {"notebook_path": f"/bench/{index}/load"},
            "emulator": {"duration_s": duration_s / 2, "pending_s": 0}
            | ({"outcome": "failure", "error": "ValueError: bad row"} if fails else {}),
        }
        jobs.append(
            {"name": f"peer-{index:03d}", "max_concurrent_runs": 1000, "tasks": [first, second]}
        )
    return jobs


class EmulatedClock:
    """Emulated time in a child: the emulator's clock at start, running `speed` times faster."""

    def __init__(self, speed: float, start_s: float) -> None:
        self.speed = speed
        self._start_s = start_s
        self._wall0 = time.monotonic()

    def now(self) -> float:
        return self._start_s + (time.monotonic() - self._wall0) * self.speed

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds) / self.speed)


class PeakThreads:
    def __init__(self) -> None:
        self.peak = threading.active_count()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, threading.active_count())

    def stop(self) -> int:
        self._done.set()
        return self.peak - 1  # not counting this sampler


# ------------------------------------------------------------------ the tools (children)
def child_sdk(base: str, job_ids: list[int], runs: int, clock: EmulatedClock) -> dict[str, Any]:
    import databricks.sdk.clock as sdk_clock
    import databricks.sdk.service.jobs as sdk_jobs
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import OperationFailed

    class ScaledTime:  # what the SDK's waiter sees as the `time` module
        time = staticmethod(clock.now)
        sleep = staticmethod(clock.sleep)

    sdk_jobs.time = ScaledTime  # type: ignore[assignment]
    sdk_clock.RealClock.time = lambda self: clock.now()  # type: ignore[method-assign]
    sdk_clock.RealClock.sleep = lambda self, s: clock.sleep(s)  # type: ignore[method-assign]
    w = WorkspaceClient(host=base, token=TOKEN, auth_type="pat")
    seen: dict[str, float] = {}
    errors: list[str] = []

    def one(index: int) -> None:
        try:
            waiter = w.jobs.run_now(job_id=job_ids[index % len(job_ids)])
            run_id = str(waiter.run_id)
            with contextlib.suppress(
                OperationFailed
            ):  # INTERNAL_ERROR: it raises, the end is known
                waiter.result(timeout=timedelta(hours=3))
            seen[run_id] = clock.now()
        except Exception as exc:  # a run its user lost
            errors.append(f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=runs) as pool:
        list(pool.map(one, range(runs)))
    return {"seen": seen, "errors": errors}


async def child_airflow(
    base: str, job_ids: list[int], runs: int, clock: EmulatedClock
) -> dict[str, Any]:
    seen: dict[str, float] = {}
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=180) as c:

        async def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            # DatabricksHook: tenacity, retry_limit=3, wait_exponential(min=1, max=2**3).
            for attempt in range(4):
                try:
                    response = await c.request(method, f"/api/2.1/{path}", **kwargs)
                except httpx.TransportError:
                    if attempt == 3:
                        raise
                else:
                    if response.status_code < 500 and response.status_code != 429:
                        response.raise_for_status()
                        return dict(response.json())
                    if attempt == 3:
                        response.raise_for_status()
                await asyncio.sleep(min(8.0, 2.0**attempt) / clock.speed)
            raise AssertionError("unreachable")

        async def one(index: int) -> None:
            try:
                body = {"job_id": job_ids[index % len(job_ids)]}
                run_id = (await call("POST", "jobs/run-now", json=body))["run_id"]
                await call("GET", "jobs/runs/get", params={"run_id": run_id})  # run page URL
                while True:
                    await asyncio.sleep(30.0 / clock.speed)  # polling_period_seconds
                    run = await call("GET", "jobs/runs/get", params={"run_id": run_id})
                    state = run.get("state", {})
                    if state.get("life_cycle_state") in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR"):
                        break
                seen[str(run_id)] = clock.now()
                if state.get("result_state") != "SUCCESS":
                    for task in run.get("tasks", []):
                        if task.get("state", {}).get("result_state") == "FAILED":
                            params = {"run_id": task["run_id"]}
                            await call("GET", "jobs/runs/get-output", params=params)
            except Exception as exc:  # a task instance failed: the run is lost to Airflow
                errors.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(one(i) for i in range(runs)))
    return {"seen": seen, "errors": errors}


async def child_polysync(
    base: str, job_ids: list[int], runs: int, clock: EmulatedClock
) -> dict[str, Any]:
    from polysync.clock import ScaledClock
    from polysync.config import Settings
    from polysync.domain.records import NewPlatform, RunFilter
    from polysync.services import Services

    home = Path(tempfile.mkdtemp(prefix="polysync-peers-"))
    os.environ["POLYSYNC_BENCH_TOKEN"] = TOKEN
    engine_clock = ScaledClock(clock.speed, start_s=clock.now())
    settings = Settings(home=home, database_url=f"sqlite+aiosqlite:///{home / 'bench.db'}")
    services = await Services.open(settings, clock=engine_clock, api_clock=engine_clock)
    errors: list[str] = []
    seen: dict[str, float] = {}
    try:
        await services.add_platform(
            NewPlatform(
                name="peers",
                workspace_url=base,
                auth={"method": "pat", "token": "env:POLYSYNC_BENCH_TOKEN"},
            )
        )
        _, imported = await services.import_jobs("peers", [str(j) for j in job_ids])
        by_external = {r.job.external_id: r.job for r in imported if r.job is not None}
        jobs = [by_external[str(j)] for j in job_ids]
        ours = [await services.engine.submit(jobs[i % len(jobs)], {}) for i in range(runs)]
        stop = asyncio.Event()
        engine = asyncio.create_task(services.engine.run_forever(stop))
        while await services.list_runs(RunFilter(active_only=True, limit=1)):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        stop.set()
        await engine
        for run in ours:
            stored = await services.store.get_run(run.id)
            if "Could not" in stored.message or stored.run_id is None:
                errors.append(stored.message)
                continue
            ends = [e.at for e in await services.store.run_events(run.id) if e.status.is_terminal]
            seen[stored.run_id] = ends[0].timestamp()
    finally:
        await services.aclose()
    return {"seen": seen, "errors": errors}


def child(args: argparse.Namespace) -> None:
    threads = PeakThreads()
    cpu0 = time.process_time()
    base = f"http://127.0.0.1:{args.port}"
    # Emulated time from the emulator's own clock, read here: the child's start-up is not lost.
    now_ms = httpx.get(f"{base}/emulator/clock").json()["now_ms"]
    clock = EmulatedClock(args.speed, now_ms / 1000)
    job_ids = [int(j) for j in args.job_ids.split(",")]
    if args.child == "sdk":
        result = child_sdk(base, job_ids, args.runs, clock)
    elif args.child == "airflow":
        result = asyncio.run(child_airflow(base, job_ids, args.runs, clock))
    else:
        result = asyncio.run(child_polysync(base, job_ids, args.runs, clock))
    result |= {
        "cpu_s": time.process_time() - cpu0,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": threads.stop(),
    }
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------ the parent
async def run_tool(tool: str, args: argparse.Namespace) -> dict[str, Any]:
    server, port = start_emulator("--speed", str(args.speed), "--emulated-limits")
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as control:
            await wait_ready(control)
            spec = jobs_spec(args.jobs, args.fail_every, args.min_s, args.max_s)
            await control.post("/emulator/jobs", json={"jobs": spec})
            headers = {"Authorization": f"Bearer {TOKEN}"}
            listed = (
                await control.get("/api/2.1/jobs/list", params={"limit": 100}, headers=headers)
            ).json()
            job_ids = sorted(
                j["job_id"] for j in listed["jobs"] if j["settings"]["name"].startswith("peer-")
            )
            stats0 = (await control.get("/emulator/stats")).json()
            wall0 = time.perf_counter()
            command = [
                sys.executable,
                __file__,
                "--child",
                tool,
                "--port",
                str(port),
                "--speed",
                str(args.speed),
                "--runs",
                str(args.runs),
                "--job-ids",
                ",".join(map(str, job_ids)),
            ]
            out = await asyncio.to_thread(
                subprocess.run, command, capture_output=True, text=True, timeout=args.timeout_s
            )
            wall_s = time.perf_counter() - wall0
            lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
            if not lines:
                raise SystemExit(f"{tool} failed:\n{out.stderr[-3000:]}")
            result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
            stats1 = (await control.get("/emulator/stats")).json()
            runs: list[dict[str, Any]] = []  # after the tool: these calls are not counted
            page_token = None
            while True:
                params: dict[str, Any] = {"limit": 25, "expand_tasks": "true"}
                if page_token:
                    params["page_token"] = page_token
                page = (
                    await control.get("/api/2.2/jobs/runs/list", params=params, headers=headers)
                ).json()
                runs += page.get("runs", [])
                page_token = page.get("next_page_token")
                if not page_token:
                    break
    finally:
        server.terminate()
        server.wait(timeout=10)
    result["wall_s"] = wall_s
    result["calls"] = {e: _delta(stats0, stats1, e) for e in ENDPOINTS}
    result["calls_429"] = sum(_delta(stats0, stats1, e, "429") for e in ENDPOINTS)
    result["runs"] = runs
    return result


def _delta(
    before: dict[str, Any], after: dict[str, Any], endpoint: str, status: str | None = None
) -> int:
    def count(stats: dict[str, Any]) -> int:
        entry = stats["endpoints"].get(endpoint, {})
        return int(
            entry.get("total", 0) if status is None else entry.get("by_status", {}).get(status, 0)
        )

    return count(after) - count(before)


def floor_calls(runs: list[dict[str, Any]]) -> dict[str, float]:
    """The floor for these runs: each run's run-now, its share of runs/list sweeps over active
    runs every GRID_S (one page per 25 active runs at each grid point), one call to learn its
    end, and one runs/get-output per failed task."""
    spans = [(r["start_time"] / 1000, r["end_time"] / 1000) for r in runs if r.get("end_time")]
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    pages = 0
    t = math.floor(first / GRID_S) * GRID_S + GRID_S
    while t <= last + GRID_S:
        active = sum(1 for s, e in spans if s <= t < e + GRID_S)  # its end is seen at t
        pages += math.ceil(active / RUNS_PER_PAGE)
        t += GRID_S
    failed_tasks = sum(
        1
        for r in runs
        for task in r.get("tasks", [])
        if task.get("state", {}).get("result_state") == "FAILED"
    )
    return {
        "jobs/run-now": len(runs),
        "jobs/runs/list": pages,
        "jobs/runs/get": len(runs),
        "jobs/runs/get-output": failed_tasks,
    }


def summarise(tool: str, result: dict[str, Any]) -> dict[str, Any]:
    runs = result["runs"]
    ends = {str(r["run_id"]): r["end_time"] / 1000 for r in runs if r.get("end_time")}
    lags = [result["seen"][rid] - end for rid, end in ends.items() if rid in result["seen"]]
    run_hours = sum(
        (r["end_time"] - r["start_time"]) / 3_600_000 for r in runs if r.get("end_time")
    )
    total = sum(result["calls"].values())
    q = statistics.quantiles(lags, n=100) if len(lags) > 2 else [0.0] * 99
    return {
        "tool": tool,
        "calls": result["calls"],
        "total": total,
        "per_run": total / max(1, len(runs)),
        "per_run_hour": total / run_hours if run_hours else 0.0,
        "lag": (q[49], q[94], max(lags, default=0.0)),
        "cpu_s": result["cpu_s"],
        "rss_mb": result["rss_mb"],
        "threads": result["threads"],
        "calls_429": result["calls_429"],
        "lost": len(result["errors"]),
        "wall_s": result["wall_s"],
        "runs": len(runs),
        "run_hours": run_hours,
    }


def print_table(
    rows: list[dict[str, Any]], floor: dict[str, float], args: argparse.Namespace
) -> None:
    names = [r["tool"] for r in rows]
    header = ["", *names, "floor"]
    table: list[list[str]] = []
    for endpoint in ENDPOINTS:
        table.append(
            [endpoint, *(f"{r['calls'][endpoint]:,}" for r in rows), f"{floor[endpoint]:,.0f}"]
        )
    floor_total = sum(floor.values())
    runs, run_hours = rows[0]["runs"], rows[0]["run_hours"]
    table.append(["calls", *(f"{r['total']:,}" for r in rows), f"{floor_total:,.0f}"])
    table.append(
        ["calls per run", *(f"{r['per_run']:.2f}" for r in rows), f"{floor_total / runs:.2f}"]
    )
    table.append(
        [
            "calls per run-hour",
            *(f"{r['per_run_hour']:.1f}" for r in rows),
            f"{floor_total / run_hours:.1f}",
        ]
    )
    table.append(
        [
            "end lag p50 / p95 / max (s)",
            *("{:.1f} / {:.1f} / {:.1f}".format(*r["lag"]) for r in rows),
            f"- / <{GRID_S:g} / {GRID_S:g}",
        ]
    )
    table.append(["CPU s", *(f"{r['cpu_s']:.1f}" for r in rows), ""])
    table.append(["CPU ms per run", *(f"{1000 * r['cpu_s'] / runs:.0f}" for r in rows), ""])
    table.append(["peak RSS (MB)", *(f"{r['rss_mb']:.0f}" for r in rows), ""])
    table.append(["peak threads", *(f"{r['threads']}" for r in rows), ""])
    table.append(["429s received", *(f"{r['calls_429']:,}" for r in rows), "0"])
    table.append(["runs lost to errors", *(f"{r['lost']}" for r in rows), "0"])
    table.append(["wall time (s)", *(f"{r['wall_s']:.0f}" for r in rows), ""])
    ours = next((r for r in rows if r["tool"] == "polysync"), None)
    if ours is not None:
        table.append(
            ["Polysync calls / floor", *("" for _ in rows), f"{ours['total'] / floor_total:.2f}x"]
        )
        for peer in rows:
            if peer is ours:
                continue
            table.append(
                [
                    f"Polysync / {peer['tool']}: calls, p95 lag, CPU",
                    *(
                        f"{ours['total'] / peer['total']:.2f} / {ours['lag'][1] / max(peer['lag'][1], 1e-9):.2f} / "
                        f"{ours['cpu_s'] / max(peer['cpu_s'], 1e-9):.2f}"
                        if r is peer
                        else ""
                        for r in rows
                    ),
                    "",
                ]
            )
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    print(
        f"\nWatching {runs} runs of {args.min_s / 60:g}-{args.max_s / 60:g} min "
        f"({run_hours:.1f} run-hours), emulator x{args.speed:g} with limits on emulated time"
    )
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


async def parent(args: argparse.Namespace) -> None:
    rows = []
    floor: dict[str, float] = {}
    for tool in args.tools.split(","):
        result = await run_tool(tool, args)
        rows.append(summarise(tool, result))
        if tool == "polysync" or not floor:
            floor = floor_calls(result["runs"])
    print_table(rows, floor, args)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--fail-every", type=int, default=10, help="every n-th job fails (0: none)")
    parser.add_argument("--min-s", type=float, default=120.0)
    parser.add_argument("--max-s", type=float, default=600.0)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--tools", default="polysync,sdk,airflow")
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    parser.add_argument("--child", choices=("polysync", "sdk", "airflow"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--job-ids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    random.seed(1)
    if args.child:
        child(args)
    else:
        asyncio.run(parent(args))


if __name__ == "__main__":
    main()
