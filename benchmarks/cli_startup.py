"""Benchmark: how fast the `polysync` command answers (issue 10).

Each command is run `--repeat` times (default 10) as a new process, the way a user types it,
with its output piped; prints the median and 90th percentile wall time against the target:

    command                  median s  p90 s  cpu s  target  ok
    polysync --help             0.140  0.150  0.130   0.250  yes

`polysync runs list` reads a SQLite database of 1,000 runs (one platform, one job) made once in
a temporary POLYSYNC_HOME before the timing starts; its first open (the schema migration) is not
timed. Targets: `--help` <= 0.25 s, `runs list` <= 0.5 s (median wall time, idle machine: the
load average is printed, and the CPU time shows what the command itself costs). Exit status 1
when a median misses its target.

    .venv/bin/python benchmarks/cli_startup.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from polysync.domain.models import ImportedJob, JobKind
from polysync.domain.records import NewPlatform, NewRun
from polysync.store import open_store

RUNS = 1_000
POLYSYNC = str(Path(sys.executable).with_name("polysync"))
COMMANDS: list[tuple[list[str], float]] = [
    (["--help"], 0.25),
    (["runs", "list"], 0.5),
    (["runs", "--help"], 0.25),
    (["jobs", "list"], 0.5),
    (["status"], 0.5),
]


async def seed(url: str) -> None:
    """One platform, one job and RUNS runs, created through the store."""
    store = await open_store(url)
    try:
        now = datetime(2026, 11, 30, tzinfo=UTC)
        platform = await store.add_platform(
            NewPlatform(
                "bench", "https://adb-1.1.azuredatabricks.net", {"method": "pat", "token": "env:X"}
            ),
            now,
        )
        job, _ = await store.upsert_job(
            platform.id, ImportedJob("101", "Nightly ETL", JobKind.WORKFLOW, 3), now
        )
        for index in range(RUNS):
            key = uuid.uuid4().hex
            await store.create_run(
                NewRun(job.id, platform.id, key, key, {}, {}), now + timedelta(seconds=index)
            )
    finally:
        await store.aclose()


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall time, CPU time) of one `polysync ARGV`, in seconds. The CPU time (user + system
    of the child) hardly changes when other processes load the machine; the wall time does."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([POLYSYNC, *argv], env=env, capture_output=True, check=False)
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # `status` exits 1 for the problem it reports here (1,000 active runs, no engine).
    if done.returncode not in (0, 1):
        raise SystemExit(f"polysync {' '.join(argv)} failed: {done.stderr.decode()}")
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall_s, cpu_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="polysync-cli-bench-") as home:
        env = os.environ | {"POLYSYNC_HOME": home, "COLUMNS": "80"}
        env.pop("POLYSYNC_DATABASE_URL", None)
        asyncio.run(seed(f"sqlite:///{Path(home) / 'polysync.db'}"))
        timed(["runs", "list"], env)  # warm: the OS file cache, nothing else
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        print(f"{'command':<24}{'median s':>9}{'p90 s':>7}{'cpu s':>7}{'target':>8}  ok")
        missed = 0
        for argv, target_s in COMMANDS:
            samples = [timed(argv, env) for _ in range(args.repeat)]
            walls = sorted(wall for wall, _ in samples)
            median_s = statistics.median(walls)
            p90_s = walls[min(len(walls) - 1, round(0.9 * (len(walls) - 1)))]
            cpu_s = statistics.median(cpu for _, cpu in samples)
            ok = median_s <= target_s
            missed += not ok
            label = " ".join(["polysync", *argv])
            print(
                f"{label:<24}{median_s:>9.3f}{p90_s:>7.3f}{cpu_s:>7.3f}{target_s:>8.3f}  "
                f"{'yes' if ok else 'NO'}"
            )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print(f"({args.repeat} runs each, output piped; runs list over {RUNS:,} runs in SQLite)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
