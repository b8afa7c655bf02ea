"""Benchmark: requests/s the emulator sustains on jobs/runs/get with 2,000 active runs (and 10,000 jobs).

Starts `polysync emulator serve` in a subprocess on a free port, seeds 10,000 jobs, starts 2,000
long runs, then drives runs/get (random run ids) with `wrk` (Debian package `wrk`; a Python client
would measure itself, not the emulator) for a fixed time. Prints a table. Rate limits are switched
off for the throughput figure (the emulator's own limiter caps runs/get at 100/s, as a real
workspace does), then a short pass with limits on shows the 429 behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time

import httpx
import psutil
from emulator_process import start_emulator, wait_ready

TOKEN = "dapi-demo-token-0000000000000000"


async def seed(client: httpx.AsyncClient, jobs: int, runs: int) -> list[int]:
    await client.put("/emulator/rate-limits", json={"enabled": False})
    ids: list[int] = []
    remaining = jobs - 10  # the demo workspace brings 10
    while remaining > 0:
        batch = min(2000, remaining)
        body = (
            await client.post(
                "/emulator/generate",
                json={"count": batch, "seed": remaining, "task_duration_s": 7200},
            )
        ).json()
        ids += body["job_ids"]
        remaining -= batch
    run_ids: list[int] = []
    for index in range(runs):
        job_id = ids[index % len(ids)]
        response = await client.post("/api/2.1/jobs/run-now", json={"job_id": job_id})
        response.raise_for_status()
        run_ids.append(response.json()["run_id"])
    return run_ids


WRK_SCRIPT = """
local ids = {%s}
math.randomseed(1)
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/api/2.1/jobs/runs/get?run_id=" .. id, {["Authorization"] = "Bearer %s"})
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d %%.0f %%.0f\\n", summary.requests, summary.duration,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(port: int, run_ids: list[int], seconds: int, connections: int) -> dict[str, float]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        # Quoted: LuaJIT would print 15-digit numbers in scientific notation.
        script.write(WRK_SCRIPT % (",".join(f'"{run_id}"' for run_id in run_ids), TOKEN))
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            script.name,
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    line = next(row for row in out.splitlines() if row.startswith("RESULT"))
    requests, duration_us, non2xx, socket_errors, p50_us, p99_us = map(float, line.split()[1:])
    return {
        "requests": requests,
        "seconds": duration_us / 1e6,
        "non2xx": non2xx,
        "socket_errors": socket_errors,
        "p50_ms": p50_us / 1000,
        "p99_ms": p99_us / 1000,
    }


async def main(args: argparse.Namespace) -> None:
    server, port = start_emulator()
    limits = httpx.Limits(max_connections=8)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, limits=limits, timeout=30
        ) as client:
            await wait_ready(client)
            t0 = time.perf_counter()
            run_ids = await seed(client, args.jobs, args.runs)
            seed_s = time.perf_counter() - t0
            health = (await client.get("/emulator/health")).json()
            proc = psutil.Process(server.pid)
            cpu0 = proc.cpu_times()
            result = run_wrk(port, run_ids, args.seconds, args.connections)
            cpu1 = proc.cpu_times()
            rss_mb = proc.memory_info().rss / 2**20
            await client.put("/emulator/rate-limits", json={"enabled": True})
            limited = run_wrk(port, run_ids, 3, args.connections)
            active_after = (await client.get("/emulator/health")).json()["active_runs"]
    finally:
        server.terminate()
        server.wait(timeout=10)
    elapsed = result["seconds"]
    server_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    rows = [
        ("jobs in workspace", f"{health['jobs']:,}"),
        ("active runs", f"{health['active_runs']:,}"),
        ("seeding (jobs + run-now)", f"{seed_s:.1f} s"),
        ("active runs after the load", f"{active_after:,}"),
        (
            "runs/get requests",
            f"{result['requests']:,.0f} in {elapsed:.1f} s ({args.connections} connections)",
        ),
        ("throughput (limits off)", f"{result['requests'] / elapsed:,.0f} req/s"),
        ("latency p50 / p99", f"{result['p50_ms']:.1f} / {result['p99_ms']:.1f} ms"),
        ("non-2xx / socket errors", f"{result['non2xx']:.0f} / {result['socket_errors']:.0f}"),
        ("emulator CPU", f"{server_cpu:.2f} s ({server_cpu / elapsed * 100:.0f}% of one core)"),
        ("emulator RSS", f"{rss_mb:.0f} MB"),
        (
            "limits on (100/s): 2xx per s, 429s",
            f"{(limited['requests'] - limited['non2xx']) / limited['seconds']:.0f}/s, "
            f"{limited['non2xx']:.0f}",
        ),
        ("cores on this machine", str(os.cpu_count())),
    ]
    width = max(len(r[0]) for r in rows)
    print("\nEmulator: jobs/runs/get throughput with 2,000 active runs")
    print("-" * (width + 40))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(
        "(wrk and the emulator share this machine's cores: the figure is a floor for the emulator)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    asyncio.run(main(parser.parse_args()))
