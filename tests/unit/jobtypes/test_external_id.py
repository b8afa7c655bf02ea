"""External Id parsing (D4): every documented case, plus a property test against an oracle."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from polysync.errors import InvalidExternalIdError, JobDeletedError, UsageError
from polysync.jobtypes.databricks.external_id import (
    MAX_JOB_ID,
    format_external_id,
    job_deleted_error,
    parse_external_id,
)

PREFIX = "INVALID_PARAMETER_VALUE: job_id"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("42", 42),
        (" 42 ", 42),
        ("\t42\n", 42),
        ("\u00a042\u2003", 42),  # Unicode spaces around ASCII digits (a paste from a web page)
        ("1", 1),
        ("0042", 42),
        ("977904116405742", 977904116405742),
        ("9223372036854775807", MAX_JOB_ID),
        ("0009223372036854775807", MAX_JOB_ID),
    ],
)
def test_accepts(value: str, expected: int) -> None:
    assert parse_external_id(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("abc", "only the digits 0-9"),
        ("-1", "only the digits 0-9"),
        ("+42", "only the digits 0-9"),
        ("4_2", "only the digits 0-9"),
        ("42.0", "only the digits 0-9"),
        ("4e2", "only the digits 0-9"),
        ("0x2a", "only the digits 0-9"),
        ("4 2", "only the digits 0-9"),
        ("\u0664\u0662", "only the digits 0-9"),  # Arabic-Indic 42: int() would accept it
        ("\uff14\uff12", "only the digits 0-9"),  # fullwidth 42
        ("\u00b2", "only the digits 0-9"),  # str.isdigit() is True for superscripts
        ("", "empty"),
        ("   ", "empty"),
        ("0", "start at 1"),
        ("000", "start at 1"),
        ("9223372036854775808", "larger than the largest Job Id"),
        ("99999999999999999999", "larger than the largest Job Id"),
        ("1" * 5000, "larger than the largest Job Id"),  # over CPython's int() digit limit
    ],
)
def test_refuses(value: str, reason: str) -> None:
    with pytest.raises(InvalidExternalIdError) as caught:
        parse_external_id(value)
    message = str(caught.value)
    assert message.startswith(PREFIX)
    assert "is not a valid numeric Job Id" in message
    assert "Re-import the job from the Platform editor" in message
    assert reason in message
    if len(value) < 40:
        assert repr(value) in message


def test_refuses_non_text() -> None:
    with pytest.raises(InvalidExternalIdError, match=r"^INVALID_PARAMETER_VALUE: job_id"):
        parse_external_id(42)  # type: ignore[arg-type]


def test_long_value_is_shortened_in_the_message() -> None:
    with pytest.raises(InvalidExternalIdError) as caught:
        parse_external_id("x" * 10_000)
    assert len(str(caught.value)) < 400
    assert "..." in str(caught.value)


def test_error_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_external_id("abc")


def test_format_round_trips() -> None:
    assert format_external_id(42) == "42"
    assert parse_external_id(format_external_id(MAX_JOB_ID)) == MAX_JOB_ID


def test_job_deleted_error() -> None:
    error = job_deleted_error(998654886170278)
    assert isinstance(error, JobDeletedError)
    assert isinstance(error, UsageError)
    assert error.message.startswith(PREFIX)
    assert "Databricks job 998654886170278 does not exist" in error.message
    assert "the Job was deleted" in error.message
    assert "Re-import the job from the Platform editor" in error.message
    assert not error.retryable


_ORACLE = re.compile(r"\s*([0-9]+)\s*")


def _oracle(value: str) -> int | None:
    match = _ORACLE.fullmatch(value)
    if match is None:
        return None
    significant = match.group(1).lstrip("0")
    if not significant or len(significant) > 19:
        return None
    number = int(significant)
    return number if number <= MAX_JOB_ID else None


_WHITESPACE = st.sampled_from([" ", "\t", "\n", "\r", "\x0b", "\x0c", "\u00a0", "\u2003", "\u3000"])
_candidates = st.one_of(
    st.text(),
    st.from_regex(r"\s*[0-9]+\s*", fullmatch=True),
    st.builds(
        lambda left, n, right: left + str(n) + right,
        st.text(_WHITESPACE, max_size=3),
        st.integers(min_value=-(2**65), max_value=2**65),
        st.text(_WHITESPACE, max_size=3),
    ),
    st.text(alphabet=st.sampled_from("0123456789\u0664\u0662\uff14+-_. e\u00a0"), max_size=25),
)


@given(_candidates)
@example("9223372036854775807")
@example("9223372036854775808")
@example("0")
@example(" 42 ")
@example("\u0664\u0662")
def test_parse_matches_oracle(value: str) -> None:
    expected = _oracle(value)
    if expected is None:
        with pytest.raises(InvalidExternalIdError) as caught:
            parse_external_id(value)
        assert str(caught.value).startswith(PREFIX)
    else:
        assert parse_external_id(value) == expected
        assert 1 <= expected <= MAX_JOB_ID
