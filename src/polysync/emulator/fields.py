"""Readers of Jobs API request-body fields that answer bad values with the API's own messages."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from polysync.emulator.errors import INVALID_PARAMETER_VALUE, MALFORMED_REQUEST, ApiError
from polysync.emulator.records import LEGACY_PARAM_FIELDS

MAX_IDEMPOTENCY_TOKEN = 64


def json_kind(value: object) -> str:
    """The JSON type name the API's parse errors use: BOOLEAN, NUMBER, STRING, ARRAY, OBJECT, NULL."""
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int | float):
        return "NUMBER"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, list):
        return "ARRAY"
    if isinstance(value, dict):
        return "OBJECT"
    return "NULL"


def malformed(field: str, expected: str, value: object) -> ApiError:
    """400 `MALFORMED_REQUEST` for a field of the wrong JSON type."""
    # Shape of the real message (reference §3, "Bad JSON types").
    return ApiError(
        400,
        MALFORMED_REQUEST,
        f"Could not parse request object: Expected {expected} for field '{field}', found {json_kind(value)}",
    )


def int_field(body: Mapping[str, Any], name: str, *, required: bool = False) -> int | None:
    """An int64 field (a JSON number or a decimal string); None if absent and not `required`.

    Raises ApiError 400 `INVALID_PARAMETER_VALUE` when a required field is missing and
    `MALFORMED_REQUEST` for any other type.
    """
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, INVALID_PARAMETER_VALUE, f"Missing required field: {name}")
        return None
    if isinstance(value, bool):
        raise malformed(name, "integer", value)
    if isinstance(value, int):
        return value
    # Protobuf JSON accepts int64 as a decimal string too.
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,19}", value):
        return int(value)
    raise malformed(name, "integer", value)


def str_list_field(body: Mapping[str, Any], name: str) -> list[str] | None:
    """An array of strings (task keys, ...); None if absent. Raises ApiError 400
    `MALFORMED_REQUEST` for anything else."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise malformed(name, "array of strings", value)
    return value


def as_param_string(value: object) -> str:
    """A job parameter value as the string the API stores (booleans as `true`/`false`).

    Raises ApiError 400 `MALFORMED_REQUEST` for objects, arrays and null.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ApiError(
        400,
        MALFORMED_REQUEST,
        f"Could not parse request object: Expected a string parameter value, found {type(value).__name__.upper()}",
    )


def idempotency_token(body: Mapping[str, Any]) -> str | None:
    """`idempotency_token` of run-now and submit: a string of at most 64 characters (reference §3)."""
    token = body.get("idempotency_token")
    if token is None:
        return None
    if not isinstance(token, str):
        raise malformed("idempotency_token", "string", token)
    if len(token) > MAX_IDEMPOTENCY_TOKEN:
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            f"Idempotency token must be at most {MAX_IDEMPOTENCY_TOKEN} characters long.",
        )
    return token


def legacy_params(body: Mapping[str, Any], job_params: object) -> dict[str, Any]:
    """The legacy task parameters (`notebook_params`, ...) of a body; refused beside `job_parameters`."""
    legacy = {f: body[f] for f in LEGACY_PARAM_FIELDS if body.get(f) is not None}
    if job_params and legacy:
        # The API refuses mixing job parameters with legacy task parameters (reference §3).
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            "Job parameters cannot be used together with task parameters "
            f"({', '.join(sorted(legacy))}). Pass only job_parameters.",
        )
    return legacy
