"""Tasks and TaskRuns: checks, status transitions, timeouts, dispatch order and the cap."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polysync.domain.models import DataType, Direction, Parameter
from polysync.errors import (
    DependencyError,
    ParameterMappingError,
    RetryPolicyError,
    TaskDefinitionError,
    TaskRunTransitionError,
)
from polysync.jobtypes.databricks.parameters import ParameterSource
from polysync.tasks.dependencies import Dependency
from polysync.tasks.model import (
    Attempt,
    AttemptKind,
    OnOverlap,
    Task,
    TaskRun,
    advance,
    check_task,
    dispatch_order,
    new_task_run,
    overlap_status,
    pick_to_start,
    timed_out,
    timeout_message,
)
from polysync.tasks.retry import RetryPolicy, RetryStrategy
from polysync.tasks.schedule import Schedule
from polysync.tasks.states import (
    ALLOWED_TRANSITIONS,
    TaskRunStatus,
    TriggerType,
    check_transition,
)

S = TaskRunStatus
T0 = datetime(2026, 5, 1, tzinfo=UTC)
WORKFLOW = "Databricks Workflow"


def saved(task: Task, task_id: int = 1) -> Task:
    return replace(task, id=task_id)


def report_task(**kwargs: object) -> Task:
    fields: dict[str, object] = {
        "name": "report",
        "job_id": 7,
        "parameters": {"run_date": "{{upstream.ingest.parameters.run_date}}", "region": "eu"},
        "dependencies": (Dependency("ingest"),),
        "schedules": (Schedule("0 6 * * *", "Europe/London"),),
        **kwargs,
    }
    return Task(**fields)  # type: ignore[arg-type]


JOB_PARAMETERS = (
    Parameter("run_date"),
    Parameter("region", default="us"),
    Parameter("batch", data_type=DataType.INT),
    Parameter("token", data_type=DataType.SECRET),
    Parameter("result", direction=Direction.OUTPUT),
    Parameter("_internal"),
    Parameter("notebook_only", task_key="load", source=ParameterSource.NOTEBOOK_BASE_PARAMETERS),
)


def check(task: Task, **kwargs: object) -> Task:
    options: dict[str, object] = {
        "job_type": WORKFLOW,
        "job_parameters": JOB_PARAMETERS,
        "task_names": ["ingest"],
        "upstream_parameters": {"ingest": ["run_date"]},
        **kwargs,
    }
    return check_task(task, **options)  # type: ignore[arg-type]


# --- Task checks -----------------------------------------------------------------------------


def test_a_schedule_repeated_on_one_task_is_refused_naming_the_repeat() -> None:
    # Found by a new user: `-s "0 2 * * *" -s "0 2 * * *"` was saved and previewed twice.
    london = Schedule("0 2 * * *", "Europe/London")
    with pytest.raises(TaskDefinitionError) as caught:
        check(report_task(schedules=(london, Schedule("0  2 * * *", "Europe/London"))))
    assert caught.value.field == "schedules[1]"
    assert "repeats schedule 0 ('0 2 * * *' in Europe/London)" in caught.value.message
    # The same expression in another zone, or from another date, is another schedule.
    other_zone = Schedule("0 2 * * *", "Australia/Sydney")
    later = Schedule("0 2 * * *", "Europe/London", starts_at=datetime(2027, 1, 1, tzinfo=UTC))
    assert check(report_task(schedules=(london, other_zone, later)))


def test_a_good_task_passes() -> None:
    task = report_task()
    assert check(task) is task
    # A mapped value for an Int parameter is typed when it is rendered, not at save.
    mapped_int = report_task(parameters={"batch": "{{upstream.ingest.parameters.run_date}}"})
    assert check(mapped_int) is mapped_int
    assert check(report_task(parameters={"batch": " 42 "}))
    assert task.enabled
    assert task.upstreams == ("ingest",)


@pytest.mark.parametrize(
    ("kwargs", "error", "field", "says"),
    [
        ({"name": "a.b"}, TaskDefinitionError, "name", "contains '.'"),
        ({"name": " report"}, TaskDefinitionError, "name", "starts or ends with spaces"),
        ({"name": ""}, TaskDefinitionError, "name", "is required"),
        ({"name": "ingest"}, TaskDefinitionError, "name", "already exists"),
        ({"job_id": 0}, TaskDefinitionError, "job_id", "is not a Job id"),
        ({"priority": 101}, TaskDefinitionError, "priority", "from 0 to 100"),
        ({"concurrency_cap": 0}, TaskDefinitionError, "concurrency_cap", "from 1 to 100"),
        ({"timeout_s": 0}, TaskDefinitionError, "timeout_s", "from 1 to 2592000"),
        ({"on_overlap": "drop"}, TaskDefinitionError, "on_overlap", "not queue or skip"),
        ({"parameters": {"nope": "1"}}, TaskDefinitionError, "parameters.nope", "Sync Parameters"),
        (
            {"parameters": {"notebook_only": "1"}},
            TaskDefinitionError,
            "parameters.notebook_only",
            "not at the job level",
        ),
        ({"parameters": {"result": "1"}}, TaskDefinitionError, "parameters.result", "Output"),
        (
            {"parameters": {"_internal": "1"}},
            TaskDefinitionError,
            "parameters._internal",
            "internal",
        ),
        ({"parameters": {"batch": "ten"}}, TaskDefinitionError, "parameters.batch", "whole number"),
        (
            {"parameters": {"token": "{{upstream.ingest.run_id}}"}},
            TaskDefinitionError,
            "parameters.token",
            "is a Secret",
        ),
        (
            {"parameters": {"region": "{{upstream.clean.run_id}}"}},
            ParameterMappingError,
            "parameters.region",
            "not an upstream Task",
        ),
        (
            {"parameters": {"run_date": "{{upstream.ingest.parameters.day}}"}},
            ParameterMappingError,
            "parameters.run_date",
            "has no such parameter",
        ),
        (
            {"dependencies": (Dependency("clean"),)},
            DependencyError,
            "dependencies[0]",
            "not a Task",
        ),
        (
            {"retry": RetryPolicy(strategy=RetryStrategy.REPAIR)},
            RetryPolicyError,
            "retry.strategy",
            None,
        ),
        ({"schedules": (Schedule("* * * * *"),) * 21}, TaskDefinitionError, "schedules", "20"),
        ({"tags": {"k": "v" * 256}}, TaskDefinitionError, "tags", "the limit is 255"),
        ({"description": "x\x07"}, TaskDefinitionError, "description", "U+0007"),
    ],
)
def test_bad_tasks_are_refused_naming_the_field(
    kwargs: dict[str, object], error: type[Exception], field: str | None, says: str | None
) -> None:
    job_type = "Databricks Pipeline" if "retry" in kwargs else WORKFLOW
    with pytest.raises(error) as caught:
        check(report_task(**kwargs), job_type=job_type)
    if field is not None:
        assert isinstance(caught.value, TaskDefinitionError)
        assert caught.value.field == field
    if says is not None:
        assert says in str(caught.value)


def test_the_job_of_a_saved_task_cannot_change() -> None:
    before = saved(report_task())
    with pytest.raises(TaskDefinitionError, match="cannot change after it is saved") as caught:
        check(replace(before, job_id=8), previous=before)
    assert caught.value.field == "job_id"
    # Editing keeps its own name (it is in task_names when the caller lists every Task)...
    check(replace(before, priority=90), previous=before, task_names=["ingest", "report"])
    # ...but cannot take another Task's.
    with pytest.raises(TaskDefinitionError, match="A Task named 'ingest' already exists"):
        check(replace(before, name="ingest", dependencies=()), previous=before)


def test_parameter_values_keep_the_text_limits() -> None:
    with pytest.raises(TaskDefinitionError, match="a control character") as caught:
        check(report_task(parameters={"region": "eu\x00"}))
    assert caught.value.field == "parameters.region"


# --- TaskRun statuses ------------------------------------------------------------------------


def test_the_allowed_transitions_and_nothing_else() -> None:
    for current in S:
        for new in S:
            allowed = new in ALLOWED_TRANSITIONS[current]
            if allowed:
                check_transition(current, new)
            else:
                with pytest.raises(TaskRunTransitionError):
                    check_transition(current, new)
    assert ALLOWED_TRANSITIONS[S.QUEUED] == {S.RUNNING, S.CANCELLED, S.SKIPPED}
    assert ALLOWED_TRANSITIONS[S.RUNNING] == {S.SUCCEEDED, S.FAILED, S.CANCELLED}
    assert all(not ALLOWED_TRANSITIONS[s] for s in S if s.is_terminal)


def test_transition_errors_say_what_can_be_done() -> None:
    with pytest.raises(
        TaskRunTransitionError, match="already Succeeded; it cannot become Cancelled"
    ):
        check_transition(S.SUCCEEDED, S.CANCELLED)
    with pytest.raises(TaskRunTransitionError, match="Repair it to rerun its failed tasks"):
        check_transition(S.FAILED, S.RUNNING)
    with pytest.raises(TaskRunTransitionError, match="can become Cancelled, Running, Skipped"):
        check_transition(S.QUEUED, S.SUCCEEDED)
    with pytest.raises(TaskRunTransitionError, match="only Failed or Cancelled"):
        check_transition(S.SUCCEEDED, S.RUNNING, repair=True)


def test_a_task_run_lives_through_a_repair() -> None:
    task = saved(report_task(priority=70))
    run = new_task_run(task, TriggerType.SCHEDULE, T0, T0)
    assert (run.status, run.priority, run.history[0].status) == (S.QUEUED, 70, S.QUEUED)
    run = advance(run, S.RUNNING, T0 + timedelta(seconds=5))
    run = replace(run, attempts=(Attempt(1, AttemptKind.START, T0, run_id=11),))
    run = advance(run, S.FAILED, T0 + timedelta(minutes=9), "Task clean failed")
    assert (run.started_at, run.ended_at) == (T0 + timedelta(seconds=5), T0 + timedelta(minutes=9))
    repaired = advance(run, S.RUNNING, T0 + timedelta(minutes=30), repair=True)
    assert (repaired.status, repaired.ended_at) == (S.RUNNING, None)
    assert repaired.started_at == T0 + timedelta(seconds=5)
    done = advance(repaired, S.SUCCEEDED, T0 + timedelta(minutes=40))
    assert [e.status for e in done.history] == [
        S.QUEUED,
        S.RUNNING,
        S.FAILED,
        S.RUNNING,
        S.SUCCEEDED,
    ]
    assert done.history[3].message == "reopened by a repair"
    assert done.history[2].attempt == 1


def test_new_task_runs_start_queued_or_skipped() -> None:
    task = saved(report_task())
    skipped = new_task_run(task, TriggerType.DEPENDENCY, T0, T0, status=S.SKIPPED, message="x")
    assert (skipped.status, skipped.ended_at) == (S.SKIPPED, T0)
    with pytest.raises(ValueError, match="starts Queued or Skipped"):
        new_task_run(task, TriggerType.MANUAL, T0, T0, status=S.RUNNING)
    with pytest.raises(ValueError, match="retry_of"):
        new_task_run(task, TriggerType.RETRY, T0, T0)
    with pytest.raises(ValueError, match="must be saved"):
        new_task_run(report_task(), TriggerType.MANUAL, T0, T0)


def test_timeout() -> None:
    attempt = Attempt(1, AttemptKind.START, T0)
    assert not timed_out(attempt, 600, T0 + timedelta(seconds=599))
    assert timed_out(attempt, 600, T0 + timedelta(seconds=600))
    assert not timed_out(attempt, None, T0 + timedelta(days=9))
    assert not timed_out(replace(attempt, ended_at=T0), 1, T0 + timedelta(days=1))
    assert timeout_message(600) == "timed out after 600 s"


# --- Dispatch --------------------------------------------------------------------------------


def queued(run_id: int, task_id: int, priority: int, minute: int) -> TaskRun:
    at = T0 + timedelta(minutes=minute)
    return TaskRun(task_id, TriggerType.SCHEDULE, at, at, priority=priority, id=run_id)


def test_dispatch_order_priority_then_time_then_id() -> None:
    runs = [queued(1, 1, 50, 5), queued(2, 2, 90, 9), queued(3, 3, 50, 1), queued(4, 4, 50, 1)]
    assert [r.id for r in dispatch_order(runs)] == [2, 3, 4, 1]


def test_priority_and_cap_hold_with_200_queued() -> None:
    rng = random.Random(12)
    runs = [queued(i, rng.randrange(20), rng.randrange(101), rng.randrange(60)) for i in range(200)]
    caps = {task_id: 1 + task_id % 3 for task_id in range(20)}
    running = {task_id: task_id % 2 for task_id in range(20)}
    chosen = pick_to_start(runs, running, caps, slots=25, now=T0 + timedelta(hours=2))
    assert len(chosen) == 25
    per_task: dict[int, int] = {}
    for run in chosen:
        per_task[run.task_id] = per_task.get(run.task_id, 0) + 1
    assert all(running[t] + n <= caps[t] for t, n in per_task.items())
    # Nothing passed over had a free slot under its cap and a higher place in the order.
    order = dispatch_order(runs)
    last = order.index(chosen[-1])
    used = dict(running)
    for run in order[: last + 1]:
        if run in chosen:
            used[run.task_id] = used.get(run.task_id, 0) + 1
        else:
            assert used[run.task_id] >= caps[run.task_id]
    assert [order.index(r) for r in chosen] == sorted(order.index(r) for r in chosen)


def test_a_retry_waiting_its_delay_is_not_started() -> None:
    waiting = replace(queued(1, 1, 100, 0), next_attempt_at=T0 + timedelta(minutes=5))
    other = queued(2, 2, 0, 0)
    assert pick_to_start([waiting, other], {}, {}, 5, T0) == [other]
    assert pick_to_start([waiting, other], {}, {}, 5, T0 + timedelta(minutes=5)) == [waiting, other]
    assert pick_to_start([waiting, other], {}, {}, 0, T0) == []


def test_overlap_queues_or_skips() -> None:
    task = report_task(concurrency_cap=2)
    assert overlap_status(task, 1) is S.QUEUED
    assert overlap_status(task, 2) is S.QUEUED
    assert overlap_status(replace(task, on_overlap=OnOverlap.SKIP), 2) is S.SKIPPED
    assert overlap_status(replace(task, on_overlap=OnOverlap.SKIP), 1) is S.QUEUED


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=250))
def test_hostile_task_names_are_accepted_or_refused_never_crash(name: str) -> None:
    try:
        check(report_task(name=name))
    except TaskDefinitionError as exc:
        field = exc.field
    else:
        field = None
        assert name.strip() == name
        assert not ({".", "{", "}"} & set(name))
    assert field in (None, "name")


def test_an_unknown_upstream_parameter_lists_the_upstream_parameters() -> None:
    # Found by trying the CLI: the message ended "no such parameter.." and named no choice.
    task = report_task(parameters={"run_date": "{{upstream.ingest.parameters.run_dat}}"})
    with pytest.raises(ParameterMappingError) as caught:
        check(task)
    assert str(caught.value).endswith(
        "whose Job has no such parameter (its parameters: run_date); did you mean 'run_date'."
    )
