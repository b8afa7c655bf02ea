"""Dynamic value references, condition_task comparisons and for_each_task inputs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polysync.emulator.controlflow import (
    InvalidReference,
    ReferenceContext,
    evaluate_condition,
    parse_foreach_inputs,
    resolve_in,
    resolve_references,
)

CONTEXT = ReferenceContext(
    job_id=42,
    run_id=7,
    job_name="etl",
    repair_count=1,
    job_parameters={"env": "dev", "rows": "12"},
    task_run_ids={"ingest": 99},
    task_results={"ingest": "success"},
    item=json.dumps({"region": "emea", "n": 3}),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{job.parameters.env}}", "dev"),
        ("{{ job.parameters.rows }} rows", "12 rows"),
        ("{{job.id}}/{{job.run_id}}/{{job.name}}/{{job.repair_count}}", "42/7/etl/1"),
        ("{{tasks.ingest.run_id}} {{tasks.ingest.result_state}}", "99 success"),
        ("{{input.region}}-{{input.n}}", "emea-3"),
        ("no references", "no references"),
    ],
)
def test_references_resolve(text: str, expected: str) -> None:
    assert resolve_references(text, CONTEXT) == expected


@pytest.mark.parametrize(
    "text", ["{{job.parameters.missing}}", "{{tasks.other.run_id}}", "{{input.nope}}", "{{what}}"]
)
def test_unknown_references_name_themselves(text: str) -> None:
    with pytest.raises(InvalidReference, match="Invalid dynamic value reference"):
        resolve_references(text, CONTEXT)


def test_references_resolve_inside_nested_task_definitions() -> None:
    task = {"notebook_task": {"base_parameters": {"r": "{{input.region}}"}}, "n": 3}
    assert resolve_in(task, CONTEXT) == {
        "notebook_task": {"base_parameters": {"r": "emea"}},
        "n": 3,
    }


@pytest.mark.parametrize(
    ("op", "left", "right", "outcome"),
    [
        ("EQUAL_TO", "12.0", "12", False),  # string comparison (sdk-py ConditionTaskOp)
        ("NOT_EQUAL", "a", "b", True),
        ("GREATER_THAN_OR_EQUAL", "12.0", "12", True),  # numeric comparison
        ("GREATER_THAN", "10.0", "12", False),
        ("LESS_THAN", "-1", "0", True),
        ("LESS_THAN_OR_EQUAL", "3", "3", True),
    ],
)
def test_conditions(op: str, left: str, right: str, outcome: bool) -> None:
    assert evaluate_condition(op, left, right) is outcome


@pytest.mark.parametrize(
    ("op", "left"), [("GREATER_THAN", "abc"), ("BETWEEN", "1"), ("LESS_THAN", "nan")]
)
def test_conditions_that_cannot_be_evaluated(op: str, left: str) -> None:
    with pytest.raises(ValueError, match=r"compare|Unknown"):
        evaluate_condition(op, left, "1")


@given(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
)
def test_numeric_operators_agree_with_python(a: float, b: float) -> None:
    left, right = repr(a), repr(b)
    assert evaluate_condition("GREATER_THAN", left, right) is (a > b)
    assert evaluate_condition("LESS_THAN_OR_EQUAL", left, right) is (a <= b)


@given(st.text(max_size=40))
def test_any_text_gives_a_list_or_a_clear_error(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError:
        expected = None
    if isinstance(expected, list):
        assert [json.loads(i) for i in parse_foreach_inputs(text)] == expected
    else:
        with pytest.raises(ValueError, match=r"JSON array"):
            parse_foreach_inputs(text)


def test_foreach_inputs_are_capped() -> None:
    with pytest.raises(ValueError, match="at most 5000"):
        parse_foreach_inputs(json.dumps(list(range(5001))))
    assert parse_foreach_inputs('["a", {"k": 1}, 2]') == ['"a"', '{"k": 1}', "2"]
