"""Contention profiles with engine processes killed with -9 (issue 13, D14), on PostgreSQL.

The scenario of tests/acceptance/test_contention_chaos.py (tests/acceptance/contention_chaos.py)
at full size: `--runs` (300) queued at once through Execute Now on 2 platforms of one emulated
workspace (an emulator subprocess at --speed 50), a **global** concurrency profile of 5 and a
**global** rate profile of 10 per `--window-s` (token bucket), two `polysync engine` processes on
a fresh PostgreSQL database, each killed with SIGKILL at random (`--kills`) and restarted. The
emulator's active runs are sampled every 0.1 s and its run-now request log is read throughout.

`--window-s` is real seconds: 60 is the issue's figure (300 runs then take 30 minutes); run it
scaled, e.g. `--window-s 6`. Prints the table; exit status 1 if a count that must be 0 is not.

    .venv/bin/python benchmarks/contention_chaos.py --window-s 6
(--postgres URL, default $POLYSYNC_TEST_POSTGRES_URL; a database of its own is made and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
from emulator_process import start_emulator
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' harness

from tests.acceptance.conftest import Emulator, wait_for
from tests.acceptance.contention_chaos import ContentionChaos, ContentionChaosConfig, lines


def emulator_ready(emulator: Emulator) -> bool:
    try:
        emulator.get("/emulator/health")
    except Exception:  # not listening yet
        return False
    return True


async def main(args: argparse.Namespace) -> int:
    server = make_url(args.postgres)
    name = f"polysync_cchaos_{uuid.uuid4().hex[:8]}"
    admin = server.set(drivername="postgresql", database="postgres")
    conninfo = admin.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    process, port = start_emulator("--speed", "50")
    emulator = Emulator(f"http://127.0.0.1:{port}", process)
    config = ContentionChaosConfig(
        runs=args.runs,
        window_s=args.window_s,
        kills=args.kills,
        queue_timeout_s=args.queue_timeout_s,
        queue_size_limit=args.queue_size_limit,
        settle_timeout_s=args.runs / 10 * args.window_s * 3 + 120,
        seed=args.seed,
    )
    try:
        wait_for("the emulator to listen", lambda: emulator_ready(emulator), 30)
        url = server.set(database=name).render_as_string(hide_password=False)
        with tempfile.TemporaryDirectory(prefix="polysync-cchaos-") as tmp:
            report = await ContentionChaos(emulator, url, Path(tmp), config).run()
    finally:
        process.kill()
        process.wait(timeout=10)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        f"\nContention chaos: concurrency 5 + rate 10 per {config.window_s:g} s (both global), "
        f"{config.kills} kill -9, seed {config.seed}"
    )
    print("-" * 64)
    for line in lines(report, config):
        print(line)
    failures = {n: c for n, c in report.zero_counts().items() if c}
    for failure in failures:
        print(f"\n{failure}:")
        for entry in getattr(report, failure)[:10]:
            print(f"  {entry}")
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("POLYSYNC_TEST_POSTGRES_URL"))
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--window-s", type=float, default=60.0)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--queue-timeout-s", type=float, default=None)
    parser.add_argument("--queue-size-limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=13)
    arguments = parser.parse_args()
    if not arguments.postgres:
        raise SystemExit("Give --postgres URL (or set POLYSYNC_TEST_POSTGRES_URL).")
    raise SystemExit(asyncio.run(main(arguments)))
