"""Benchmark: discovery of a 10,000-job workspace (30% multi-task) and import of 1,000 workflows.

Against `polysync emulator serve` (subprocess) with its default rate limits (jobs/list and
jobs/get: 20 requests/s) and 20 ms added latency on every API call. Discovery is measured for each
jobs/list API version (D5). Prints wall time, API calls made, 429s received, the floor set by the
rate limits, and the ratio. Target: within 1.3x of the floor with zero failed calls.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time
from typing import Any

import httpx
from emulator_process import start_emulator, wait_ready

from polysync.databricks.client import DatabricksClient
from polysync.databricks.settings import ApiVersions, PatAuthSettings, WorkspaceSettings
from polysync.domain.models import ImportedJob
from polysync.jobtypes.databricks.parameters import JobKind
from polysync.jobtypes.databricks.workflow import DatabricksWorkflowJobType

TOKEN = "dapi-demo-token-0000000000000000"
RPS = 20.0  # jobs/list and jobs/get (reference §8)


def floor_s(calls: int, rps: float = RPS, burst: float = RPS) -> float:
    """The least time `calls` requests take under a token bucket of `rps` holding `burst`."""
    return max(0.0, (calls - burst) / rps)


async def stats(control: httpx.AsyncClient) -> dict[str, Any]:
    return dict((await control.get("/emulator/stats")).json()["endpoints"])


def delta(
    before: dict[str, Any], after: dict[str, Any], endpoint: str, status: str | None = None
) -> int:
    def count(s: dict[str, Any]) -> int:
        entry = s.get(endpoint, {})
        return int(
            entry.get("total", 0) if status is None else entry.get("by_status", {}).get(status, 0)
        )

    return count(after) - count(before)


def job_type(base: str, version: str) -> DatabricksWorkflowJobType:
    settings = WorkspaceSettings(
        url=base,
        auth=PatAuthSettings(token="env:POLYSYNC_BENCH_TOKEN"),
        api_versions=ApiVersions(jobs_list=version),  # type: ignore[arg-type]
    )
    return DatabricksWorkflowJobType(DatabricksClient(settings))


async def main(args: argparse.Namespace) -> None:
    os.environ["POLYSYNC_BENCH_TOKEN"] = TOKEN
    server, port = start_emulator()
    base = f"http://127.0.0.1:{port}"
    rows: list[tuple[str, ...]] = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as control:
            await wait_ready(control)
            await control.post(
                "/emulator/generate",
                json={"count": args.jobs - 10, "multi_task_fraction": 0.3, "seed": 3},
            )
            await control.post(
                "/emulator/faults",
                json={
                    "method": "*",
                    "path": "^/api/",
                    "kind": "latency",
                    "latency_ms": args.latency_ms,
                },
            )
            workflows: list[str] = []
            for version in args.versions:
                wf = job_type(base, version)
                await asyncio.sleep(1.1)  # let the emulator's buckets refill between passes
                before = await stats(control)
                t0 = time.perf_counter()
                try:
                    found = await wf.discover()
                    outcome = f"{len(found):,} jobs, {sum(j.kind == JobKind.WORKFLOW for j in found):,} workflows"
                except Exception as exc:
                    found = []
                    outcome = f"FAILED: {str(exc)[:70]}"
                wall = time.perf_counter() - t0
                after = await stats(control)
                lists = delta(before, after, "jobs/list")
                gets = delta(before, after, "jobs/get")
                limited = delta(before, after, "jobs/list", "429") + delta(
                    before, after, "jobs/get", "429"
                )
                floor = floor_s(lists) + floor_s(gets)
                rows.append(
                    (
                        f"discover (jobs/list {version})",
                        outcome,
                        f"{wall:.1f}",
                        f"{lists}+{gets}",
                        str(limited),
                        f"{floor:.1f}",
                        f"{wall / floor:.2f}" if floor else "-",
                    )
                )
                if found and not workflows:
                    workflows = [j.external_id for j in found if j.kind == JobKind.WORKFLOW][
                        : args.imports
                    ]
                await wf.client.aclose()
            wf = job_type(base, "2.2")
            await asyncio.sleep(1.1)
            before = await stats(control)
            t0 = time.perf_counter()
            results = await wf.import_jobs(workflows)
            wall = time.perf_counter() - t0
            after = await stats(control)
            gets = delta(before, after, "jobs/get")
            limited = delta(before, after, "jobs/get", "429")
            failed = sum(not isinstance(r, ImportedJob) for r in results)
            floor = floor_s(gets)
            rows.append(
                (
                    f"import {len(workflows):,} workflows",
                    f"{len(results) - failed:,} ok, {failed} failed",
                    f"{wall:.1f}",
                    str(gets),
                    str(limited),
                    f"{floor:.1f}",
                    f"{wall / floor:.2f}" if floor else "-",
                )
            )
            await wf.client.aclose()
    finally:
        server.terminate()
        server.wait(timeout=10)
    header = ("step", "result", "wall s", "API calls", "429s", "floor s", "x floor")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(
        f"\nDiscovery and import: {args.jobs:,} jobs, +{args.latency_ms} ms per call, limits 20/s"
    )
    for row in [header, *rows]:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    print(
        f"(floor = calls beyond the 1 s burst / 20 per s; ceil(10,000/100) = {math.ceil(args.jobs / 100)} list pages)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--imports", type=int, default=1_000)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--versions", nargs="+", default=["2.0", "2.1", "2.2"])
    asyncio.run(main(parser.parse_args()))
