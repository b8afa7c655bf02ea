"""Benchmark: requests/s the emulator sustains on jobs/runs/get with 2,000 active runs (and 10,000 jobs).

Starts `polysync emulator serve` in a subprocess on a free port, seeds 10,000 jobs, starts 2,000
long runs, then drives runs/get from this process with N concurrent connections for a fixed
number of requests. Prints a table. Rate limits are switched off for the throughput figure (the
emulator's own limiter would cap it at 100/s, as the real workspace does), then a short second
pass with limits on shows the 429 behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

TOKEN = "dapi-demo-token-0000000000000000"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("polysync")
    return subprocess.Popen(
        [str(exe), "emulator", "serve", "--workspace", "demo", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_ready(client: httpx.AsyncClient) -> None:
    for _ in range(200):
        try:
            if (await client.get("/emulator/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit("emulator did not start")


async def seed(client: httpx.AsyncClient, jobs: int, runs: int) -> list[int]:
    await client.put("/emulator/rate-limits", json={"enabled": False})
    ids: list[int] = []
    remaining = jobs - 10  # the demo workspace brings 10
    while remaining > 0:
        batch = min(2000, remaining)
        body = (await client.post("/emulator/generate", json={"count": batch, "seed": remaining, "task_duration_s": 7200})).json()
        ids += body["job_ids"]
        remaining -= batch
    run_ids: list[int] = []
    for index in range(runs):
        job_id = ids[index % len(ids)]
        response = await client.post("/api/2.1/jobs/run-now", json={"job_id": job_id})
        response.raise_for_status()
        run_ids.append(response.json()["run_id"])
    return run_ids


async def hammer(
    client: httpx.AsyncClient, run_ids: list[int], requests: int, concurrency: int
) -> tuple[float, list[float], dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(requests))
    rng = random.Random(1)

    async def worker() -> None:
        for _ in counter:
            run_id = rng.choice(run_ids)
            t0 = time.perf_counter()
            response = await client.get("/api/2.1/jobs/runs/get", params={"run_id": run_id})
            latencies.append(time.perf_counter() - t0)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies, statuses


async def main(args: argparse.Namespace) -> None:
    port = free_port()
    server = start_server(port)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
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
            elapsed, latencies, statuses = await hammer(client, run_ids, args.requests, args.concurrency)
            cpu1 = proc.cpu_times()
            rss_mb = proc.memory_info().rss / 2**20
            await client.put("/emulator/rate-limits", json={"enabled": True})
            _, _, limited = await hammer(client, run_ids, 400, args.concurrency)
    finally:
        server.terminate()
        server.wait(timeout=10)
    quantiles = statistics.quantiles(latencies, n=100)
    server_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    rows = [
        ("jobs in workspace", f"{health['jobs']:,}"),
        ("active runs", f"{health['active_runs']:,}"),
        ("seeding (jobs + run-now)", f"{seed_s:.1f} s"),
        ("runs/get requests", f"{args.requests:,} ({args.concurrency} concurrent)"),
        ("wall time", f"{elapsed:.2f} s"),
        ("throughput", f"{args.requests / elapsed:,.0f} req/s"),
        ("latency p50 / p99", f"{quantiles[49] * 1000:.1f} / {quantiles[98] * 1000:.1f} ms"),
        ("emulator CPU", f"{server_cpu:.2f} s ({server_cpu / elapsed * 100:.0f}% of one core)"),
        ("emulator RSS", f"{rss_mb:.0f} MB"),
        ("statuses", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))),
        ("with limits on (400 req burst)", ", ".join(f"{k}: {v}" for k, v in sorted(limited.items()))),
        ("cores on this machine", str(os.cpu_count())),
    ]
    width = max(len(r[0]) for r in rows)
    print("\nEmulator: jobs/runs/get throughput with 2,000 active runs")
    print("-" * (width + 40))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("(client and server share this machine's cores: the figure is a floor for the emulator)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    asyncio.run(main(parser.parse_args()))
