"""Data Type inference and value serialisation (D2), by table and by property."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polysync.domain.limits import MAX_INT64, MIN_INT64
from polysync.domain.models import DataType
from polysync.domain.parameters import infer_data_type, serialise_value, value_fits
from polysync.errors import ParameterValueError

T = DataType


@pytest.mark.parametrize(
    ("default", "expected"),
    [
        ("true", T.BOOL),
        ("false", T.BOOL),
        ("True", T.BOOL),
        ("FALSE", T.BOOL),
        ("tRuE", T.BOOL),
        ("0", T.INT),
        ("42", T.INT),
        ("-2", T.INT),
        ("9223372036854775807", T.INT),
        ("9223372036854775808", T.STRING),  # past 64 bits: a long id, kept as text
        ("1.5", T.FLOAT),
        ("-0.5", T.FLOAT),
        ("0.0", T.FLOAT),
        ("-0.0", T.FLOAT),
        ("1e+16", T.FLOAT),
        ("1.5e-07", T.FLOAT),
        ("0.1", T.FLOAT),
        # Not canonical, so inference would change the text sent: String.
        ("0042", T.STRING),
        ("-0", T.STRING),
        ("+5", T.STRING),
        ("1.50", T.STRING),
        ("3.10", T.STRING),
        ("1e3", T.STRING),
        ("1E+16", T.STRING),
        (".5", T.STRING),
        ("5.", T.STRING),
        ("1.0000000000000000001", T.STRING),
        # Not numbers at all.
        ("", T.STRING),
        (" 1", T.STRING),
        ("1 ", T.STRING),
        ("1_000", T.STRING),
        ("0x10", T.STRING),
        ("nan", T.STRING),
        ("NaN", T.STRING),
        ("inf", T.STRING),
        ("-Infinity", T.STRING),
        ("\u0664\u0662", T.STRING),
        ("yes", T.STRING),
        ("true ", T.STRING),
        ("1", T.INT),
        ("prod", T.STRING),
        ('{"a": 1}', T.STRING),
        ("[1, 2]", T.STRING),
        ("{{job.parameters.run_date}}", T.STRING),
        # Non-string defaults (a JSON boolean or number).
        (True, T.BOOL),
        (False, T.BOOL),
        (0, T.INT),
        (-7, T.INT),
        (1.5, T.FLOAT),
        (1e300, T.FLOAT),
        (math.nan, T.STRING),
        (math.inf, T.STRING),
        (None, T.STRING),
        ({"a": 1}, T.STRING),
        ([1], T.STRING),
    ],
)
def test_infer_data_type(default: object, expected: DataType) -> None:
    assert infer_data_type(default) is expected


@pytest.mark.parametrize(
    ("data_type", "value", "expected"),
    [
        (T.STRING, "anything at all ", "anything at all "),
        (T.STRING, "", ""),
        (T.STRING, True, "true"),
        (T.STRING, 5, "5"),
        (T.SECRET, "vault://kv/secret", "vault://kv/secret"),
        (T.BOOL, "true", "true"),
        (T.BOOL, "TRUE", "true"),
        (T.BOOL, " False ", "false"),
        (T.BOOL, True, "true"),
        (T.BOOL, False, "false"),
        (T.INT, "42", "42"),
        (T.INT, "0042", "42"),
        (T.INT, "+42", "42"),
        (T.INT, "-0", "0"),
        (T.INT, " 7 ", "7"),
        (T.INT, 42, "42"),
        (T.INT, "9223372036854775807", "9223372036854775807"),  # the signed 64-bit bounds
        (T.INT, "-9223372036854775808", "-9223372036854775808"),
        (T.INT, "000009223372036854775807", "9223372036854775807"),
        (T.FLOAT, "1.5", "1.5"),
        (T.FLOAT, "1.50", "1.5"),
        (T.FLOAT, "-2", "-2.0"),
        (T.FLOAT, "1e3", "1000.0"),
        (T.FLOAT, "1E3", "1000.0"),
        (T.FLOAT, ".5", "0.5"),
        (T.FLOAT, "5.", "5.0"),
        (T.FLOAT, "+0.25", "0.25"),
        (T.FLOAT, "1e16", "1e+16"),
        (T.FLOAT, "0.0001", "0.0001"),
        (T.FLOAT, "0.00001", "1e-05"),
        (T.FLOAT, 2, "2.0"),
        (T.FLOAT, 0.1, "0.1"),
        (T.JSON, '{"a": [1, 2]}', '{"a": [1, 2]}'),
        (T.JSON, {"a": 1}, '{"a": 1}'),
        (T.JSON_ARRAY, "[1, 2]", "[1, 2]"),
        (T.JSON_ARRAY, "[]", "[]"),
        (T.JSON_ARRAY, [1, "x"], '[1, "x"]'),
    ],
)
def test_serialise_value(data_type: DataType, value: object, expected: str) -> None:
    assert serialise_value(data_type, value, name="p") == expected


@pytest.mark.parametrize(
    ("data_type", "value"),
    [
        (T.BOOL, "yes"),
        (T.BOOL, "1"),
        (T.BOOL, 1),
        (T.BOOL, ""),
        (T.INT, "abc"),
        (T.INT, "1.0"),
        (T.INT, "1e3"),
        (T.INT, "4_2"),
        (T.INT, "\u0664\u0662"),
        (T.INT, "0x10"),
        (T.INT, ""),
        (T.INT, True),
        (T.INT, 1.0),
        (T.INT, "1" * 5000),  # over CPython's int/str conversion limit
        (T.INT, "9" * 400),  # the 400-digit Int of issue 9
        (T.INT, "9223372036854775808"),  # one past the signed 64-bit range
        (T.INT, "-9223372036854775809"),
        (T.INT, 2**63),
        (T.FLOAT, "abc"),
        (T.FLOAT, "nan"),
        (T.FLOAT, "inf"),
        (T.FLOAT, "-Infinity"),
        (T.FLOAT, "1e999"),
        (T.FLOAT, "0x1p3"),
        (T.FLOAT, "1_000.5"),
        (T.FLOAT, "\u0661.\u0665"),
        (T.FLOAT, ""),
        (T.FLOAT, "."),
        (T.FLOAT, math.nan),
        (T.FLOAT, True),
        (T.FLOAT, 10**400),
        (T.JSON, "[1]"),
        (T.JSON, "not json"),
        (T.JSON, '{"a": NaN}'),
        (T.JSON, "5"),
        (T.JSON, [1]),
        (T.JSON_ARRAY, '{"a": 1}'),
        (T.JSON_ARRAY, "[Infinity]"),
        (T.JSON_ARRAY, ""),
        (T.JSON_ARRAY, {"a": 1}),
        (T.STRING, None),
        (T.STRING, {"a": 1}),
    ],
)
def test_serialise_value_refuses(data_type: DataType, value: object) -> None:
    with pytest.raises(ParameterValueError) as caught:
        serialise_value(data_type, value, name="batch_size")
    message = str(caught.value)
    assert "'batch_size'" in message
    assert str(data_type) in message
    assert repr(value)[:40] in message or "..." in message
    assert "Data Type" in message
    assert not value_fits(data_type, value)


def test_error_without_a_name() -> None:
    with pytest.raises(ParameterValueError, match=r"^The value must be an Int"):
        serialise_value(T.INT, "abc")


def test_secret_value_never_appears_in_a_message() -> None:
    with pytest.raises(ParameterValueError) as caught:
        serialise_value(T.SECRET, {"password": "hunter2"}, name="token")
    assert "hunter2" not in str(caught.value)
    assert "(hidden)" in str(caught.value)


# --- Properties ------------------------------------------------------------------------------

_finite_floats = st.floats(allow_nan=False, allow_infinity=False)


@given(
    st.one_of(
        st.integers(min_value=MAX_INT64 + 1, max_value=10**400),
        st.integers(min_value=-(10**400), max_value=MIN_INT64 - 1),
    )
)
def test_an_int_outside_64_bits_is_not_an_int(number: int) -> None:
    assert infer_data_type(str(number)) is T.STRING  # a long id, not a number Databricks reads
    assert infer_data_type(number) is T.STRING
    assert not value_fits(T.INT, str(number))
    assert not value_fits(T.INT, number)


@given(st.integers(min_value=MIN_INT64, max_value=MAX_INT64))
def test_int_text_round_trips(number: int) -> None:
    text = str(number)
    assert infer_data_type(text) is T.INT
    assert infer_data_type(number) is T.INT
    assert serialise_value(T.INT, text) == text
    assert int(serialise_value(T.INT, number)) == number


@given(_finite_floats)
def test_float_repr_round_trips(number: float) -> None:
    text = repr(number)
    assert infer_data_type(text) is T.FLOAT
    assert infer_data_type(number) is T.FLOAT
    assert serialise_value(T.FLOAT, text) == text
    back = float(serialise_value(T.FLOAT, number))
    assert back == number
    assert math.copysign(1.0, back) == math.copysign(1.0, number)


_scalars = st.one_of(st.text(), st.booleans(), st.integers(), st.floats())


@given(st.integers(min_value=2**63) | st.integers(max_value=-(2**63) - 1))
def test_integers_beyond_64_bits_are_strings_not_ints(number: int) -> None:
    assert infer_data_type(number) is T.STRING
    assert infer_data_type(str(number)) is T.STRING
    assert not value_fits(T.INT, number)
    assert not value_fits(T.INT, str(number))


@given(_scalars)
def test_inferred_type_always_serialises_and_is_stable(value: object) -> None:
    data_type = infer_data_type(value)
    text = serialise_value(data_type, value)
    assert serialise_value(data_type, text) == text
    assert infer_data_type(text) is data_type
    if isinstance(value, bool):
        assert text == ("true" if value else "false")
    elif isinstance(value, int):
        assert int(text) == value


@given(st.text())
def test_inference_never_changes_the_text_except_bool_case(text: str) -> None:
    data_type = infer_data_type(text)
    sent = serialise_value(data_type, text)
    if data_type is T.BOOL:
        assert sent == text.lower()
    else:
        assert sent == text


@given(st.sampled_from(list(DataType)), st.one_of(st.text(), _scalars))
def test_serialise_is_idempotent(data_type: DataType, value: object) -> None:
    try:
        text = serialise_value(data_type, value)
    except ParameterValueError:
        return
    assert serialise_value(data_type, text) == text


@given(st.text())
def test_numbers_accept_only_ascii_decimal_literals(text: str) -> None:
    if value_fits(T.INT, text):
        stripped = text.strip()
        assert stripped.isascii()
        assert stripped.lstrip("+-").isdigit()
    if value_fits(T.FLOAT, text):
        stripped = text.strip()
        assert stripped.isascii()
        assert not any(c in stripped.lower() for c in "_xnaip")  # no hex, nan, inf, underscores
        assert math.isfinite(float(serialise_value(T.FLOAT, text)))


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), st.lists, max_leaves=8))
def test_json_array_accepts_any_json_array(value: object) -> None:
    text = json.dumps([value])
    assert serialise_value(T.JSON_ARRAY, text) == text
