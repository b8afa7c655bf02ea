"""Body parsing shared by the control-plane routes of the emulator's edges (faults, rate limits)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request

from polysync.emulator.errors import INVALID_PARAMETER_VALUE, MALFORMED_REQUEST, ApiError

T = TypeVar("T")


async def read_body_as(request: Request, adapter: TypeAdapter[T]) -> T:
    """The JSON body validated by `adapter`, or an `ApiError` 400 saying what is wrong with it."""
    raw = await request.body()
    try:
        payload: Any = json.loads(raw)
    except ValueError as exc:
        raise ApiError(
            400, MALFORMED_REQUEST, f"The request body is not valid JSON: {exc}"
        ) from exc
    try:
        return adapter.validate_python(payload)
    except ValidationError as exc:
        raise ApiError(400, INVALID_PARAMETER_VALUE, validation_message(exc)) from exc


def validation_message(exc: ValidationError) -> str:
    """One line per problem, `field.path: what is wrong`, without echoing the input values."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)
