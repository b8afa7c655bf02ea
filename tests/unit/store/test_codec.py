"""JSON codec of domain values: every Parameter and TaskRunState survives a JSON round trip."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from polysync.domain.models import (
    DataType,
    Direction,
    Parameter,
    RunStatus,
    TaskRunState,
    Termination,
)
from polysync.jobtypes.databricks.parameters import ParameterSource
from polysync.store.codec import (
    parameter_from_json,
    parameter_to_json,
    parameters_from_json,
    parameters_to_json,
    string_map_from_json,
    string_map_to_json,
    task_from_json,
    task_to_json,
    tasks_from_json,
    tasks_to_json,
)

texts = st.text()
optional_texts = st.none() | texts
optional_ints = st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1)

parameters = st.builds(
    Parameter,
    name=texts,
    data_type=st.sampled_from(DataType),
    default=optional_texts,
    direction=st.none() | st.sampled_from(Direction),
    task_key=optional_texts,
    source=st.sampled_from(ParameterSource),
    stored_value=optional_texts,
)

terminations = st.none() | st.builds(
    Termination, code=optional_texts, type=optional_texts, message=texts
)

tasks = st.builds(
    TaskRunState,
    task_key=texts,
    status=st.sampled_from(RunStatus),
    run_id=optional_ints,
    attempt_number=st.integers(min_value=0, max_value=1000),
    life_cycle_state=optional_texts,
    result_state=optional_texts,
    state_message=texts,
    termination=terminations,
    start_time_ms=optional_ints,
    end_time_ms=optional_ints,
    duration_ms=optional_ints,
    run_page_url=optional_texts,
    error=optional_texts,
)


def through_json(value: object) -> Any:
    return json.loads(json.dumps(value))


@given(parameters)
def test_parameter_round_trips_through_json(parameter: Parameter) -> None:
    assert parameter_from_json(through_json(parameter_to_json(parameter))) == parameter


@given(st.lists(parameters))
def test_parameter_lists_keep_their_order(items: list[Parameter]) -> None:
    assert parameters_from_json(through_json(parameters_to_json(items))) == tuple(items)


@given(tasks)
def test_task_state_round_trips_through_json(task: TaskRunState) -> None:
    assert task_from_json(through_json(task_to_json(task))) == task


@given(st.lists(tasks))
def test_task_lists_keep_their_order(items: list[TaskRunState]) -> None:
    assert tasks_from_json(through_json(tasks_to_json(items))) == tuple(items)


@given(st.dictionaries(texts, texts))
def test_string_maps_round_trip(mapping: dict[str, str]) -> None:
    assert string_map_from_json(through_json(string_map_to_json(mapping))) == mapping


def test_enums_are_stored_by_their_domain_spelling() -> None:
    encoded = parameter_to_json(
        Parameter(
            "p",
            data_type=DataType.JSON_ARRAY,
            direction=Direction.INPUT_OUTPUT,
            source=ParameterSource.NOTEBOOK_BASE_PARAMETERS,
        )
    )
    assert encoded["data_type"] == "JsonArray"
    assert encoded["direction"] == "Input&Output"
    assert encoded["source"] == "notebook_task.base_parameters"
    assert task_to_json(TaskRunState("t", RunStatus.CANCELLED))["status"] == "Cancelled"


def test_decoders_ignore_unknown_keys_and_default_missing_ones() -> None:
    assert parameter_from_json({"name": "env", "added_later": 1}) == Parameter("env")
    assert task_from_json({"task_key": "t", "status": "Running", "new": []}) == TaskRunState(
        "t", RunStatus.RUNNING
    )
    assert parameters_from_json(None) == ()
    assert tasks_from_json(None) == ()
    assert string_map_from_json(None) == {}
