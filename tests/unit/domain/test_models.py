"""The domain records: enum values, derived properties, immutability."""

from __future__ import annotations

import dataclasses

import pytest

from polysync.domain.models import (
    DataType,
    Direction,
    ImportedJob,
    JobSchema,
    Parameter,
    ParameterDiff,
    ParameterScope,
    RunSnapshot,
    RunStatus,
    TaskRunState,
)
from polysync.jobtypes.databricks.parameters import JobKind, ParameterSource


def test_enum_values_are_the_product_names() -> None:
    assert [str(t) for t in DataType] == [
        "String",
        "Secret",
        "Int",
        "Float",
        "Bool",
        "JSON",
        "JsonArray",
    ]
    assert [str(d) for d in Direction] == ["Input", "Output", "Input&Output"]
    assert Direction("Input&Output") is Direction.INPUT_OUTPUT
    assert str(ParameterSource.NOTEBOOK_BASE_PARAMETERS) == "notebook_task.base_parameters"


def test_scope() -> None:
    assert ParameterScope().is_job_level
    assert str(ParameterScope()) == "job level"
    assert str(ParameterScope("ingest")) == "task 'ingest'"
    assert Parameter("x", task_key="ingest").scope == ParameterScope("ingest")
    assert Parameter("x").key == ("x", None)


@pytest.mark.parametrize(
    ("parameter", "sent"),
    [
        (Parameter("x"), True),
        (Parameter("x", direction=Direction.INPUT), True),
        (Parameter("x", direction=Direction.INPUT_OUTPUT), True),
        (Parameter("x", direction=Direction.OUTPUT), False),
        (Parameter("x", task_key="t"), False),
        (Parameter("_x"), False),
    ],
)
def test_is_sent(parameter: Parameter, sent: bool) -> None:
    assert parameter.is_sent is sent


def test_records_are_frozen_and_slotted() -> None:
    parameter = Parameter("x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        parameter.name = "y"  # type: ignore[misc]
    assert not hasattr(parameter, "__dict__")
    assert hash(parameter) == hash(Parameter("x"))


def test_imported_job_is_hashable_despite_its_tags() -> None:
    job = ImportedJob("1", "n", JobKind.JOB, 1, tags={"a": "b"})
    assert hash(job) == hash(ImportedJob("1", "n", JobKind.JOB, 1, tags={"c": "d"}))
    assert job != ImportedJob("1", "n", JobKind.JOB, 1, tags={"c": "d"})
    assert JobSchema is ImportedJob


def test_empty_diff() -> None:
    assert ParameterDiff().is_empty
    assert not ParameterDiff(kind_changed=(JobKind.JOB, JobKind.WORKFLOW)).is_empty
    assert not ParameterDiff(added=(Parameter("x"),)).is_empty


def test_latest_attempt_wins_ties_by_order() -> None:
    first = TaskRunState("a", RunStatus.FAILED, run_id=1, attempt_number=1)
    second = TaskRunState("a", RunStatus.SUCCESS, run_id=2, attempt_number=1)
    snapshot = RunSnapshot(status=RunStatus.SUCCESS, tasks=(first, second))
    assert snapshot.latest_attempts() == (second,)
    assert snapshot.failed_tasks == ()


@pytest.mark.parametrize("previous", list(RunStatus))
@pytest.mark.parametrize("new", list(RunStatus))
def test_only_a_repair_reopens_a_failed_or_cancelled_run_and_only_as_running(
    previous: RunStatus, new: RunStatus
) -> None:
    """D6 as amended by D13: a terminal status never changes, except by a repair, which takes a
    Failed or Cancelled run back to Running (and nothing else)."""
    reopens = previous in (RunStatus.FAILED, RunStatus.CANCELLED) and new is RunStatus.RUNNING
    assert new.may_follow(previous, repair=True) is reopens
    if previous.is_terminal:
        assert new.may_follow(previous) is (new is previous)
    assert previous.is_repairable is (previous in (RunStatus.FAILED, RunStatus.CANCELLED))
