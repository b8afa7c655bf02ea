"""What the Task pages draw, built from Task and TaskRun records: the dependency diagram's data
(laid out in the browser by dagre) and the home page's 24 h timeline (drawn on the server).

Pure functions: no clock, no store; times are aware datetimes. docs/web-ui.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from polysync.tasks.model import Task, TaskRun
from polysync.tasks.states import TaskRunStatus

MAX_GRAPH_NODES = 300
"""The most Tasks one diagram draws; beyond, the farthest are left out and counted."""
TIMELINE_SPAN = timedelta(hours=24)
MAX_TIMELINE_LANES = 40
"""The most Tasks (rows) the timeline draws: the most recently active ones."""
MIN_BAR_PCT = 0.35
"""A TaskRun shorter than this share of the span (a skip, a run of seconds) is still visible."""
TICK_EVERY = timedelta(hours=3)


# --- The dependency diagram ------------------------------------------------------------------


def dependency_graph(
    tasks: Sequence[Task],
    *,
    focus: int | None = None,
    last_status: Mapping[int, TaskRunStatus] | None = None,
    max_nodes: int = MAX_GRAPH_NODES,
    choices: bool = False,
) -> dict[str, Any]:
    """The diagram's JSON: `{"nodes": [{"id", "name", "href", "focus", "paused", "status"}],
    "edges": [{"from", "to", "condition"}], "hidden": n}`; node ids are Task ids, an edge goes
    from the upstream to the downstream (the way work flows).

    With `focus` (a Task id): that Task with every Task upstream and downstream of it, nearest
    first; else every Task that has a dependency or a dependent. At most `max_nodes` Tasks; the
    rest are counted in `hidden`. `last_status`: {Task id: its latest TaskRun's status}. The page
    embeds it with Jinja's `tojson` (which escapes `<`, `>`, `&` and quotes) and the script sets
    names as text, never as markup. `choices`: also `"all"`, every Task as `[id, name]`, so a
    Task editor's diagram can follow its Dependencies list before it is saved.
    """
    saved = [task for task in tasks if task.id is not None]
    by_name = {task.name: task for task in saved}
    edges: list[tuple[int, int, str]] = []
    for task in saved:
        for edge in task.dependencies:
            upstream = by_name.get(edge.upstream)
            if upstream is not None and upstream.id is not None and task.id is not None:
                edges.append((upstream.id, task.id, edge.condition.value))
    if focus is not None:
        chosen = _around(focus, edges) if any(t.id == focus for t in saved) else []
    else:
        linked = {end for edge in edges for end in edge[:2]}
        chosen = [task.id for task in saved if task.id is not None and task.id in linked]
    kept = chosen[:max_nodes]
    keep = set(kept)
    statuses = last_status or {}
    by_id = {task.id: task for task in saved}

    def node(task_id: int) -> dict[str, Any]:
        return {
            "id": task_id,
            "name": by_id[task_id].name,
            "href": f"/tasks/{task_id}",
            "focus": task_id == focus,
            "paused": by_id[task_id].paused,
            "status": statuses[task_id].value if task_id in statuses else None,
        }

    graph: dict[str, Any] = {
        "nodes": [node(task_id) for task_id in kept],
        "edges": [
            {"from": up, "to": down, "condition": condition}
            for up, down, condition in edges
            if up in keep and down in keep
        ],
        "hidden": len(chosen) - len(kept),
    }
    if choices:
        graph["all"] = [[task_id, by_id[task_id].name] for task_id in by_id if task_id is not None]
    return graph


def _around(focus: int, edges: Iterable[tuple[int, int, str]]) -> list[int]:
    """`focus`, then its ancestors and descendants, nearest first (ties: ancestors first, then
    by id), each once."""
    ups: dict[int, list[int]] = {}
    downs: dict[int, list[int]] = {}
    for up, down, _ in edges:
        ups.setdefault(down, []).append(up)
        downs.setdefault(up, []).append(down)
    found: dict[int, tuple[int, int]] = {focus: (0, 0)}
    for side, neighbours in enumerate((ups, downs)):
        frontier, distance = [focus], 0
        while frontier:
            distance += 1
            following = []
            for node in frontier:
                for other in neighbours.get(node, ()):
                    if other not in found:
                        found[other] = (distance, side)
                        following.append(other)
            frontier = following
    return sorted(found, key=lambda node: (*found[node], node))


# --- The 24 h timeline -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelineBar:
    """One TaskRun on the timeline; `left_pct`/`width_pct` are shares of the span (0..100)."""

    task_run_id: int | None
    status: TaskRunStatus
    trigger: str
    begin: datetime
    end: datetime | None
    """None while it is still queued or running."""
    left_pct: float
    width_pct: float


@dataclass(frozen=True, slots=True)
class TimelineLane:
    """One Task's row."""

    task_id: int
    name: str
    bars: tuple[TimelineBar, ...]


@dataclass(frozen=True, slots=True)
class TimelineTick:
    left_pct: float
    label: str
    """`HH:MM` in UTC."""


@dataclass(frozen=True, slots=True)
class Timeline:
    """The last `TIMELINE_SPAN` up to `end`: a lane per Task that had a TaskRun in it."""

    start: datetime
    end: datetime
    lanes: tuple[TimelineLane, ...]
    ticks: tuple[TimelineTick, ...]
    hidden_lanes: int
    """Tasks active in the span but left out (beyond MAX_TIMELINE_LANES)."""
    counts: Mapping[TaskRunStatus, int]
    """TaskRuns shown, per status (the legend)."""


def timeline(
    task_runs: Iterable[TaskRun],
    task_names: Mapping[int, str],
    now: datetime,
    *,
    span: timedelta = TIMELINE_SPAN,
    max_lanes: int = MAX_TIMELINE_LANES,
) -> Timeline:
    """Which TaskRuns ran when in the `span` before `now`, one lane per Task, coloured by status.

    A TaskRun runs from its start (or, not yet started, from when it was queued; a Skipped one
    is an instant at its end) to its end, or to `now` while it is active. Those that overlap the
    span are drawn, clipped to it, at least MIN_BAR_PCT wide. Lanes: the Tasks whose latest bar
    is most recent, at most `max_lanes`, listed by name. `task_names`: {Task id: name}; a
    TaskRun of a Task not in it (deleted meanwhile) is left out.
    """
    end = now.astimezone(UTC)
    start = end - span
    span_s = span.total_seconds()
    per_task: dict[int, list[TimelineBar]] = {}
    for run in task_runs:
        if run.task_id not in task_names:
            continue
        begin, finish = _interval(run)
        drawn_end = finish or end
        if drawn_end < start or begin > end:
            continue
        left = (max(begin, start) - start).total_seconds() / span_s * 100
        right = (min(drawn_end, end) - start).total_seconds() / span_s * 100
        left = min(left, 100 - MIN_BAR_PCT)
        width = max(right - left, MIN_BAR_PCT)
        per_task.setdefault(run.task_id, []).append(
            TimelineBar(
                task_run_id=run.id,
                status=run.status,
                trigger=run.trigger.value,
                begin=begin,
                end=finish,
                left_pct=round(left, 3),
                width_pct=round(width, 3),
            )
        )
    latest = sorted(per_task, key=lambda task_id: max(b.begin for b in per_task[task_id]))
    shown_ids = latest[-max_lanes:] if max_lanes > 0 else []
    lanes = sorted(
        (
            TimelineLane(task_id, task_names[task_id], tuple(sorted(per_task[task_id], key=_when)))
            for task_id in shown_ids
        ),
        key=lambda lane: (lane.name.casefold(), lane.task_id),
    )
    counts: dict[TaskRunStatus, int] = {}
    for lane in lanes:
        for bar in lane.bars:
            counts[bar.status] = counts.get(bar.status, 0) + 1
    return Timeline(
        start=start,
        end=end,
        lanes=tuple(lanes),
        ticks=_ticks(start, end),
        hidden_lanes=len(per_task) - len(shown_ids),
        counts=counts,
    )


def _interval(run: TaskRun) -> tuple[datetime, datetime | None]:
    if run.status is TaskRunStatus.SKIPPED:
        moment = (run.ended_at or run.queued_at).astimezone(UTC)
        return moment, moment
    begin = (run.started_at or run.queued_at).astimezone(UTC)
    finish = run.ended_at.astimezone(UTC) if run.ended_at is not None else None
    return begin, finish


def _when(bar: TimelineBar) -> tuple[datetime, int]:
    return bar.begin, bar.task_run_id or 0


def _ticks(start: datetime, end: datetime) -> tuple[TimelineTick, ...]:
    """Marks every TICK_EVERY on the whole UTC hour, with their `HH:MM` labels."""
    span_s = (end - start).total_seconds()
    step_h = int(TICK_EVERY.total_seconds() // 3600)
    first = start.replace(minute=0, second=0, microsecond=0)
    if first < start:
        first += timedelta(hours=1)
    while first.hour % step_h:
        first += timedelta(hours=1)
    ticks = []
    moment = first
    while moment <= end:
        pct = (moment - start).total_seconds() / span_s * 100
        ticks.append(TimelineTick(round(pct, 3), moment.strftime("%H:%M")))
        moment += TICK_EVERY
    return tuple(ticks)
