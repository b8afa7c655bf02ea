"""RFC 7807 problem details, and the one table that maps Polysync errors to HTTP statuses."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse as _StarletteJSON
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from polysync.domain.limits import replace_unencodable
from polysync.errors import (
    AccessDeniedError,
    ConfigError,
    ConflictError,
    DatabricksAuthError,
    DatabricksError,
    DatabricksRateLimitError,
    DatabricksTransportError,
    DatabricksUnavailableError,
    NotFoundError,
    ParameterTextError,
    PolysyncError,
    StoreUnavailableError,
    TaskDefinitionError,
    TaskRunTransitionError,
    UsageError,
)

log = logging.getLogger(__name__)


class JSONResponse(_StarletteJSON):
    """Every JSON answer of the API: text no UTF-8 can carry (a lone surrogate, in a row written
    before the store cleaned it) becomes U+FFFD instead of failing the whole answer with 500."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return replace_unencodable(text).encode("utf-8")  # NUL is already escaped as \u0000


PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://polysync.dev/problems/"

# Most specific first: the first class an error is an instance of decides its status.
STATUS_BY_ERROR: tuple[tuple[type[PolysyncError], int, str], ...] = (
    (NotFoundError, 404, "not-found"),
    (AccessDeniedError, 403, "forbidden"),
    (ConflictError, 409, "conflict"),
    # A Task that cannot be saved names its field (`errors`); a TaskRun change its state forbids.
    (TaskDefinitionError, 422, "invalid-task"),
    (TaskRunTransitionError, 409, "invalid-transition"),
    # Unsendable text (lone surrogates, control characters) is content the API cannot process.
    (ParameterTextError, 422, "invalid-text"),
    (UsageError, 400, "bad-request"),
    (ConfigError, 400, "configuration"),
    (DatabricksAuthError, 502, "databricks-auth"),
    (DatabricksRateLimitError, 503, "databricks-rate-limited"),
    (DatabricksUnavailableError, 503, "databricks-unavailable"),
    (DatabricksTransportError, 502, "databricks-unreachable"),
    (DatabricksError, 502, "databricks-error"),
    (StoreUnavailableError, 503, "database-unavailable"),
    (PolysyncError, 500, "internal"),
)

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class Problem(BaseModel):
    """An RFC 7807 problem: `errors` lists each invalid field of a 422."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


class ApiProblem(Exception):
    """Raised by routes for statuses no PolysyncError carries (401, 403, 409)."""

    def __init__(
        self, status: int, slug: str, detail: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = headers


def problem_response(
    status: int,
    slug: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        type=_TYPE_BASE + slug,
        title=title_of(status),
        status=status,
        detail=detail,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def title_of(status: int) -> str:
    return _TITLES.get(status, "Error")


def status_of(exc: PolysyncError) -> tuple[int, str]:
    for cls, status, slug in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status, slug
    return 500, "internal"  # pragma: no cover - PolysyncError is in the table


def error_response(exc: PolysyncError) -> JSONResponse:
    status, slug = status_of(exc)
    headers = None
    if isinstance(exc, DatabricksError) and exc.retry_after_s and status == 503:
        headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))}
    if status >= 500:
        log.warning("%s answered %d: %s", type(exc).__name__, status, exc)
    errors = None
    if isinstance(exc, TaskDefinitionError):
        errors = [{"field": exc.field or "task", "message": exc.message, "type": slug}]
    # str(): a DatabricksError adds the HTTP status, error code and call; messages hold no secrets.
    return problem_response(status, slug, str(exc), errors=errors, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Every error leaves the API as application/problem+json."""

    async def on_polysync(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PolysyncError)
        return error_response(exc)

    async def on_api_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiProblem)
        return problem_response(exc.status, exc.slug, exc.detail, headers=exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [_field_error(e) for e in exc.errors()]
        where = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem_response(
            422, "validation", f"The request is not valid: {where}", errors=errors
        )

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(
            exc.status_code, f"http-{exc.status_code}", str(exc.detail), headers=headers
        )

    app.add_exception_handler(PolysyncError, on_polysync)
    app.add_exception_handler(ApiProblem, on_api_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def _field_error(error: Any) -> dict[str, Any]:
    # The input itself is left out: it may be a secret pasted into the wrong field.
    # A dict key is part of the location: cut short, as a huge one must not be echoed whole.
    location = [_clipped(str(part)) for part in error.get("loc", ())]
    kind = str(error.get("type", "invalid"))
    message = _HINTS.get(kind) or str(error.get("msg", "invalid"))
    return {"field": ".".join(location) or "request", "message": message, "type": kind}


# Pydantic's words, with what to do about them (a PATCH with a misspelled field is the usual case).
_HINTS = {
    "extra_forbidden": "not a field of this request: check its spelling against /docs "
    "(a PATCH sends only the fields it changes, named as GET shows them)",
    "missing": "required: add it",
}


def _clipped(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
