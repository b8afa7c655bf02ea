"""Text a parameter may carry (issue 8): refused at the edge when no request could carry it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polysync.domain.limits import check_parameter_text as check_text
from polysync.domain.models import DataType, Parameter
from polysync.domain.parameters import resolve_run_parameters, user_value
from polysync.errors import ParameterTextError, ParameterValueError, UsageError

ENV = Parameter(name="env", default="prod")
TOKEN = Parameter(name="token", data_type=DataType.SECRET, default="x")


@pytest.mark.parametrize(
    ("value", "code_point", "position"),
    [
        ("\ud800", "U+D800", 1),  # the reproduction: a lone surrogate from JSON
        ("dev\udcff", "U+DCFF", 4),  # an undecodable command-line byte (surrogateescape)
        ("a\x00b", "U+0000", 2),
        ("\x1b[31mred", "U+001B", 1),
        ("del\x7f", "U+007F", 4),
        ("c1\x85", "U+0085", 3),
    ],
)
def test_unsendable_text_is_refused_naming_the_parameter(
    value: str, code_point: str, position: int
) -> None:
    with pytest.raises(ParameterTextError) as caught:
        resolve_run_parameters([ENV], {"env": value})
    message = str(caught.value)
    assert message.startswith("Parameter 'env' has a value that holds")
    assert f"({code_point} at character {position})" in message
    assert "cannot be sent to Databricks" in message
    assert isinstance(caught.value, ParameterValueError)  # a UsageError: CLI exit 2, API 4xx


@pytest.mark.parametrize("value", ["line one\nline two", "a\tb", "crlf\r\n", "ünïcødé ✓ 🚀", ""])
def test_tab_newlines_and_any_other_unicode_are_sendable(value: str) -> None:
    assert resolve_run_parameters([ENV], {"env": value}) == {"env": value}


def test_a_stored_value_is_checked_like_an_override() -> None:
    stored = Parameter(name="env", default="prod", stored_value="x\ud83d")
    with pytest.raises(ParameterTextError, match="'env'"):
        resolve_run_parameters([stored], {})


def test_a_bad_name_is_refused_before_it_is_looked_up() -> None:
    with pytest.raises(ParameterTextError) as caught:
        resolve_run_parameters([ENV], {"e\x00nv": "dev"})
    assert "The parameter name 'e\\x00nv' holds a control character" in str(caught.value)


def test_a_secret_value_is_never_quoted() -> None:
    with pytest.raises(ParameterTextError) as caught:
        user_value(DataType.SECRET, "hunter2\x00", name="token")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ParameterTextError) as caught:
        resolve_run_parameters([TOKEN], {"token": "s3cr3t\ud800"})
    assert "s3cr3t" not in str(caught.value)


def test_check_text_returns_good_text_unchanged() -> None:
    assert check_text("plain") == "plain"
    with pytest.raises(ParameterTextError, match=r"^The value holds a lone surrogate"):
        check_text("\udfff")


@given(st.text(max_size=12), st.sampled_from(list(DataType)))
def test_whatever_the_input_the_request_body_can_be_encoded(text: str, data_type: DataType) -> None:
    # The property that keeps the engine alive: what resolution returns is always encodable
    # UTF-8 JSON (the run-now body); anything else was refused as a UsageError first.
    parameter = Parameter(name="p", data_type=data_type, default="d")
    try:
        resolved = resolve_run_parameters([parameter], {"p": text})
    except UsageError:
        return
    json.dumps({"job_parameters": resolved}, ensure_ascii=False).encode("utf-8")
    assert resolved["p"] == (
        text if data_type in (DataType.STRING, DataType.SECRET) else text.strip()
    )
