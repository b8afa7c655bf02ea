"""Chaos run (issue 8): engines killed with -9, API faults and 429 storms, database cuts, on PostgreSQL.

The scenario of tests/acceptance/test_chaos.py (tests/acceptance/chaos.py), run longer with more
runs: a `polysync engine` and a `polysync serve` share a fresh PostgreSQL database, each through
a loopback TCP proxy that is cut and restored at random; both are killed with SIGKILL at random
and restarted; the emulator (a subprocess, 50x time) loses responses, answers 5xx, and has 429
storms; runs are started through the store and the served API, some cancelled, some deleted in
Databricks. Prints the figures, then every count that must be zero. Exit status 1 if one is not.

    .venv/bin/python benchmarks/chaos.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/x
(default: $POLYSYNC_TEST_POSTGRES_URL; a database of its own is created there and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from emulator_process import start_emulator
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' chaos harness

from tests.acceptance.chaos import Chaos, ChaosConfig, lines
from tests.acceptance.conftest import Emulator, wait_for


def emulator_ready(emulator: Emulator) -> bool:
    try:
        emulator.get("/emulator/health")
    except Exception:  # not listening yet
        return False
    return True


@contextlib.contextmanager
def emulator_and_database(postgres: str, prefix: str) -> Iterator[tuple[Emulator, str]]:
    """(an emulator subprocess at --speed 50, listening; the URL of a new PostgreSQL database
    named `prefix_<hex>` on the server at `postgres`): the process is killed and the database
    dropped afterwards."""
    server = make_url(postgres)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = server.set(drivername="postgresql", database="postgres")
    conninfo = admin.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    process, port = start_emulator("--speed", "50")
    emulator = Emulator(f"http://127.0.0.1:{port}", process)
    try:
        wait_for("the emulator to listen", lambda: emulator_ready(emulator), 30)
        yield emulator, server.set(database=name).render_as_string(hide_password=False)
    finally:
        process.kill()
        process.wait(timeout=10)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def print_failures(report: Any) -> int:
    """Print the entries (up to 10 each) of every count of `report.zero_counts()` that is not
    zero; the exit status: 1 if there is one, else 0."""
    failures = {name: count for name, count in report.zero_counts().items() if count}
    for name in failures:
        print(f"\n{name}:")
        for entry in getattr(report, name)[:10]:
            print(f"  {entry}")
    return 1 if failures else 0


async def main(args: argparse.Namespace) -> int:
    config = ChaosConfig(
        duration_s=args.duration_s,
        runs=args.runs,
        kill_every_s=args.kill_every_s,
        cut_every_s=args.cut_every_s,
        seed=args.seed,
    )
    with (
        emulator_and_database(args.postgres, "polysync_chaos") as (emulator, url),
        tempfile.TemporaryDirectory(prefix="polysync-chaos-") as tmp,
    ):
        report = await Chaos(emulator, url, Path(tmp), config).run()
    print(
        f"\nChaos: {config.duration_s:g} s of chaos, {config.runs} runs, seed {config.seed}, "
        "two workers (engine + serve) on PostgreSQL"
    )
    print("-" * 44)
    for line in lines(report):
        print(line)
    return print_failures(report)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default=os.environ.get("POLYSYNC_TEST_POSTGRES_URL"))
    parser.add_argument("--duration-s", type=float, default=300.0)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--kill-every-s", type=float, default=6.0)
    parser.add_argument("--cut-every-s", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=8)
    arguments = parser.parse_args()
    if not arguments.postgres:
        raise SystemExit("Give --postgres URL (or set POLYSYNC_TEST_POSTGRES_URL).")
    raise SystemExit(asyncio.run(main(arguments)))
