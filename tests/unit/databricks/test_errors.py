"""Error bodies in every shape of reference §7, and their mapping onto polysync.errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polysync.databricks.errors import (
    REDACTED,
    ErrorBody,
    error_class_for,
    error_from_response,
    is_token_expired,
    parse_error_body,
    parse_retry_after,
    redact,
)
from polysync.errors import (
    DatabricksAuthError,
    DatabricksBadRequestError,
    DatabricksConflictError,
    DatabricksError,
    DatabricksNotFoundError,
    DatabricksRateLimitError,
    DatabricksServerError,
    DatabricksUnavailableError,
    TokenExpiredError,
)

JETTY_403 = b"""<html>
<head>
<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>
<title>Error 403 Invalid access token.</title>
</head>
<body><h2>HTTP ERROR 403</h2>
<p>Problem accessing /api/2.0/dbfs/put. Reason:
<pre>    Invalid access token.</pre></p>
</body>
</html>
"""


@pytest.mark.parametrize(
    ("status", "body", "reason", "expected"),
    [
        pytest.param(
            400,
            b'{"error_code": "INVALID_PARAMETER_VALUE", "message": "Job 998654886170278 does not exist."}',
            None,
            ErrorBody("INVALID_PARAMETER_VALUE", "Job 998654886170278 does not exist."),
            id="standard envelope",
        ),
        pytest.param(
            429,
            json.dumps(
                {
                    "error_code": "REQUEST_LIMIT_EXCEEDED",
                    "message": "Too many requests",
                    "details": [
                        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "x"},
                        {
                            "@type": "type.googleapis.com/google.rpc.RetryInfo",
                            "retry_delay": "42.000000001s",
                        },
                    ],
                }
            ).encode(),
            None,
            ErrorBody("REQUEST_LIMIT_EXCEEDED", "Too many requests", 42.000000001),
            id="details with RetryInfo",
        ),
        pytest.param(
            429,
            b'{"error_code": "RESOURCE_EXHAUSTED", "message": "slow down", "details": '
            b'[{"@type": "type.googleapis.com/google.rpc.RetryInfo", '
            b'"retry_delay": {"seconds": 3, "nanos": 500000000}}]}',
            None,
            ErrorBody("RESOURCE_EXHAUSTED", "slow down", 3.5),
            id="RetryInfo as seconds and nanos",
        ),
        pytest.param(
            400,
            b'{"error": "Bad request in 1.2 style"}',
            None,
            ErrorBody(None, "Bad request in 1.2 style"),
            id="legacy error",
        ),
        pytest.param(
            403,
            b'{"error_code": 403, "message": "JWT has expired"}',
            "JWT has expired",
            ErrorBody(None, "JWT has expired"),
            id="numeric error_code",
        ),
        pytest.param(
            403,
            b'{"error_code": 403}',
            "JWT has expired",
            ErrorBody(None, "JWT has expired"),
            id="numeric error_code, message in reason header",
        ),
        pytest.param(
            400,
            b"INVALID_PARAMETER_VALUE: The supplied offset 1001 has exceeded the value of 1000 "
            b"allowed for this parameter.Please use the page_token parameter to paginate",
            None,
            ErrorBody(
                "INVALID_PARAMETER_VALUE",
                "The supplied offset 1001 has exceeded the value of 1000 allowed for this "
                "parameter.Please use the page_token parameter to paginate",
            ),
            id="plain text CODE: message",
        ),
        pytest.param(
            403, JETTY_403, None, ErrorBody(None, "Invalid access token."), id="jetty pre"
        ),
        pytest.param(
            403,
            b"<html><head><title>Error 403 Token is expiring within 30 seconds. (token expired)"
            b"</title></head><body></body></html>",
            None,
            ErrorBody(None, "Error 403 Token is expiring within 30 seconds. (token expired)"),
            id="html title only",
        ),
        pytest.param(503, b"", None, ErrorBody(None, "Service Unavailable"), id="empty body"),
        pytest.param(
            503, b"  \n", "Backend busy", ErrorBody(None, "Backend busy"), id="empty, reason header"
        ),
        pytest.param(599, b"", None, ErrorBody(None, "HTTP 599"), id="empty, unknown status"),
        pytest.param(
            401,
            b'{"error": "invalid_client", "error_description": "Client authentication failed"}',
            None,
            ErrorBody("invalid_client", "Client authentication failed"),
            id="oauth error",
        ),
        pytest.param(
            400,
            b'{"error": {"code": "InvalidThing", "message": "azure said no"}}',
            None,
            ErrorBody("InvalidThing", "azure said no"),
            id="azure nested error",
        ),
        pytest.param(502, b"[1, 2, 3]", None, ErrorBody(None, "[1, 2, 3]"), id="json array"),
        pytest.param(
            502,
            b'{"unexpected": true}',
            None,
            ErrorBody(None, '{"unexpected": true}'),
            id="json object without a message",
        ),
        pytest.param(
            500,
            b"upstream connect error",
            None,
            ErrorBody(None, "upstream connect error"),
            id="plain text",
        ),
        pytest.param(
            500,
            b'{"message": "truncated',
            None,
            ErrorBody(None, '{"message": "truncated'),
            id="broken json",
        ),
    ],
)
def test_every_body_shape_is_read(
    status: int, body: bytes, reason: str | None, expected: ErrorBody
) -> None:
    assert parse_error_body(status, body, reason=reason) == expected


def test_a_byte_order_mark_does_not_hide_the_json() -> None:
    parsed = parse_error_body(
        400, b'\xef\xbb\xbf{"error_code": "MALFORMED_REQUEST", "message": "m"}'
    )
    assert parsed == ErrorBody("MALFORMED_REQUEST", "m")


def test_a_huge_body_is_clipped() -> None:
    parsed = parse_error_body(500, b"x" * 10_000)
    assert len(parsed.message) < 2100
    assert parsed.message.endswith("(8000 more characters)")


def test_undecodable_bytes_are_replaced_not_fatal() -> None:
    assert parse_error_body(500, b"\xff\xfe oops").message == "\ufffd\ufffd oops"


@pytest.mark.parametrize(
    ("status", "error_code", "message", "expected"),
    [
        (400, "INVALID_PARAMETER_VALUE", "Job 5 does not exist.", DatabricksNotFoundError),
        (400, "INVALID_PARAMETER_VALUE", "Run 77 does not exist.", DatabricksNotFoundError),
        (400, "INVALID_PARAMETER_VALUE", "Run: 7 in job: 5 doesn't exist", DatabricksNotFoundError),
        (404, None, "Job 5 does not exist.", DatabricksNotFoundError),
        (404, "RESOURCE_DOES_NOT_EXIST", "Fault 3 does not exist.", DatabricksNotFoundError),
        (404, None, "Not Found", DatabricksNotFoundError),
        (404, "ENDPOINT_NOT_FOUND", "Bad Target: /api/2.2/jobs/run-now", DatabricksBadRequestError),
        (404, None, "Bad Target: /api/2.2/jobs/run-now", DatabricksBadRequestError),
        (
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid limit 27 - it has to be no more than 26.",
            DatabricksBadRequestError,
        ),
        (400, "MALFORMED_REQUEST", "Could not parse request object", DatabricksBadRequestError),
        (400, "QUOTA_EXCEEDED", "The quota for the number of jobs", DatabricksBadRequestError),
        (400, "INVALID_STATE", "There were already 1000 jobs created", DatabricksBadRequestError),
        (400, "REQUEST_LIMIT_EXCEEDED", "RPC token bucket limit", DatabricksRateLimitError),
        (429, "REQUEST_LIMIT_EXCEEDED", "Too many requests", DatabricksRateLimitError),
        (429, "RESOURCE_EXHAUSTED", "Too many requests.", DatabricksRateLimitError),
        (429, None, "Too Many Requests", DatabricksRateLimitError),
        (503, "TEMPORARILY_UNAVAILABLE", "try later", DatabricksUnavailableError),
        (503, None, "Service Unavailable", DatabricksUnavailableError),
        (500, None, "Internal Server Error", DatabricksServerError),
        (500, "INTERNAL_ERROR", "boom", DatabricksServerError),
        (502, None, "Bad Gateway", DatabricksServerError),
        (504, None, "Gateway Timeout", DatabricksServerError),
        (401, "UNAUTHENTICATED", "Token is expired", TokenExpiredError),
        (403, None, "Token is expiring within 30 seconds. (token expired)", TokenExpiredError),
        (403, None, "JWT has expired", TokenExpiredError),
        (400, None, "io.jsonwebtoken.ExpiredJwtException: JWT expired at 2024", TokenExpiredError),
        (403, None, "Invalid access token.", DatabricksAuthError),
        (401, "UNAUTHENTICATED", "No credentials were sent", DatabricksAuthError),
        (
            403,
            "PERMISSION_DENIED",
            "User x does not have View permissions on job 5",
            DatabricksAuthError,
        ),
        (409, "ALREADY_EXISTS", "exists", DatabricksConflictError),
        (400, "RESOURCE_ALREADY_EXISTS", "exists", DatabricksConflictError),
        (413, None, "Request Entity Too Large", DatabricksBadRequestError),
        (302, None, "Found", DatabricksError),
    ],
)
def test_mapping_table(
    status: int, error_code: str | None, message: str, expected: type[DatabricksError]
) -> None:
    assert error_class_for(status, error_code, message) is expected


def test_an_expired_token_is_not_confused_with_other_expiries() -> None:
    assert not is_token_expired(403, "The cluster policy expired")
    assert not is_token_expired(400, "Token is expired")  # a 400 only with ExpiredJwtException
    assert is_token_expired(401, "Your JWT token expired")


def test_message_keeps_databricks_code_and_text() -> None:
    error = error_from_response(
        400,
        {"Content-Type": "application/json"},
        b'{"error_code": "INVALID_PARAMETER_VALUE", "message": "Job 42 does not exist."}',
        method="GET",
        path="/api/2.1/jobs/get",
    )
    assert isinstance(error, DatabricksNotFoundError)
    assert error.error_code == "INVALID_PARAMETER_VALUE"
    assert error.http_status == 400
    assert str(error) == (
        "HTTP 400 INVALID_PARAMETER_VALUE: Job 42 does not exist. (GET /api/2.1/jobs/get)"
    )
    assert error.retry_after_s is None


@pytest.mark.parametrize(
    ("headers", "body", "expected_s"),
    [
        ({"Retry-After": "7"}, b"", 7.0),
        ({"retry-after": "0"}, b"", 0.0),
        ({}, b"", 1.0),  # the SDK default when missing (reference §7)
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"", 1.0),
        ({"Retry-After": "-3"}, b"", 1.0),
        (
            {},
            b'{"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "m", "details": '
            b'[{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retry_delay": "4s"}]}',
            4.0,
        ),
        (
            {"Retry-After": "2"},
            b'{"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "m", "details": '
            b'[{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retry_delay": "4s"}]}',
            2.0,
        ),
    ],
)
def test_retry_after_on_429(headers: dict[str, str], body: bytes, expected_s: float) -> None:
    error = error_from_response(429, headers, body, method="GET", path="/api/2.1/jobs/runs/get")
    assert isinstance(error, DatabricksRateLimitError)
    assert error.retry_after_s == expected_s


def test_retry_after_on_503_and_on_400_rate_limit() -> None:
    unavailable = error_from_response(503, {"Retry-After": "3"}, b"", method="GET", path="/x")
    assert isinstance(unavailable, DatabricksUnavailableError)
    assert unavailable.retry_after_s == 3.0
    limited = error_from_response(
        400,
        {},
        b'{"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "m"}',
        method="GET",
        path="/x",
    )
    assert isinstance(limited, DatabricksRateLimitError)
    assert limited.retry_after_s == 1.0
    server = error_from_response(500, {"Retry-After": "3"}, b"", method="GET", path="/x")
    assert server.retry_after_s is None


def test_retry_after_default_is_configurable() -> None:
    error = error_from_response(429, {}, b"", method="GET", path="/x", default_retry_after_s=2.5)
    assert error.retry_after_s == 2.5


def test_unknown_endpoint_message_points_at_the_version_setting() -> None:
    error = error_from_response(
        404,
        {},
        b'{"error_code": "ENDPOINT_NOT_FOUND", "message": "Bad Target: /api/2.2/jobs/run-now"}',
        method="POST",
        path="/api/2.2/jobs/run-now",
    )
    assert isinstance(error, DatabricksBadRequestError)
    assert "api_versions" in error.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1.0),
        (" 30 ", 30.0),
        ("1.5", 1.5),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("-1", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_tokens_never_reach_a_message() -> None:
    token = "dapi0123456789abcdef0123456789abcdef-2"
    body = json.dumps(
        {"error_code": "PERMISSION_DENIED", "message": f"token {token} and Bearer {token} refused"}
    ).encode()
    error = error_from_response(403, {}, body, method="GET", path="/x", secrets=(token,))
    assert token not in str(error)
    assert "dapi" not in str(error)
    assert REDACTED in str(error)


def test_redact_shapes() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    assert redact(f"Authorization: Bearer {jwt}") == f"Authorization: {REDACTED}"
    assert redact(f"saw {jwt} here") == f"saw {REDACTED} here"
    assert redact("dose0123456789abcdef0123 leaked") == f"{REDACTED} leaked"
    assert redact("opaque-secret-value in text", "opaque-secret-value") == f"{REDACTED} in text"
    # Ordinary words survive.
    assert redact("Missing bearer token in header") == "Missing bearer token in header"


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
error_like_objects = st.dictionaries(
    st.sampled_from(
        ["error_code", "message", "error", "error_description", "details", "@type", "retry_delay"]
    ),
    json_values | st.lists(st.dictionaries(st.sampled_from(["@type", "retry_delay"]), json_values)),
    max_size=5,
)


@given(
    status=st.integers(min_value=100, max_value=599),
    body=st.binary(max_size=3000)
    | error_like_objects.map(lambda obj: json.dumps(obj).encode())
    | st.text(max_size=300).map(str.encode),
    reason=st.none() | st.text(max_size=40),
)
def test_parsing_never_raises(status: int, body: bytes, reason: str | None) -> None:
    parsed = parse_error_body(status, body, reason=reason)
    assert isinstance(parsed.message, str)
    assert parsed.message
    assert parsed.error_code is None or parsed.error_code.strip() == parsed.error_code
    assert parsed.retry_delay_s is None or parsed.retry_delay_s >= 0


@given(
    status=st.integers(min_value=100, max_value=599),
    headers=st.dictionaries(
        st.sampled_from(["Retry-After", "X-Databricks-Reason-Phrase", "Content-Type", "x"]),
        st.text(max_size=30),
    ),
    body=st.binary(max_size=500) | error_like_objects.map(lambda obj: json.dumps(obj).encode()),
)
def test_mapping_never_raises(status: int, headers: dict[str, str], body: bytes) -> None:
    error: Any = error_from_response(status, headers, body, method="GET", path="/api/2.1/jobs/get")
    assert isinstance(error, DatabricksError)
    assert error.http_status == status
    assert str(error)
    if isinstance(error, DatabricksRateLimitError | DatabricksUnavailableError):
        assert error.retry_after_s is not None
        assert error.retry_after_s >= 0
