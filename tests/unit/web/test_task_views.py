"""The dependency diagram's data and the 24 h timeline, built from Task and TaskRun records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import Environment

from polysync.tasks.dependencies import Condition, Dependency
from polysync.tasks.model import Task, TaskRun
from polysync.tasks.states import TaskRunStatus, TriggerType
from polysync.web.task_views import MIN_BAR_PCT, dependency_graph, timeline

NOW = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)


def _task(task_id: int, name: str, *upstreams: str, paused: bool = False) -> Task:
    return Task(
        name=name,
        job_id=1,
        id=task_id,
        paused=paused,
        dependencies=tuple(Dependency(up) for up in upstreams),
    )


def _run(
    task_id: int,
    status: TaskRunStatus,
    started: datetime | None,
    ended: datetime | None,
    *,
    run_id: int = 1,
    queued: datetime | None = None,
) -> TaskRun:
    return TaskRun(
        task_id=task_id,
        trigger=TriggerType.SCHEDULE,
        scheduled_for=started or NOW,
        queued_at=queued or started or NOW,
        status=status,
        started_at=started,
        ended_at=ended,
        id=run_id,
    )


# A diamond and a separate pair: ingest -> clean, ingest -> stats, clean & stats -> report;
# other -> lonely. `solo` has no edge at all.
TASKS = [
    _task(1, "ingest"),
    _task(2, "clean", "ingest"),
    Task(
        name="stats",
        job_id=1,
        id=3,
        dependencies=(Dependency("ingest", Condition.ON_FAILURE),),
    ),
    _task(4, "report", "clean", "stats"),
    _task(5, "other"),
    _task(6, "lonely", "other", paused=True),
    _task(7, "solo"),
]


def _edges(graph: dict[str, object]) -> set[tuple[int, int, str]]:
    edges = graph["edges"]
    assert isinstance(edges, list)
    return {(e["from"], e["to"], e["condition"]) for e in edges}


def _ids(graph: dict[str, object]) -> list[int]:
    nodes = graph["nodes"]
    assert isinstance(nodes, list)
    return [n["id"] for n in nodes]


def test_the_whole_graph_has_every_linked_task_and_edges_go_the_way_work_flows() -> None:
    graph = dependency_graph(TASKS)
    assert sorted(_ids(graph)) == [1, 2, 3, 4, 5, 6]  # solo has no edge: not drawn
    assert _edges(graph) == {
        (1, 2, "on_success"),
        (1, 3, "on_failure"),
        (2, 4, "on_success"),
        (3, 4, "on_success"),
        (5, 6, "on_success"),
    }
    assert graph["hidden"] == 0
    assert "all" not in graph


def test_a_focused_graph_has_the_task_its_ancestors_and_descendants_only() -> None:
    graph = dependency_graph(TASKS, focus=2, last_status={1: TaskRunStatus.FAILED}, choices=True)
    # clean's ancestors (ingest) and descendants (report); stats is a sibling, not drawn.
    assert _ids(graph) == [2, 1, 4]
    assert _edges(graph) == {(1, 2, "on_success"), (2, 4, "on_success")}
    nodes = {n["id"]: n for n in graph["nodes"]}  # type: ignore[attr-defined]
    assert nodes[2]["focus"] is True
    assert nodes[1]["focus"] is False
    assert nodes[1]["status"] == "Failed"
    assert nodes[2]["status"] is None
    assert nodes[4]["href"] == "/tasks/4"
    assert sorted(graph["all"]) == [
        [1, "ingest"],
        [2, "clean"],
        [3, "stats"],
        [4, "report"],
        [5, "other"],
        [6, "lonely"],
        [7, "solo"],
    ]  # type: ignore[attr-defined]


def test_a_focused_graph_of_an_unknown_or_isolated_task() -> None:
    assert dependency_graph(TASKS, focus=99)["nodes"] == []
    solo = dependency_graph(TASKS, focus=7)
    assert _ids(solo) == [7]
    assert _edges(solo) == set()


def test_a_long_chain_is_cut_at_the_limit_nearest_first_and_counted() -> None:
    chain = [_task(1, "t1")] + [_task(i, f"t{i}", f"t{i - 1}") for i in range(2, 51)]
    graph = dependency_graph(chain, focus=25, max_nodes=5)
    assert _ids(graph) == [25, 24, 26, 23, 27]  # by distance; ancestors first on a tie
    assert graph["hidden"] == 45
    assert _edges(graph) == {
        (23, 24, "on_success"),
        (24, 25, "on_success"),
        (25, 26, "on_success"),
        (26, 27, "on_success"),
    }


def test_hostile_names_stay_data_in_the_embedded_json() -> None:
    name = "</script><img src=x onerror=alert(1)>\x01'\"&"
    tasks = [_task(1, name), _task(2, "down", name)]
    graph = dependency_graph(tasks, focus=2)
    embedded = Environment(autoescape=True).from_string("{{ graph|tojson }}").render(graph=graph)
    assert "<" not in embedded
    assert ">" not in embedded
    assert "&" not in embedded.replace("\\u0026", "")
    assert json.loads(embedded)["nodes"][1]["name"] == name


def test_the_timeline_places_runs_on_the_last_24_hours() -> None:
    names = {1: "ingest", 2: "Clean", 3: "gone"}
    runs = [
        # 06:30 to 09:30 UTC: a quarter of the way in (the span starts at 12:30 the day before).
        _run(1, TaskRunStatus.SUCCEEDED, NOW - timedelta(hours=6), NOW - timedelta(hours=3)),
        # Started 30 h ago and ended 18 h ago: clipped at the span's start.
        _run(
            2, TaskRunStatus.FAILED, NOW - timedelta(hours=30), NOW - timedelta(hours=18), run_id=2
        ),
        # Ended before the span: left out.
        _run(
            2,
            TaskRunStatus.SUCCEEDED,
            NOW - timedelta(hours=40),
            NOW - timedelta(hours=25),
            run_id=3,
        ),
        # Still running: it reaches now.
        _run(2, TaskRunStatus.RUNNING, NOW - timedelta(hours=1), None, run_id=4),
        # Skipped: an instant, still visible.
        _run(
            1,
            TaskRunStatus.SKIPPED,
            None,
            NOW - timedelta(hours=12),
            run_id=5,
            queued=NOW - timedelta(hours=12),
        ),
        # A TaskRun of a Task deleted meanwhile: left out.
        _run(9, TaskRunStatus.SUCCEEDED, NOW - timedelta(hours=2), NOW - timedelta(hours=1)),
    ]
    shown = timeline(runs, names, NOW)
    assert shown.start == NOW - timedelta(hours=24)
    assert shown.end == NOW
    assert [lane.name for lane in shown.lanes] == ["Clean", "ingest"]  # by name, any case
    clean, ingest = shown.lanes
    assert [(b.task_run_id, b.left_pct, b.width_pct) for b in clean.bars] == [
        (2, 0.0, 25.0),
        (4, 95.833, 4.167),
    ]
    assert [(b.task_run_id, b.status) for b in ingest.bars] == [
        (5, TaskRunStatus.SKIPPED),
        (1, TaskRunStatus.SUCCEEDED),
    ]
    skipped, succeeded = ingest.bars
    assert skipped.left_pct == 50.0
    assert skipped.width_pct == MIN_BAR_PCT
    assert (succeeded.left_pct, succeeded.width_pct) == (75.0, 12.5)
    assert clean.bars[1].end is None
    assert dict(shown.counts) == {
        TaskRunStatus.FAILED: 1,
        TaskRunStatus.RUNNING: 1,
        TaskRunStatus.SKIPPED: 1,
        TaskRunStatus.SUCCEEDED: 1,
    }
    # Every 3 h on the whole UTC hour: 15:00 the day before, ..., 12:00.
    assert [t.label for t in shown.ticks] == [
        "15:00",
        "18:00",
        "21:00",
        "00:00",
        "03:00",
        "06:00",
        "09:00",
        "12:00",
    ]
    assert shown.ticks[0].left_pct == 10.417


def test_the_timeline_keeps_the_most_recently_active_lanes() -> None:
    names = {i: f"t{i:02d}" for i in range(1, 11)}
    runs = [
        _run(
            i,
            TaskRunStatus.SUCCEEDED,
            NOW - timedelta(hours=20 - i),
            NOW - timedelta(hours=19 - i),
            run_id=i,
        )
        for i in range(1, 11)
    ]
    shown = timeline(runs, names, NOW, max_lanes=3)
    assert [lane.name for lane in shown.lanes] == ["t08", "t09", "t10"]
    assert shown.hidden_lanes == 7


def test_a_queued_run_is_drawn_from_when_it_was_queued() -> None:
    queued = _run(1, TaskRunStatus.QUEUED, None, None, queued=NOW - timedelta(hours=2))
    (lane,) = timeline([queued], {1: "t"}, NOW).lanes
    (bar,) = lane.bars
    assert (bar.left_pct, bar.width_pct) == (91.667, 8.333)


@settings(max_examples=200, deadline=None)
@given(
    start_h=st.floats(min_value=-60, max_value=30, allow_nan=False),
    length_h=st.floats(min_value=0, max_value=60, allow_nan=False),
    ended=st.booleans(),
)
def test_every_bar_stays_inside_the_span(start_h: float, length_h: float, ended: bool) -> None:
    started = NOW + timedelta(hours=start_h)
    finish = started + timedelta(hours=length_h) if ended else None
    status = TaskRunStatus.SUCCEEDED if ended else TaskRunStatus.RUNNING
    shown = timeline([_run(1, status, started, finish)], {1: "t"}, NOW)
    for lane in shown.lanes:
        for bar in lane.bars:
            assert 0 <= bar.left_pct <= 100 - MIN_BAR_PCT
            assert bar.width_pct >= MIN_BAR_PCT
            assert bar.left_pct + bar.width_pct <= 100 + 1e-6
    overlaps = (finish or NOW) >= NOW - timedelta(hours=24) and started <= NOW
    assert bool(shown.lanes) == overlaps
