"""Benchmark: the Notebook and Pipeline job types' discovery and the widget parser.

1. Widget parsing: notebooks of growing size (widget declarations among ordinary cells, and a
   hostile one of unterminated calls and quotes), parsed by `parse_widgets`: time and MB/s.
2. Notebook discovery: a workspace tree of F folders x N notebooks (in-process emulator, ASGI
   transport, the default 30 requests/s): `workspace/list` calls made (one per folder is the
   minimum), wall time against the floor the rate limit sets, notebooks found.
3. Pipeline discovery: P pipelines, paged 100 at a time: `pipelines` calls made (the floor is
   ceil(P / 100)).
4. Watching pipeline updates: P pipelines with U of our updates each (the older ones ended
   unseen, the newest active): the calls one engine sweep (`JobType.sweep`) makes, against a
   poll of each update; calls per run per grid point.

    .venv/bin/python benchmarks/job_types.py
"""

from __future__ import annotations

import asyncio
import math
import time

import httpx

from polysync.clock import ManualClock, SystemClock
from polysync.databricks.client import DatabricksClient
from polysync.databricks.settings import PatAuthSettings, WorkspaceSettings
from polysync.domain.records import PLATFORM_ATTRIBUTES, Platform, utc
from polysync.emulator.app import create_app
from polysync.emulator.spec import WorkspaceSpec
from polysync.jobtypes.databricks.notebook import DatabricksNotebookJobType
from polysync.jobtypes.databricks.pipeline import DatabricksPipelineJobType
from polysync.jobtypes.databricks.widgets import parse_widgets

TOKEN = "dapi-benchmark-token-000000000000"
RPS = 30.0  # workspace/list, the client's default and the emulated workspace's limit
URL = "http://workspace.test"
CELL = (
    'dbutils.widgets.text("w{i}", "default {i}", "Label {i}")\n'
    'dbutils.widgets.dropdown("d{i}", "a", ["a", "b", "c"])\n'
    "# COMMAND ----------\n"
    'df = spark.table("gold.sales").where("region = \'emea\'")\n'
    "df.write.mode('overwrite').saveAsTable('reports.daily')\n"
)


def parsing_rows() -> list[tuple[str, float, float, int]]:
    rows = []
    for label, repeat in (("10 KB", 40), ("1 MB", 4_000), ("10 MB", 40_000)):
        source = "".join(CELL.format(i=i) for i in range(repeat))
        rows.append(_time_parse(label, source))
    hostile = 'dbutils.widgets.text("' * 200_000 + "'''" * 100_000
    rows.append(_time_parse("hostile 5 MB", hostile))
    return rows


def _time_parse(label: str, source: str) -> tuple[str, float, float, int]:
    started = time.perf_counter()
    widgets = parse_widgets(source)
    elapsed_s = time.perf_counter() - started
    size_mb = len(source.encode()) / 1e6
    return label, size_mb, elapsed_s, len(widgets)


def client(app: object) -> DatabricksClient:
    """The client with its default rate limits (workspace/list: 30 requests/s, as the workspace)."""
    settings = WorkspaceSettings(url=URL, auth=PatAuthSettings(token="env:POLYSYNC_BENCH_TOKEN"))
    return DatabricksClient(
        settings,
        transport=httpx.ASGITransport(app=app),
        clock=SystemClock(),  # type: ignore[arg-type]
    )


def platform() -> Platform:
    return Platform(
        1, "bench", "azure-databricks", URL, {}, None, "", {PLATFORM_ATTRIBUTES: {}}, utc(0), utc(0)
    )


async def notebook_discovery(folders: int, per_folder: int) -> tuple[int, int, float, int]:
    spec = WorkspaceSpec.model_validate(
        {
            "auth": {"tokens": [TOKEN]},
            "notebooks": [
                {
                    "path": f"/Shared/bench/f{f}/n{n}",
                    "language": "PYTHON",
                    "source": 'dbutils.widgets.text("x", "")\n',
                }
                for f in range(folders)
                for n in range(per_folder)
            ],
        }
    )
    app = create_app(spec, clock=ManualClock(), real_clock=SystemClock())
    job_type = DatabricksNotebookJobType(client(app), platform())
    started = time.perf_counter()
    found = await job_type.discover()
    elapsed_s = time.perf_counter() - started
    calls = app.emulator.stats.count("workspace/list")  # type: ignore[attr-defined]
    await job_type.client.aclose()
    return folders * per_folder, calls, elapsed_s, len(found)


async def pipeline_discovery(pipelines: int) -> tuple[int, int, int, float]:
    spec = WorkspaceSpec.model_validate(
        {
            "auth": {"tokens": [TOKEN]},
            "pipelines": [{"name": f"p{i}"} for i in range(pipelines)],
        }
    )
    app = create_app(spec, clock=ManualClock(), real_clock=SystemClock())
    job_type = DatabricksPipelineJobType(client(app), platform())
    started = time.perf_counter()
    found = await job_type.discover()
    elapsed_s = time.perf_counter() - started
    calls = app.emulator.stats.count("pipelines")  # type: ignore[attr-defined]
    await job_type.client.aclose()
    return len(found), calls, math.ceil(pipelines / 100), elapsed_s


async def pipeline_sweep(pipelines: int, per_pipeline: int) -> tuple[int, int, int]:
    """(runs watched, calls of one sweep, calls of polling each run)."""
    spec = WorkspaceSpec.model_validate(
        {
            "auth": {"tokens": [TOKEN]},
            "pipelines": [{"name": f"p{i}"} for i in range(pipelines)],
        }
    )
    workspace_clock = ManualClock()
    app = create_app(spec, clock=workspace_clock, real_clock=SystemClock())
    job_type = DatabricksPipelineJobType(client(app), platform())
    ids = [found.external_id for found in await job_type.discover()]
    run_ids: list[str] = []
    for turn in range(per_pipeline):
        if turn:
            workspace_clock.advance(600)  # the previous updates end, unseen by the engine
        for pipeline_id in ids:
            answer = await job_type.client.start_pipeline_update(pipeline_id, full_refresh=False)
            run_ids.append(f"{pipeline_id}:{answer['update_id']}")
    stats = app.emulator.stats  # type: ignore[attr-defined]
    before = stats.count()
    swept = await job_type.sweep(run_ids)
    sweep_calls = stats.count() - before
    assert set(swept) == set(run_ids), "the sweep must show every watched update"
    before = stats.count()
    for run_id in run_ids:
        await job_type.poll(run_id)
    poll_calls = stats.count() - before
    await job_type.client.aclose()
    return len(run_ids), sweep_calls, poll_calls


async def main() -> None:
    print("Widget parsing (parse_widgets)")
    print(f"{'notebook':<14}{'MB':>8}{'seconds':>10}{'MB/s':>10}{'widgets':>10}")
    for label, size_mb, elapsed_s, count in parsing_rows():
        rate = size_mb / elapsed_s if elapsed_s else float("inf")
        print(f"{label:<14}{size_mb:>8.2f}{elapsed_s:>10.3f}{rate:>10.1f}{count:>10,}")

    print("\nNotebook discovery (workspace/list from /, 30 requests/s)")
    header = f"{'notebooks':>10}{'folders':>9}{'calls':>7}{'min calls':>11}"
    print(f"{header}{'seconds':>9}{'floor s':>9}{'ratio':>7}{'found':>8}")
    for folders, per_folder in ((10, 10), (50, 20), (200, 10)):
        total, calls, elapsed_s, found = await notebook_discovery(folders, per_folder)
        # The walk lists /, /Shared, /Shared/bench, each folder; /Users and /Repos too.
        minimum = folders + 5
        floor_s = max(0.0, (calls - RPS) / RPS)  # a burst of RPS, then RPS per second
        ratio = f"{elapsed_s / floor_s:.2f}" if floor_s else "-"
        print(
            f"{total:>10,}{folders:>9}{calls:>7}{minimum:>11}{elapsed_s:>9.2f}{floor_s:>9.2f}"
            f"{ratio:>7}{found:>8,}"
        )

    print("\nPipeline discovery (pipelines, 100 per page)")
    print(f"{'pipelines':>10}{'found':>8}{'calls':>8}{'floor':>7}{'seconds':>10}")
    for count in (25, 250, 1_000):
        found_count, calls, floor, elapsed_s = await pipeline_discovery(count)
        print(f"{count:>10,}{found_count:>8,}{calls:>8}{floor:>7}{elapsed_s:>10.2f}")

    print("\nWatching pipeline updates: one grid point (JobType.sweep) against a poll of each")
    print(f"{'pipelines':>10}{'updates':>9}{'runs':>7}{'sweep':>7}{'poll each':>11}{'per run':>9}")
    for count, per_pipeline in ((10, 1), (10, 3), (50, 5)):
        runs, sweep_calls, poll_calls = await pipeline_sweep(count, per_pipeline)
        print(
            f"{count:>10}{per_pipeline:>9}{runs:>7}{sweep_calls:>7}{poll_calls:>11}"
            f"{sweep_calls / runs:>9.2f}"
        )


if __name__ == "__main__":
    import os

    os.environ.setdefault("POLYSYNC_BENCH_TOKEN", TOKEN)
    asyncio.run(main())
