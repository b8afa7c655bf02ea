"""Databricks error answers: parse every body shape (reference §7), map them to polysync.errors."""

from __future__ import annotations

import html
import http
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from polysync.domain.limits import replace_unencodable
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
from polysync.secrets import TOKEN_SHAPES

MAX_MESSAGE_CHARS = 2000
DEFAULT_RETRY_AFTER_S = 1.0

# sdk-py errors/platform.py: these codes pick the class whatever the HTTP status (reference §7).
RATE_LIMIT_CODES = frozenset({"REQUEST_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED"})
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"})
CONFLICT_CODES = frozenset(
    {"ABORTED", "ALREADY_EXISTS", "RESOURCE_ALREADY_EXISTS", "RESOURCE_CONFLICT"}
)
AUTH_CODES = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED"})
UNAVAILABLE_CODES = frozenset({"TEMPORARILY_UNAVAILABLE"})
# An unknown path or an API version the workspace does not serve ("Bad Target:
# /api/2.2/jobs/run-now", sdk-py issue #922). Not "not found": a caller must never read it as
# "the job was deleted" (D4).
ENDPOINT_NOT_FOUND_CODE = "ENDPOINT_NOT_FOUND"

STATUS_CLASSES: dict[int, type[DatabricksError]] = {
    400: DatabricksBadRequestError,
    401: DatabricksAuthError,
    403: DatabricksAuthError,
    404: DatabricksNotFoundError,
    409: DatabricksConflictError,
    429: DatabricksRateLimitError,
    503: DatabricksUnavailableError,
}

# Jobs and Clusters answer a missing job or run with 400 INVALID_PARAMETER_VALUE, for legacy reasons
# (reference §7 "Not-found"; sdk-py errors/overrides.py uses the same two message patterns).
_MISSING_RESOURCE = re.compile(r"\b(Job|Run) .* does not exist|\bRun: .* in job: .* doesn't exist")
# Expired tokens came back as 403, then 400 ExpiredJwtException, now 401 "Token is expired"; the
# backend also refuses tokens 30 s before expiry: "Token is expiring within 30 seconds" (§7).
_EXPIRED = re.compile(r"expir(ed|ing)", re.IGNORECASE)
_TOKEN_WORD = re.compile(r"token|jwt", re.IGNORECASE)
_CODE_AND_MESSAGE = re.compile(r"([A-Z][A-Z0-9_]*[A-Z0-9]): (.*)", re.DOTALL)
_HTML_MARKERS = re.compile(r"<(!doctype|html|head|body|title|pre)\b", re.IGNORECASE)
_HTML_PRE = re.compile(r"<pre[^>]*>(.*?)</pre>", re.IGNORECASE | re.DOTALL)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]*>")
_WHITESPACE = re.compile(r"\s+")
# Credentials a body might echo: bearer headers, PATs (dapi...), OAuth secrets (dose...), JWTs,
# Polysync API keys.
_CREDENTIALS = re.compile(
    r"(?i:bearer)\s+(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{8,}|" + TOKEN_SHAPES
)
REDACTED = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """What an error body says: Databricks' error code (when it sent one) and its message."""

    error_code: str | None
    message: str
    retry_delay_s: float | None = None  # from a google.rpc.RetryInfo detail


def redact(text: str, *secrets: str) -> str:
    """`text` with credentials replaced: the given secrets and anything shaped like a token."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _CREDENTIALS.sub(REDACTED, text)


def reason_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def parse_error_body(status: int, body: bytes, *, reason: str | None = None) -> ErrorBody:
    """Read any error body the reference lists; never raises.

    `reason` is the `X-Databricks-Reason-Phrase` header, used when the body has no message.
    """
    fallback = (reason or "").strip() or reason_phrase(status)
    text = body.decode("utf-8-sig", errors="replace").strip()
    if not text:
        return ErrorBody(None, fallback)
    parsed = _parse_json(text, fallback) if text[0] == "{" else None
    if parsed is None and _HTML_MARKERS.search(text):
        parsed = ErrorBody(None, _html_message(text) or fallback)
    if parsed is None:
        match = _CODE_AND_MESSAGE.fullmatch(text)
        if match:
            parsed = ErrorBody(match[1], match[2].strip() or fallback)
        else:
            parsed = ErrorBody(None, text)
    return ErrorBody(parsed.error_code, _clip(redact(parsed.message)), parsed.retry_delay_s)


def _parse_json(text: str, fallback: str) -> ErrorBody | None:
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict):
        return None
    code = _error_code(payload.get("error_code"))
    message = payload.get("message")
    legacy = payload.get("error")
    if isinstance(legacy, str) and legacy.strip():
        description = payload.get("error_description")
        if isinstance(description, str) and description.strip():
            # OAuth token endpoints: {"error": "invalid_client", "error_description": "..."}.
            code, message = code or legacy.strip(), description
        elif not isinstance(message, str) or not message.strip():
            # API 1.2 style: {"error": "message"}.
            message = legacy
    elif isinstance(legacy, dict):
        # Azure style: {"error": {"code": "...", "message": "..."}}.
        code = code or _error_code(legacy.get("code"))
        message = message if isinstance(message, str) else legacy.get("message")
    if not isinstance(message, str) or not message.strip():
        envelope = code or "error_code" in payload or "error" in payload or not payload
        message = fallback if envelope else text
    return ErrorBody(code, message.strip(), _retry_delay(payload.get("details")))


def _error_code(value: Any) -> str | None:
    # A numeric error_code just repeats the HTTP status (reference §7, sdk-go issue #1061).
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _retry_delay(details: Any) -> float | None:
    if not isinstance(details, list):
        return None
    for detail in details:
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith("RetryInfo"):
            continue
        delay = detail.get("retry_delay", detail.get("retryDelay"))
        seconds: float | None = None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                seconds = None
        elif isinstance(delay, dict):
            whole, nanos = delay.get("seconds", 0), delay.get("nanos", 0)
            if isinstance(whole, int | float | str) and isinstance(nanos, int | float):
                try:
                    seconds = float(whole) + float(nanos) / 1e9
                except ValueError:
                    seconds = None
        if seconds is not None and math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def _html_message(text: str) -> str:
    # Jetty pages: "<title>Error 403 Invalid access token.</title>" and the reason in <pre> (sdk-py
    # _HtmlErrorDeserializer reads <pre> first, then <title>).
    for pattern in (_HTML_PRE, _HTML_TITLE):
        match = pattern.search(text)
        if match:
            inner = _WHITESPACE.sub(" ", html.unescape(_HTML_TAG.sub(" ", match[1]))).strip()
            if inner:
                return inner
    return ""


def _clip(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[:MAX_MESSAGE_CHARS] + f"... ({len(message) - MAX_MESSAGE_CHARS} more characters)"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: Databricks sends integer seconds (reference §7)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP-date, which Databricks does not send: the caller's default applies
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def is_token_expired(status: int, message: str) -> bool:
    if status == 400:
        return "ExpiredJwtException" in message
    return status in (401, 403) and bool(_EXPIRED.search(message) and _TOKEN_WORD.search(message))


def error_class_for(status: int, error_code: str | None, message: str) -> type[DatabricksError]:
    """The polysync.errors class for an answer: error code first, then HTTP status (as sdk-py)."""
    if is_token_expired(status, message):
        return TokenExpiredError
    if error_code in RATE_LIMIT_CODES:
        return DatabricksRateLimitError
    if error_code in UNAVAILABLE_CODES:
        return DatabricksUnavailableError
    if error_code == ENDPOINT_NOT_FOUND_CODE or message.startswith("Bad Target:"):
        return DatabricksBadRequestError
    if error_code in NOT_FOUND_CODES or (
        status in (400, 404)
        and error_code in (None, "INVALID_PARAMETER_VALUE")
        and _MISSING_RESOURCE.search(message)
    ):
        return DatabricksNotFoundError
    if error_code in CONFLICT_CODES:
        return DatabricksConflictError
    if error_code in AUTH_CODES:
        return DatabricksAuthError
    if status in STATUS_CLASSES:
        return STATUS_CLASSES[status]
    if status >= 500:
        return DatabricksServerError
    if 400 <= status < 500:
        return DatabricksBadRequestError
    return DatabricksError


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    path: str,
    secrets: tuple[str, ...] = (),
    default_retry_after_s: float = DEFAULT_RETRY_AFTER_S,
) -> DatabricksError:
    """The typed error for a non-2xx answer; `secrets` (the token sent) are kept out of it."""
    lower = {key.lower(): value for key, value in headers.items()}
    parsed = parse_error_body(status, body, reason=lower.get("x-databricks-reason-phrase"))
    cls = error_class_for(status, parsed.error_code, parsed.message)
    retry_after_s: float | None = None
    if status in (429, 503) or issubclass(
        cls, (DatabricksRateLimitError, DatabricksUnavailableError)
    ):
        retry_after_s = parse_retry_after(lower.get("retry-after"))
        if retry_after_s is None:
            retry_after_s = (
                parsed.retry_delay_s if parsed.retry_delay_s is not None else default_retry_after_s
            )
    message = replace_unencodable(redact(parsed.message, *secrets))
    if cls is DatabricksBadRequestError and status == 404:
        message += " (this workspace does not serve that API path: check the api_versions setting)"
    return cls(
        message,
        http_status=status,
        error_code=None if parsed.error_code is None else replace_unencodable(parsed.error_code),
        method=method,
        path=path,
        retry_after_s=retry_after_s,
    )
