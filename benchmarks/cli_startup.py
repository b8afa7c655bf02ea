"""Benchmark: how fast the `polysync` command answers (issue 10).

Each command is run `--repeat` times (default 10) as a new process, the way a user types it,
with its output piped; prints the median and 90th percentile wall time against the target:

    command                       median s   p90 s   target   ok
    polysync --help                  0.180   0.190    0.250   yes

`polysync runs list` reads a SQLite database of 1,000 runs (one platform, one job) made once in
a temporary POLYSYNC_HOME before the timing starts; its first open (the schema migration) is not
timed. Targets: `--help` <= 0.25 s, `runs list` <= 0.5 s (median, idle machine). Exit status 1
when a median misses its target.

    .venv/bin/python benchmarks/cli_startup.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([POLYSYNC, *argv], env=env, capture_output=True, check=False)
    # `status` exits 1 for the problem it reports here (1,000 active runs, no engine).
    if done.returncode not in (0, 1):
        raise SystemExit(f"polysync {' '.join(argv)} failed: {done.stderr.decode()}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="polysync-cli-bench-") as home:
        env = os.environ | {"POLYSYNC_HOME": home, "COLUMNS": "80"}
        env.pop("POLYSYNC_DATABASE_URL", None)
        asyncio.run(seed(f"sqlite:///{Path(home) / 'polysync.db'}"))
        timed(["runs", "list"], env)  # warm: the OS file cache, nothing else
        print(f"{'command':<30}{'median s':>10}{'p90 s':>8}{'target':>8}  ok")
        missed = 0
        for argv, target_s in COMMANDS:
            samples = sorted(timed(argv, env) for _ in range(args.repeat))
            median_s = statistics.median(samples)
            p90_s = samples[min(len(samples) - 1, round(0.9 * (len(samples) - 1)))]
            ok = median_s <= target_s
            missed += not ok
            label = " ".join(["polysync", *argv])
            print(
                f"{label:<30}{median_s:>10.3f}{p90_s:>8.3f}{target_s:>8.3f}  {'yes' if ok else 'NO'}"
            )
        print(f"({args.repeat} runs each, output piped; runs list over {RUNS:,} runs in SQLite)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
