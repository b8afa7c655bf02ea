"""Errors the emulator answers with, shaped exactly as the real Jobs API shapes them (reference §7)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.responses import Response

INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
MALFORMED_REQUEST = "MALFORMED_REQUEST"
INVALID_STATE = "INVALID_STATE"
QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
REQUEST_LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"
TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"
PERMISSION_DENIED = "PERMISSION_DENIED"
ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"


class ApiError(Exception):
    """An error answer of the Jobs API: HTTP status, `error_code` and `message`."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.headers = headers or {}

    def to_response(self) -> Response:
        return error_response(self.status, self.error_code, self.message, self.headers)


def error_response(
    status: int, error_code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The standard envelope `{"error_code": ..., "message": ...}`."""
    body = json.dumps({"error_code": error_code, "message": message})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def job_not_found(job_id: int) -> ApiError:
    # Legacy quirk kept by Databricks on purpose: 400, not 404 (reference §7 "Not-found").
    return ApiError(400, INVALID_PARAMETER_VALUE, f"Job {job_id} does not exist.")


def run_not_found(run_id: int) -> ApiError:
    return ApiError(400, INVALID_PARAMETER_VALUE, f"Run {run_id} does not exist.")


def tasks_not_found(task_keys: Sequence[str], where: str) -> ApiError:
    """400 naming the task keys that `where` ("job N", "run N") does not have."""
    return ApiError(
        400, INVALID_PARAMETER_VALUE, f"Task(s) {', '.join(task_keys)} not found in {where}."
    )
