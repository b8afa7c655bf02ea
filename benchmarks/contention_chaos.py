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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' harness

from chaos import emulator_and_database, print_failures
from tests.acceptance.contention_chaos import ContentionChaos, ContentionChaosConfig, lines


async def main(args: argparse.Namespace) -> int:
    config = ContentionChaosConfig(
        runs=args.runs,
        window_s=args.window_s,
        kills=args.kills,
        queue_timeout_s=args.queue_timeout_s,
        queue_size_limit=args.queue_size_limit,
        settle_timeout_s=args.runs / 10 * args.window_s * 3 + 120,
        seed=args.seed,
    )
    with (
        emulator_and_database(args.postgres, "polysync_cchaos") as (emulator, url),
        tempfile.TemporaryDirectory(prefix="polysync-cchaos-") as tmp,
    ):
        report = await ContentionChaos(emulator, url, Path(tmp), config).run()
    print(
        f"\nContention chaos: concurrency 5 + rate 10 per {config.window_s:g} s (both global), "
        f"{config.kills} kill -9, seed {config.seed}"
    )
    print("-" * 64)
    for line in lines(report, config):
        print(line)
    return print_failures(report)


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
