"""The run page's task timeline: bars placed on the run's span, running tasks visible."""

from __future__ import annotations

from polysync.domain.models import RunStatus, TaskRunState
from polysync.web.context import format_duration_ms
from polysync.web.run_pages import timeline


def task(key: str, start: int | None, end: int | None, status: RunStatus) -> TaskRunState:
    return TaskRunState(task_key=key, status=status, start_time_ms=start, end_time_ms=end)


def test_finished_tasks_fill_the_span_in_proportion() -> None:
    bars = timeline(
        (
            task("a", 1_000, 11_000, RunStatus.SUCCESS),
            task("b", 11_000, 21_000, RunStatus.FAILED),
            task("c", None, None, RunStatus.FAILED),
        )
    )
    assert [(b.left_pct, b.width_pct) for b in bars] == [(0.0, 50.0), (50.0, 50.0), (0.0, 0.0)]
    assert bars[0].duration_ms == 10_000


def test_a_task_that_just_started_still_shows_a_bar() -> None:
    bars = timeline(
        (task("plan", 0, 8_000, RunStatus.SUCCESS), task("run", 8_000, None, RunStatus.RUNNING))
    )
    running = bars[1]
    assert running.width_pct > 0
    assert running.left_pct + running.width_pct <= 100
    assert running.duration_ms is None


def test_no_task_started_means_no_bar() -> None:
    assert timeline((task("a", None, None, RunStatus.STARTING),))[0].width_pct == 0.0


def test_durations_read_as_people_say_them() -> None:
    assert format_duration_ms(None) == "\u2013"
    assert format_duration_ms(900) == "1s"
    assert format_duration_ms(125_000) == "2m 05s"
    assert format_duration_ms(3_725_000) == "1h 02m 05s"
