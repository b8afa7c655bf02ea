"""The Pipelines API routes (`/api/2.0/pipelines...`): list, create, get, edit, delete, updates,
stop and the event log (sdk-py `service/pipelines.py` `PipelinesAPI`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from polysync.emulator.engine import Workspace
from polysync.emulator.errors import INVALID_PARAMETER_VALUE, ApiError
from polysync.emulator.pipelines import Pipeline, PipelineEvent, iso_time, update_info
from polysync.emulator.routing import (
    Params,
    decode_page_token,
    encode_page_token,
    json_body,
    page_limit,
)
from polysync.emulator.workspace_api import workspace_endpoint

MAX_PIPELINES_PAGE = 100  # list max_results: default 25, at most 100 (sdk-py `list_pipelines`)
MAX_EVENTS_PAGE = 250  # events max_results (UNCONFIRMED maximum)


def _page(
    items: list[Any], params: Params, *, default: int, maximum: int
) -> tuple[list[Any], dict[str, Any]]:
    size = page_limit(params, "max_results", default=default, maximum=maximum)
    token = params.get("page_token")
    offset = decode_page_token(token) if token else 0
    tokens: dict[str, Any] = {}
    if offset + size < len(items):
        tokens["next_page_token"] = encode_page_token(offset + size)
    if offset > 0:
        tokens["prev_page_token"] = encode_page_token(max(0, offset - size))
    return items[offset : offset + size], tokens


_NAME_LIKE = re.compile(r"^\s*name\s+LIKE\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)
_NOTEBOOK_IS = re.compile(r"^\s*notebook\s*=\s*'((?:[^']|'')*)'\s*$", re.IGNORECASE)


def _pipeline_filter(text: str | None) -> Callable[[Pipeline], bool]:
    """`name LIKE '%x%'` or `notebook='<path>'` (the filters sdk-py documents; composite
    filters are not supported, as on workspaces)."""
    if not text:
        return lambda _: True
    like = _NAME_LIKE.match(text)
    if like:
        pattern = like.group(1).replace("''", "'")
        regex = re.compile(
            "^" + ".*".join(re.escape(part).replace("_", ".") for part in pattern.split("%")) + "$",
            re.IGNORECASE | re.DOTALL,
        )
        return lambda p: regex.match(p.name) is not None
    notebook = _NOTEBOOK_IS.match(text)
    if notebook:
        path = notebook.group(1).replace("''", "'")
        return lambda p: any(
            isinstance(lib, dict) and lib.get("notebook", {}).get("path") == path
            for lib in p.spec.get("libraries") or []
        )
    raise ApiError(
        400,
        INVALID_PARAMETER_VALUE,
        f"Invalid filter {text[:200]!r}: use name LIKE '<pattern>' or notebook='<path>'.",
    )


async def list_pipelines(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    """`GET /api/2.0/pipelines` -> `{"statuses": [PipelineStateInfo], "next_page_token"}`,
    ordered by id (the documented default `id asc`)."""
    keep = _pipeline_filter(params.get("filter"))
    ordered = sorted(
        (p for p in ws.pipelines.by_id.values() if keep(p)), key=lambda p: p.pipeline_id
    )
    if any(o.strip().lower() == "id desc" for o in params.get_list("order_by")):
        ordered.reverse()
    page, tokens = _page(ordered, params, default=25, maximum=MAX_PIPELINES_PAGE)
    body: dict[str, Any] = {"statuses": [p.state_info() for p in page]} if page else {}
    body.update(tokens)
    return body


async def create_pipeline(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    """`POST /api/2.0/pipelines` (a PipelineSpec) -> `{"pipeline_id"}`."""
    pipeline = ws.pipelines.create(await json_body(request))
    return {"pipeline_id": pipeline.pipeline_id}


async def get_pipeline(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    return ws.pipelines.get(request.path_params["pipeline_id"]).get_response()


async def edit_pipeline(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    ws.pipelines.edit(request.path_params["pipeline_id"], await json_body(request))
    return {}


async def delete_pipeline(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    ws.pipelines.delete(request.path_params["pipeline_id"])
    return {}


async def start_update(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    """`POST .../updates {"full_refresh"}` -> `{"update_id"}`; 409 while an update is active."""
    update = ws.pipelines.start_update(request.path_params["pipeline_id"], await json_body(request))
    return {"update_id": update.update_id}


async def list_updates(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    """`GET .../updates` -> `{"updates": [UpdateInfo]}` newest first; `until_update_id` stops
    after that update (included)."""
    pipeline = ws.pipelines.get(request.path_params["pipeline_id"])
    updates = list(reversed(pipeline.updates))
    until = params.get("until_update_id")
    if until:
        ids = [u.update_id for u in updates]
        if until not in ids:
            raise ApiError(
                404, "RESOURCE_DOES_NOT_EXIST", f"The specified update {until} was not found."
            )
        updates = updates[: ids.index(until) + 1]
    page, tokens = _page(updates, params, default=25, maximum=100)
    body: dict[str, Any] = {"updates": [update_info(pipeline, u) for u in page]} if page else {}
    body.update(tokens)
    return body


async def get_update(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    """`GET .../updates/{update_id}` -> `{"update": UpdateInfo}`."""
    pipeline, update = ws.pipelines.get_update(
        request.path_params["pipeline_id"], request.path_params["update_id"]
    )
    return {"update": update_info(pipeline, update)}


async def stop(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    ws.pipelines.stop(request.path_params["pipeline_id"])
    return {}


_CONDITION = re.compile(
    r"""^\s*(level|id|timestamp|origin\.update_id)\s*(=|!=|>=|<=|>|<|\s+in\s+)\s*(.+?)\s*$""",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"'((?:[^']|'')*)'")


def _event_filter(text: str | None) -> Callable[[PipelineEvent], bool]:
    """The event-log filters sdk-py documents: `level='ERROR'`, `level in ('INFO', 'WARN')`,
    `id='<event-id>'`, `timestamp > '2021-07-22T06:37:33.083Z'` (and >=, <, <=, =), plus
    `origin.update_id='<id>'`, joined with AND."""
    if not text or not text.strip():
        return lambda _: True
    checks: list[Callable[[PipelineEvent], bool]] = []
    for part in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE):
        match = _CONDITION.match(part)
        values = _QUOTED.findall(match.group(3)) if match else []
        if match is None or not values:
            raise ApiError(
                400, INVALID_PARAMETER_VALUE, f"Invalid filter expression: {part[:200]!r}."
            )
        checks.append(_check(match.group(1).lower(), match.group(2).strip().lower(), values))
    return lambda event: all(check(event) for check in checks)


def _check(name: str, op: str, values: list[str]) -> Callable[[PipelineEvent], bool]:
    def field_of(event: PipelineEvent) -> str:
        return {
            "level": event.level,
            "id": event.event_id,
            "timestamp": iso_time(event.timestamp_ms),
            "origin.update_id": event.update_id or "",
        }[name]

    if op == "in":
        allowed = set(values)
        return lambda e: field_of(e) in allowed
    value = values[0]
    comparisons: dict[str, Callable[[str, str], bool]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
    }
    compare = comparisons[op]
    return lambda e: compare(field_of(e), value)


async def list_events(request: Request, params: Params, ws: Workspace) -> dict[str, Any]:
    """`GET .../events` -> `{"events": [PipelineEvent], "next_page_token"}`, newest first unless
    `order_by=["timestamp asc"]` (sdk-py `list_pipeline_events`)."""
    pipeline = ws.pipelines.get(request.path_params["pipeline_id"])
    keep = _event_filter(params.get("filter"))
    events = [e for e in pipeline.events if keep(e)]
    order = [o.strip().lower() for o in params.get_list("order_by")]
    if not any(o in ("timestamp asc", "timestamp") for o in order):
        events.reverse()
    page, tokens = _page(events, params, default=25, maximum=MAX_EVENTS_PAGE)
    body: dict[str, Any] = {"events": [ws.pipelines.event_json(pipeline, e) for e in page]}
    body.update(tokens)
    return body


def pipelines_routes() -> list[Route]:
    prefix = "/api/2.0/pipelines"
    return [
        Route(prefix, workspace_endpoint(list_pipelines), methods=["GET"]),
        Route(prefix, workspace_endpoint(create_pipeline), methods=["POST"]),
        Route(prefix + "/{pipeline_id}", workspace_endpoint(get_pipeline), methods=["GET"]),
        Route(prefix + "/{pipeline_id}", workspace_endpoint(edit_pipeline), methods=["PUT"]),
        Route(prefix + "/{pipeline_id}", workspace_endpoint(delete_pipeline), methods=["DELETE"]),
        Route(
            prefix + "/{pipeline_id}/updates", workspace_endpoint(start_update), methods=["POST"]
        ),
        Route(prefix + "/{pipeline_id}/updates", workspace_endpoint(list_updates), methods=["GET"]),
        Route(
            prefix + "/{pipeline_id}/updates/{update_id}",
            workspace_endpoint(get_update),
            methods=["GET"],
        ),
        Route(prefix + "/{pipeline_id}/stop", workspace_endpoint(stop), methods=["POST"]),
        Route(prefix + "/{pipeline_id}/events", workspace_endpoint(list_events), methods=["GET"]),
    ]
