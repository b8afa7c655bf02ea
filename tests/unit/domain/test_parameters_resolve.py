"""What a run sends (D3): scope, Direction, internal names, resolution order and refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polysync.domain.models import DataType, Direction, Parameter
from polysync.domain.parameters import resolve_run_parameters
from polysync.errors import (
    ParameterValueError,
    TaskScopedParameterError,
    UnknownParameterError,
    UsageError,
)
from polysync.jobtypes.databricks.parameters import ParameterSource, extract_parameters

from .fixtures import job

D = Direction
# Text a user may send: no lone surrogates (Cs), no control characters (Cc) but tab and newlines.
SENDABLE = st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\t\n\r")


def p(
    name: str,
    default: str | None = "d",
    *,
    data_type: DataType = DataType.STRING,
    direction: Direction | None = None,
    task_key: str | None = None,
    stored: str | None = None,
    source: ParameterSource = ParameterSource.PARAMETERS,
) -> Parameter:
    return Parameter(
        name=name,
        data_type=data_type,
        default=default,
        direction=direction,
        task_key=task_key,
        source=source,
        stored_value=stored,
    )


def test_defaults_are_left_to_databricks_and_only_overrides_are_sent() -> None:
    parameters = extract_parameters(job()["settings"])
    assert resolve_run_parameters(parameters, {}) == {}
    assert resolve_run_parameters(parameters, {"run_date": "2024-06-21"}) == {
        "run_date": "2024-06-21"
    }


@pytest.mark.parametrize(
    ("direction", "sent"),
    [(None, True), (D.INPUT, True), (D.INPUT_OUTPUT, True), (D.OUTPUT, False)],
)
def test_direction_decides_what_is_sent(direction: Direction | None, sent: bool) -> None:
    parameter = p("x", "1", direction=direction, stored="2")
    assert parameter.is_sent is sent
    assert (resolve_run_parameters([parameter], {}) == {"x": "2"}) is sent
    assert parameter.effective_direction is (direction or D.INPUT)


def test_task_scoped_and_internal_parameters_are_never_sent() -> None:
    parameters = [
        p("mode", "full", task_key="ingest", source=ParameterSource.NOTEBOOK_BASE_PARAMETERS),
        p("_internal", "x"),
        p("_internal_stored", "x", stored="y"),
        p("kept", "k", stored="s"),
    ]
    assert resolve_run_parameters(parameters, {}) == {"kept": "s"}


@pytest.mark.parametrize(
    ("override", "stored", "default", "expected"),
    [
        ("o", "s", "d", "o"),
        (None, "s", "d", "s"),
        (None, None, "d", None),  # Databricks applies its own default (D2 amended)
        ("o", None, None, "o"),
        (None, "s", None, "s"),
        ("", "s", "d", ""),  # an explicit empty override still wins
        (None, "", "d", ""),  # so does an explicit empty stored value
    ],
)
def test_resolution_order(
    override: str | None, stored: str | None, default: str | None, expected: str | None
) -> None:
    overrides = {} if override is None else {"x": override}
    resolved = resolve_run_parameters([p("x", default, stored=stored)], overrides)
    assert resolved == ({} if expected is None else {"x": expected})


def test_a_parameter_with_no_value_at_all_is_left_to_databricks() -> None:
    assert resolve_run_parameters([p("x", None)], {}) == {}


def test_defaults_are_never_reformatted_because_they_are_never_sent() -> None:
    # Issue 8 section 5: a default `True` reached Databricks as `true` with no override.
    parameters = [
        p("flag", "True", data_type=DataType.BOOL),
        p("n", "007", data_type=DataType.INT),
        p("ratio", "1.50", data_type=DataType.FLOAT),
    ]
    assert resolve_run_parameters(parameters, {}) == {}


def test_overrides_are_validated_but_sent_as_typed_and_trimmed() -> None:
    parameters = [
        p("flag", "false", data_type=DataType.BOOL),
        p("retries", "3", data_type=DataType.INT),
        p("ratio", "0.5", data_type=DataType.FLOAT),
        p("cfg", "{}", data_type=DataType.JSON),
        p("label", "x"),
    ]
    overrides = {
        "flag": "True",
        "retries": " 007 ",
        "ratio": "1.50",
        "cfg": ' {"a": 1} ',
        "label": "  padded  ",
    }
    assert resolve_run_parameters(parameters, overrides) == {
        "flag": "True",
        "retries": "007",
        "ratio": "1.50",
        "cfg": '{"a": 1}',
        "label": "  padded  ",  # a String is text: its spaces are the user's
    }


def test_stored_values_are_sent_as_typed_too() -> None:
    parameter = p("retries", "3", data_type=DataType.INT, stored="+010")
    assert resolve_run_parameters([parameter], {}) == {"retries": "+010"}


@pytest.mark.parametrize("value", ["9223372036854775808", "-9223372036854775809", "1" * 30])
def test_an_int_outside_the_signed_64_bit_range_is_refused(value: str) -> None:
    with pytest.raises(ParameterValueError, match="'retries' must be an Int"):
        resolve_run_parameters([p("retries", "3", data_type=DataType.INT)], {"retries": value})


def test_the_64_bit_bounds_themselves_are_accepted() -> None:
    parameter = p("n", "3", data_type=DataType.INT)
    for value in ("9223372036854775807", "-9223372036854775808"):
        assert resolve_run_parameters([parameter], {"n": value}) == {"n": value}


def test_a_bad_value_is_refused_with_name_type_and_value() -> None:
    with pytest.raises(ParameterValueError) as caught:
        resolve_run_parameters([p("batch", "10", data_type=DataType.INT)], {"batch": "abc"})
    message = str(caught.value)
    assert "'batch'" in message
    assert "Int" in message
    assert "'abc'" in message


def test_a_bad_stored_value_is_refused_too() -> None:
    with pytest.raises(ParameterValueError, match="'batch'"):
        resolve_run_parameters([p("batch", "1", data_type=DataType.INT, stored="ten")], {})


def test_output_parameter_is_not_validated_because_it_is_not_sent() -> None:
    parameter = p("out", "1", data_type=DataType.INT, direction=D.OUTPUT, stored="not a number")
    assert resolve_run_parameters([parameter], {}) == {}


def test_overriding_a_task_scoped_parameter_is_refused_with_the_troubleshooting_text() -> None:
    parameters = extract_parameters(job()["settings"])
    with pytest.raises(TaskScopedParameterError) as caught:
        resolve_run_parameters(parameters, {"mode": "incremental"})
    message = str(caught.value)
    assert "'mode'" in message
    assert "'ingest'" in message
    assert "notebook_task.base_parameters" in message
    assert "would not reach the workflow" in message
    assert (
        "declare it on the Databricks Job's job-level parameters (settings.parameters), "
        "then sync the Polysync Job's parameters (Sync Parameters)"
    ) in message
    assert "click" not in message  # interface-neutral: each interface renders the hint
    assert caught.value.hint is not None
    assert caught.value.hint.action == "sync_parameters"
    assert isinstance(caught.value, UsageError)


def test_task_scoped_refusal_names_every_task() -> None:
    parameters = [p("mode", task_key="a"), p("mode", task_key="b")]
    with pytest.raises(TaskScopedParameterError) as caught:
        resolve_run_parameters(parameters, {"mode": "x"})
    assert "'a'" in str(caught.value)
    assert "'b'" in str(caught.value)


def test_a_name_on_job_level_and_a_task_goes_to_the_job_level() -> None:
    parameters = [p("env", "prod"), p("env", "task", task_key="t")]
    assert resolve_run_parameters(parameters, {"env": "dev"}) == {"env": "dev"}


def test_overriding_an_output_parameter_is_refused() -> None:
    with pytest.raises(UsageError) as caught:
        resolve_run_parameters([p("result", direction=D.OUTPUT)], {"result": "x"})
    message = str(caught.value)
    assert type(caught.value) is UsageError
    assert "'result'" in message
    assert "Output parameters are never sent" in message
    assert "Input or Input&Output" in message
    assert "polysync jobs set-param JOB PARAMETER --direction Input" in message  # the real way


@pytest.mark.parametrize("known", [True, False])
def test_overriding_an_internal_parameter_is_refused(known: bool) -> None:
    parameters = [p("_secret_sauce")] if known else []
    with pytest.raises(UsageError) as caught:
        resolve_run_parameters(parameters, {"_secret_sauce": "x"})
    assert type(caught.value) is UsageError
    assert "internal" in str(caught.value)
    assert "'_secret_sauce'" in str(caught.value)


def test_an_unknown_name_is_refused_listing_the_names_that_can_be_set() -> None:
    parameters = [
        p("env"),
        p("run_date"),
        p("out", direction=D.OUTPUT),
        p("_internal"),
        p("mode", task_key="t"),
    ]
    with pytest.raises(UnknownParameterError) as caught:
        resolve_run_parameters(parameters, {"evn": "x"})
    message = str(caught.value)
    assert "'evn'" in message
    assert "env, run_date" in message
    settable = message.split("set for a run:")[1].split(".", maxsplit=1)[0]
    assert settable.strip() == "env, run_date"
    assert "Sync Parameters" in message


def test_an_unknown_name_on_a_job_without_parameters() -> None:
    with pytest.raises(UnknownParameterError, match="no job-level parameters"):
        resolve_run_parameters([], {"x": "1"})


def test_refusal_happens_even_when_other_values_are_fine() -> None:
    with pytest.raises(UnknownParameterError):
        resolve_run_parameters([p("a"), p("b")], {"a": "1", "nope": "2"})


@given(
    st.lists(
        st.builds(
            p,
            name=st.sampled_from(["a", "b", "_c", "d"]),
            default=st.none() | st.text(max_size=5),
            direction=st.none() | st.sampled_from(list(Direction)),
            task_key=st.none() | st.sampled_from(["t1", "t2"]),
            stored=st.none() | st.text(SENDABLE, max_size=5),
        ),
        max_size=8,
    )
)
def test_only_sendable_job_level_names_are_ever_sent(parameters: list[Parameter]) -> None:
    resolved = resolve_run_parameters(parameters, {})
    sendable = {q.name for q in parameters if q.is_job_level}
    for name in resolved:
        assert name in sendable
        assert not name.startswith("_")
        first = next(q for q in parameters if q.is_job_level and q.name == name)
        assert first.effective_direction is not D.OUTPUT
