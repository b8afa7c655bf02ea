"""HTTP plumbing shared by the emulator's Databricks API routes: parameters, bodies, paging, answers.

Every GET endpoint takes its parameters from the query string **or** a JSON body: Airflow's
deferrable Databricks trigger sends `GET jobs/runs/get` with `{"run_id": ...}` as a JSON body
(apache-airflow-providers-databricks `hooks/databricks_base.py` `_a_do_api_call`: aiohttp
`session.get(url, json=...)`), and real workspaces answer it. A name present in both places takes
the query string's value.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from polysync.emulator.errors import (
    ENDPOINT_NOT_FOUND,
    INVALID_PARAMETER_VALUE,
    MALFORMED_REQUEST,
    ApiError,
    error_response,
)


class HasHost(Protocol):
    host: str | None


@dataclass(frozen=True, slots=True)
class Params:
    """Request parameters by name as strings: the query string over a GET's JSON body."""

    values: Mapping[str, str]
    lists: Mapping[str, list[str]]

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def get_list(self, name: str) -> list[str]:
        """Every value of a repeated parameter (`order_by=a&order_by=b`, or a JSON array)."""
        return list(self.lists.get(name, []))

    def get_int(self, name: str, *, required: bool = False) -> int | None:
        """An integer parameter; 400 `INVALID_PARAMETER_VALUE` if missing (when required) or bad."""
        raw = self.values.get(name)
        if raw is None or raw == "":
            if required:
                raise ApiError(400, INVALID_PARAMETER_VALUE, f"Missing required field: {name}")
            return None
        try:
            return int(raw)
        except ValueError as exc:
            raise ApiError(
                400,
                INVALID_PARAMETER_VALUE,
                f"Invalid value {raw!r} for parameter {name}: expected an integer.",
            ) from exc

    def required_int(self, name: str) -> int:
        value = self.get_int(name, required=True)
        assert value is not None
        return value

    def get_bool(self, name: str) -> bool:
        """`true`/`1` or `false`/`0` (any case); absent is false; anything else is a 400."""
        raw = self.values.get(name)
        if raw is None or raw == "":
            return False
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            f"Invalid value {raw!r} for parameter {name}: expected true or false.",
        )


def _as_param(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


async def request_params(request: Request) -> Params:
    """The query string, plus (for GET) the fields of a JSON-object body it does not already name."""
    values: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    if request.method == "GET":
        raw = await request.body()
        if raw.strip():
            body = parse_json_object(raw)
            for key, value in body.items():
                if value is None:
                    continue
                if isinstance(value, list):
                    lists[key] = [_as_param(v) for v in value]
                    values[key] = _as_param(value[0]) if value else ""
                else:
                    values[key] = _as_param(value)
                    lists[key] = [values[key]]
    for key in request.query_params:
        items = request.query_params.getlist(key)
        lists[key] = items
        values[key] = items[0]
    return Params(values, lists)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object; 400 `MALFORMED_REQUEST` otherwise (reference §3)."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, MALFORMED_REQUEST, f"Could not parse request object: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(
            400, MALFORMED_REQUEST, "Could not parse request object: Expected an object at the root"
        )
    return data


async def json_body(request: Request) -> dict[str, Any]:
    """The JSON-object body of a POST/PUT/PATCH; an empty body is `{}`."""
    raw = await request.body()
    if not raw.strip():
        return {}
    return parse_json_object(raw)


def json_response(body: dict[str, Any], workspace_id: int, status: int = 200) -> Response:
    # Real workspaces name themselves in this header (the `o=` of run page URLs).
    return Response(
        json.dumps(body, separators=(",", ":")),
        status,
        media_type="application/json",
        headers={"X-Databricks-Org-Id": str(workspace_id)},
    )


def not_found(request: Request) -> Response:
    """What a workspace answers for a path it does not serve (reference §7)."""
    return error_response(404, ENDPOINT_NOT_FOUND, f"Bad Target: {request.url.path}")


def host_of(request: Request) -> str:
    """The host of URLs the emulator hands out: the configured one, else the one asked."""
    emulator: HasHost = request.app.state.emulator
    return emulator.host or f"{request.url.scheme}://{request.url.netloc}"


def encode_page_token(offset: int) -> str:
    """An opaque page token for a list offset."""
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> int:
    """The offset inside a page token; 400 `INVALID_PARAMETER_VALUE` for anything else."""
    try:
        padded = token + "=" * (-len(token) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded.encode()))["o"]
        if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise ApiError(400, INVALID_PARAMETER_VALUE, f"Invalid page token: {token!r}")


def page_limit(
    params: Params,
    name: str,
    *,
    default: int,
    maximum: int,
    zero_means_max: bool = False,
) -> int:
    """A page size parameter within 1..maximum (0 = maximum where the API says so)."""
    limit = params.get_int(name)
    if limit is None:
        return default
    if limit == 0 and zero_means_max:
        return maximum
    if limit < 1:
        raise ApiError(
            400, INVALID_PARAMETER_VALUE, f"Invalid {name} {limit} - it has to be at least 1."
        )
    if limit > maximum:
        raise ApiError(
            400,
            INVALID_PARAMETER_VALUE,
            f"Invalid {name} {limit} - it has to be no more than {maximum}.",
        )
    return limit


def guarded(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Turn an `ApiError` raised by `handler` into its JSON answer."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.to_response()

    return endpoint
