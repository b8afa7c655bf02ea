"""What the Task pages cost to build (issue 12's web UI): the dependency diagram's JSON and the
24 h timeline, from Task and TaskRun records, as the Tasks list, a Task's page and the home page
build them on every request.

Tasks form chains of 10 (each depends on the one before) with a fan-in every 50; TaskRuns are
spread over the last 30 hours. Rows: the whole graph (the Tasks list), one Task's graph with every
Task as a choice (the editor), the timeline's bars, and the timeline rendered to HTML/SVG by its
template. CPU milliseconds per build (best of `--repeat`), and the size of what the page carries.

    .venv/bin/python benchmarks/task_views.py [--tasks 1000 10000] [--runs 1000 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from polysync.tasks.dependencies import Dependency
from polysync.tasks.model import Task, TaskRun
from polysync.tasks.states import TaskRunStatus, TriggerType
from polysync.web.context import template_environment
from polysync.web.task_views import dependency_graph, timeline

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
STATUSES = [TaskRunStatus.SUCCEEDED] * 6 + [
    TaskRunStatus.FAILED,
    TaskRunStatus.SKIPPED,
    TaskRunStatus.CANCELLED,
    TaskRunStatus.RUNNING,
]


def tasks(count: int) -> list[Task]:
    made = []
    for i in range(1, count + 1):
        upstreams: list[str] = []
        if i % 10 != 1:
            upstreams.append(f"task-{i - 1}")
        if i % 50 == 0 and i > 100:
            upstreams.append(f"task-{i - 100}")
        made.append(
            Task(
                name=f"task-{i}",
                job_id=1,
                id=i,
                dependencies=tuple(Dependency(u) for u in upstreams),
            )
        )
    return made


def task_runs(count: int, task_count: int) -> list[TaskRun]:
    runs = []
    for i in range(count):
        start = NOW - timedelta(minutes=(i * 1800 // max(count, 1)) + 1)
        status = STATUSES[i % len(STATUSES)]
        ended = None if status is TaskRunStatus.RUNNING else start + timedelta(minutes=7)
        runs.append(
            TaskRun(
                task_id=i % task_count + 1,
                trigger=TriggerType.SCHEDULE,
                scheduled_for=start,
                queued_at=start,
                status=status,
                started_at=None if status is TaskRunStatus.SKIPPED else start,
                ended_at=ended,
                id=i + 1,
            )
        )
    return runs


def best_ms(build: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best = float("inf")
    result: Any = None
    for _ in range(repeat):
        cpu = time.process_time()
        result = build()
        best = min(best, time.process_time() - cpu)
    return best * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env = template_environment()
    env.globals.update(TASK_RUN_STATUSES=list(TaskRunStatus), can_admin=True)
    template = env.get_template("_timeline.html")

    print(f"{'what':<44} {'records':>8} {'CPU ms':>9} {'page KiB':>9}")
    for count in args.tasks:
        records = tasks(count)
        ms, graph = best_ms(partial(dependency_graph, records), args.repeat)
        size = len(json.dumps(graph)) / 1024
        print(
            f"{'whole graph (Tasks list, at most 300 drawn)':<44} {count:>8} {ms:>9.1f} {size:>9.1f}"
        )
        focus = count // 2
        ms, graph = best_ms(
            partial(dependency_graph, records, focus=focus, choices=True), args.repeat
        )
        size = len(json.dumps(graph)) / 1024
        print(f"{'one Task with every Task as a choice':<44} {count:>8} {ms:>9.1f} {size:>9.1f}")
    for count in args.runs:
        task_count = max(count // 20, 1)
        runs = task_runs(count, task_count)
        names = {i: f"task-{i}" for i in range(1, task_count + 1)}
        ms, shown = best_ms(partial(timeline, runs, names, NOW), args.repeat)
        bars = sum(len(lane.bars) for lane in shown.lanes)
        print(f"{'timeline bars (40 lanes kept)':<44} {count:>8} {ms:>9.1f} {'':>9}")
        ms, html = best_ms(partial(template.render, timeline=shown), args.repeat)
        print(
            f"{f'timeline rendered ({bars} bars)':<44} {count:>8} {ms:>9.1f} {len(html) / 1024:>9.1f}"
        )


if __name__ == "__main__":
    main()
